"""Training checkpoints: atomic writes, safe loads, RNG snapshots, and :func:`load_model`.

A checkpoint is a ``dict`` saved with :func:`torch.save` holding only tensors and plain
Python types, so that it loads with ``torch.load(weights_only=True)`` (no arbitrary code
runs when a file is opened). Keys written by :func:`spinenet_lite.engine.training.train`:

``format``, ``epoch`` (completed epochs), ``model`` (state dict), ``model_kwargs``
(``branch_point``, ``width``, ``dropout``), ``optimizer``, ``scheduler``, ``rng``
(see :func:`rng_state`), ``config`` (dict), ``input_mean`` (9,) float32 tensor,
``class_weights`` ({task: tensor} or None), ``history`` (list of dicts), ``best_epoch``,
``best_score``, ``commit``.

Introduced in chapter 04 (*Training*).
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import WeightsError
from ..nn.model import SpineNet

if TYPE_CHECKING:
    from torch import nn

CHECKPOINT_FORMAT = "spinenet_lite.checkpoint/1"


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file then :func:`os.replace`).

    A crash mid-write leaves the previous file intact, never a truncated one.

    Parameters
    ----------
    state : dict
        Tensors and plain Python types only.
    path : path
        Destination (``.pt``); the parent folder is created.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)``.

    Raises
    ------
    WeightsError
        If the file is missing, truncated, not a torch file, or not a spinenet_lite
        checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist; train a model first "
                           f"(`spinenet-lite train`) or give the right path")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError,
            OSError, AttributeError, KeyError) as exc:
        raise WeightsError(f"checkpoint {path} cannot be read ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}); it is corrupt or not a "
                           f"spinenet_lite checkpoint: retrain or download it again") from None
    if not isinstance(state, dict) or "model" not in state:
        raise WeightsError(f"{path} is a torch file but not a spinenet_lite checkpoint (no 'model' entry); "
                           f"give a file written by `spinenet-lite train`")
    return state


# ----------------------------------------------------------------------------- RNG
def rng_state(**generators: torch.Generator) -> dict[str, Any]:
    """Snapshot of every random number generator a run uses, checkpoint-safe.

    Parameters
    ----------
    **generators : torch.Generator
        Named extra generators (e.g. ``shuffle=..., augment=...``).

    Returns
    -------
    dict
        ``python`` (tuple of ints), ``numpy`` (name, uint32 state as a list, pos,
        has_gauss, cached_gaussian), ``torch`` (uint8 tensor), ``cuda`` (list of uint8
        tensors) and one uint8 tensor per named generator.
    """
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (the legacy global RNG)
    out: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [str(name), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss),
                  float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "generators": {k: g.get_state() for k, g in generators.items()},
    }
    return out


def set_rng_state(state: dict[str, Any], **generators: torch.Generator) -> None:
    """Restore a snapshot made by :func:`rng_state` (and the named generators)."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    np.random.set_state((name,  # noqa: NPY002
                          keys.astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    saved = state.get("generators", {})
    for k, g in generators.items():
        if k not in saved:
            raise WeightsError(f"checkpoint holds no state for the {k!r} generator; it was written by "
                               f"another version: start a fresh run instead of resuming")
        g.set_state(saved[k].cpu() if g.device.type == "cpu" else saved[k])


# ----------------------------------------------------------------------------- model
def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """The trained :class:`~spinenet_lite.nn.model.SpineNet` stored in a checkpoint, in eval mode.

    Parameters
    ----------
    path : path
        ``best.pt`` / ``last.pt`` written by :func:`spinenet_lite.engine.training.train`.
    map_location : str or torch.device
        Where to put the weights.

    Raises
    ------
    WeightsError
        Missing / corrupt file, or weights that do not fit the recorded architecture.
    """

    state = load_checkpoint(path, map_location=map_location)
    kwargs = dict(state.get("model_kwargs") or {})
    try:
        model = SpineNet(**kwargs)
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, ValueError) as exc:
        raise WeightsError(f"checkpoint {path} does not fit SpineNet({kwargs}): "
                           f"{str(exc).splitlines()[0]}; retrain with this version") from None
    model.to(map_location)
    model.eval()
    return model


def export_weights(src: str | os.PathLike, dst: str | os.PathLike, *, half: bool = True) -> Path:
    """Write a compact, shippable copy of a training checkpoint.

    Keeps what inference needs (``model`` state, ``model_kwargs``, ``config``,
    ``input_mean``, ``best_epoch``, ``history``, ``commit``, ``meta``) and drops the optimiser,
    scheduler and RNG states. With ``half`` the floating-point weights are stored as
    float16, halving the file; :func:`load_model` (and ``load_state_dict``) cast them
    back to float32 on load, so a model loaded from the export differs from the
    original by float16 rounding only.

    Parameters
    ----------
    src : path
        A checkpoint written by :func:`spinenet_lite.engine.training.train` (``best.pt``).
    dst : path
        Where to write the export (atomically).
    half : bool
        Store floating-point tensors as float16.

    Returns
    -------
    Path
        ``dst``.
    """
    state = load_checkpoint(src)
    keep = ("format", "model_kwargs", "config", "input_mean", "best_epoch", "best_score", "history",
            "commit", "task_names", "meta")
    out = {k: state[k] for k in keep if k in state}
    out["model"] = {k: (v.half() if half and v.is_floating_point() else v) for k, v in state["model"].items()}
    out["exported_from"] = {"epoch": state.get("epoch"), "half": bool(half)}
    return save_checkpoint(out, dst)
