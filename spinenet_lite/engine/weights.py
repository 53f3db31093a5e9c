"""The registry of shipped weights: which files exist, what they are, and their checked loading.

Each :class:`WeightsEntry` records the file name, its kind (``"grader"``: a
:class:`~spinenet_lite.nn.model.SpineNet` checkpoint written by
:func:`spinenet_lite.engine.training.train`; ``"localiser"``: the vertebra-corner localiser of
:mod:`spinenet_lite.localise.inference`), its SHA-256 and a description. ``data/weights/README.md``
says how each file was made.

A registry name is resolved in this order (:func:`resolve_weights`):

1. ``$SPINENET_WEIGHTS_DIR`` when it is set: the only folder looked in (and downloaded to);
2. else ``data/weights/`` of the checkout, when the package runs from its source tree;
3. else the user cache, ``<user cache>/weights`` (:func:`spinenet_lite.paths.weights_dirs`);
4. else a download of ``<base URL>/<file name>`` with :func:`pooch.retrieve` into the
   folder of 1 or 3, refused unless its SHA-256 is the registry's. The base URL is
   ``$SPINENET_WEIGHTS_URL``, else :data:`WEIGHTS_BASE_URL`, which is unset: the project
   publishes no weights release yet, so an installed copy needs the environment variable,
   ``SPINENET_WEIGHTS_DIR`` or a clone of the repository.

Every load checks the file's SHA-256 against the registry **before** the bytes are handed
to ``torch.load(weights_only=True)``, and unpickles exactly the bytes that were hashed. A
file given by path (not a registry name) is checked against a ``<file>.sha256`` beside it
when there is one; its hash is recorded in every output either way.

Problems raise :class:`~spinenet_lite.errors.WeightsError` with what is wrong and what to
do: a missing file, a failed or refused download, a file whose hash differs (corrupt or
replaced), a file torch cannot read, or a file of the wrong kind (a localiser given as a
grader, or the other way round).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pooch

from .. import paths
from ..config import resolve_device
from ..errors import WeightsError
from ..nn.model import SpineNet

__all__ = [
    "DEFAULT_GRADER",
    "DEFAULT_LOCALISER",
    "ONE_SLICE_GRADER",
    "REAL_GRADER",
    "REGISTRY",
    "WEIGHTS_BASE_URL",
    "WEIGHTS_URL_ENV",
    "ResolvedWeights",
    "WeightsEntry",
    "load_grader",
    "load_localiser",
    "resolve_weights",
    "sha256_file",
    "shipped_path",
    "verify_weights",
    "weights_dir",
    "weights_url",
]

KINDS: tuple[str, ...] = ("grader", "localiser")

_HINT = {"grader": "--weights PATH to a checkpoint written by `spinenet-lite train`",
         "localiser": "--localiser PATH to localiser weights"}


@dataclass(frozen=True)
class WeightsEntry:
    """One shipped weights file.

    Attributes
    ----------
    name : str
        Registry name (e.g. ``"spinenet_synthetic"``).
    filename : str
        File name inside a weights folder (:func:`spinenet_lite.paths.weights_dirs`) and
        under the download base URL.
    kind : str
        ``"grader"`` or ``"localiser"``.
    sha256 : str or None
        Hex SHA-256 of the file; None while the file is not shipped yet.
    description : str
        One line: the network, its data, how it was made.
    """

    name: str
    filename: str
    kind: str
    sha256: str | None
    description: str


# The lead fills in each sha256 when the file is committed (`sha256sum data/weights/*.pt`).
REGISTRY: dict[str, WeightsEntry] = {
    e.name: e
    for e in (
        WeightsEntry(
            name="spinenet_synthetic",
            filename="spinenet_synthetic.pt",
            kind="grader",
            sha256="6ea9847863e8860f278134ec5c24bae7601a9f5a121db6cccb03dc69093021bf",
            description="SpineNet, conv5 branching, width 0.25, trained on the synthetic cohort "
                        "(spinenet-lite train --tier teaching --seed 0; export-weights, float16)",
        ),
        WeightsEntry(
            name="spinenet_real",
            filename="spinenet_real.pt",
            kind="grader",
            sha256="c4714685e5e24264a5393ec6939424598cbe4f7f74e1ebdb59a075adde9443d8",
            description="the synthetic grader fine-tuned on the 30 SPIDER T2 SPACE patients (every slab)",
        ),
        WeightsEntry(
            name="spinenet_real_2d",
            filename="spinenet_real_2d.pt",
            kind="grader",
            sha256="95b1de4ab275a999dd84cecb6a2d7be300fada4ff23c281f2e2ceecab23ce87c",
            description="the synthetic grader fine-tuned on the SPIDER mid-sagittal T2 slices (and the T2 "
                        "SPACE discs' centre slices), each slice copied into all nine positions, with the "
                        "recipe spider-ablation's nested CV chose: the grader of one-slice studies "
                        "(2D images)",
        ),
        WeightsEntry(
            name="localiser",
            filename="localiser.pt",
            kind="localiser",
            sha256="5ee00db997d4bffb93d5eac4af6017b135dc35e3d7f48c2670f1cd808245b678",
            description="vertebra-corner localiser of spinenet_lite.localise (small U-Net, 113k parameters; "
                        "spinenet-lite train-localiser --out data/weights/localiser.pt --seed 0)",
        ),
    )
}

DEFAULT_GRADER = "spinenet_synthetic"
"""Registry name of the grader used when none is given (``predict`` uses it for
synthetic-cohort studies, see :func:`spinenet_lite.app.pipeline.default_grading`)."""
REAL_GRADER = "spinenet_real"
"""Registry name of the grader of real multi-slice studies: the synthetic model fine-tuned on
SPIDER's T2 SPACE slabs (cross-validated Pfirrmann 50.1 % against 26.0 % for the synthetic
model zero-shot, ``data/results/spider_cv_teaching.md``)."""
ONE_SLICE_GRADER = "spinenet_real_2d"
"""Registry name of the grader of one-slice studies (a 2D image, a single DICOM slice): the
real-scan model trained on SPIDER mid-sagittal slices copied into all nine slice positions
(``data/weights/README.md``). A nine-slice model fed one slice among eight empty ones grades
nearly every disc alike (chapter 8)."""
DEFAULT_LOCALISER = "localiser"
"""Registry name of the localiser used when none is given."""


@dataclass(frozen=True)
class ResolvedWeights:
    """A weights file found on disk and identified.

    Attributes
    ----------
    name : str
        Registry name, or the file name for a file given by path.
    path : Path
        The file.
    kind : str or None
        ``"grader"`` / ``"localiser"`` for registry entries, None for a bare path.
    expected_sha256 : str or None
        The hash the file must have (registry or ``.sha256`` side file), None if unknown.
    """

    name: str
    path: Path
    kind: str | None
    expected_sha256: str | None

    def as_dict(self, sha256: str) -> dict[str, str]:
        """``{"name", "path", "sha256"}`` for results files."""
        return {"name": self.name, "path": str(self.path), "sha256": sha256}


WEIGHTS_URL_ENV = "SPINENET_WEIGHTS_URL"
"""Environment variable: base URL the registry downloads ``<base>/<file name>`` from."""

WEIGHTS_BASE_URL: str | None = None
"""The project's release URL for the weights files: **unset** (None), because the project
publishes no weights release yet. Outside a checkout, set ``$SPINENET_WEIGHTS_URL`` to a base
URL serving the files of ``data/weights/``, or ``$SPINENET_WEIGHTS_DIR`` to a folder holding
them, or clone the repository (``data/weights/`` is committed)."""


def weights_url() -> str | None:
    """The download base URL: ``$SPINENET_WEIGHTS_URL``, else :data:`WEIGHTS_BASE_URL` (None: unset)."""
    url = os.environ.get(WEIGHTS_URL_ENV) or WEIGHTS_BASE_URL
    return url.rstrip("/") if url else None


def weights_dir() -> Path:
    """The first folder shipped weights are looked for in (:func:`spinenet_lite.paths.weights_dirs`).

    ``$SPINENET_WEIGHTS_DIR``; else ``data/weights`` of the checkout; else the user cache's
    ``weights`` folder (an installed copy of the package).
    """
    return paths.weights_dirs()[0]


def shipped_path(name: str) -> Path:
    """Where registry entry ``name``'s file is on this machine, or where a download would put it.

    Looks in :func:`spinenet_lite.paths.weights_dirs` only: nothing is downloaded or checked.
    """
    filename = REGISTRY[name].filename
    for folder in paths.weights_dirs():
        if (folder / filename).is_file():
            return folder / filename
    return paths.weights_cache_dir() / filename


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes: the project's one file hash (:func:`pooch.file_hash`)."""
    return pooch.file_hash(str(path), alg="sha256")


def _download(entry: WeightsEntry) -> Path:
    """Fetch ``entry``'s file from :func:`weights_url` into the weights cache, hash-checked by pooch."""
    hint = _HINT[entry.kind]
    looked = ", ".join(str(d) for d in paths.weights_dirs())
    base = weights_url()
    if base is None:
        raise WeightsError(
            f"the shipped weights {entry.name!r} ({entry.filename}) are not there (looked in {looked}) "
            f"and no download URL is set: this package publishes no weights release yet. Get them: "
            f"clone the repository (its data/weights/ holds them; data/weights/README.md has the command "
            f"that makes each), or set {paths.WEIGHTS_DIR_ENV} to a folder holding {entry.filename}, or "
            f"{WEIGHTS_URL_ENV} to a base URL serving it; or pass {hint}")
    if entry.sha256 is None:
        raise WeightsError(f"the shipped weights {entry.name!r} have no recorded sha256, so they cannot be "
                           f"downloaded safely; record it in spinenet_lite.engine.weights.REGISTRY or pass "
                           f"{hint}")
    url = f"{base}/{entry.filename}"
    target = paths.weights_cache_dir()
    try:
        got = pooch.retrieve(url, known_hash=f"sha256:{entry.sha256}", fname=entry.filename,
                             path=target, progressbar=sys.stderr.isatty())
    except ValueError as exc:  # pooch: the downloaded bytes do not have the registry's hash
        raise WeightsError(
            f"the weights downloaded from {url} are not the shipped {entry.name!r}: their sha256 differs "
            f"from the registry's ({str(exc).splitlines()[0][:160]}); nothing was kept. Check "
            f"{WEIGHTS_URL_ENV} or pass {hint}") from None
    except Exception as exc:  # requests' HTTP, connection and timeout errors; a folder we cannot write
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise WeightsError(
            f"the shipped weights {entry.name!r} are not there (looked in {looked}) and downloading {url} "
            f"into {target} failed ({type(exc).__name__}: {first}); check {WEIGHTS_URL_ENV} and the "
            f"network, set {paths.WEIGHTS_DIR_ENV} to a folder holding {entry.filename}, or pass "
            f"{hint}") from None
    return Path(got)


def _side_hash(path: Path) -> str | None:
    side = path.with_name(path.name + ".sha256")
    if not side.is_file():
        return None
    text = side.read_text(encoding="utf-8", errors="replace").split()
    if not text or len(text[0]) != 64 or any(ch not in "0123456789abcdefABCDEF" for ch in text[0]):
        raise WeightsError(f"{side} does not hold a SHA-256 (64 hex digits); fix or delete it")
    return text[0].lower()


def resolve_weights(name_or_path: str | os.PathLike | None, kind: str = "grader") -> ResolvedWeights:
    """Find a weights file by registry name or path.

    Parameters
    ----------
    name_or_path : str, path or None
        A name of :data:`REGISTRY` (e.g. ``"spinenet_synthetic"``: looked for in the weights
        folders, else downloaded, see the module docstring), a path to a ``.pt`` file, or
        None for the default of ``kind``.
    kind : str
        ``"grader"`` or ``"localiser"``: what the caller needs (used for the default and to
        refuse a registry entry of the other kind).

    Returns
    -------
    ResolvedWeights

    Raises
    ------
    WeightsError
        Unknown name, missing file that cannot be downloaded (no URL, a network error, bytes
        whose hash is not the registry's), or a registry entry of the wrong kind.
    """
    if kind not in KINDS:
        raise WeightsError(f"unknown weights kind {kind!r}; use one of {', '.join(KINDS)}")
    if name_or_path is None:
        name_or_path = DEFAULT_GRADER if kind == "grader" else DEFAULT_LOCALISER
    key = str(name_or_path)
    if key in REGISTRY:
        entry = REGISTRY[key]
        if entry.kind != kind:
            raise WeightsError(f"weights {key!r} are a {entry.kind}, not a {kind}; "
                               f"give {kind} weights "
                               f"({', '.join(n for n, e in REGISTRY.items() if e.kind == kind)})")
        path = shipped_path(key)
        if not path.is_file():
            path = _download(entry)
        return ResolvedWeights(name=key, path=path, kind=entry.kind, expected_sha256=entry.sha256)
    path = Path(name_or_path).expanduser()
    if not path.exists():
        known = ", ".join(REGISTRY)
        raise WeightsError(f"weights {key!r} are neither a shipped name ({known}) nor an existing file; "
                           f"check the name or path")
    if not path.is_file():
        raise WeightsError(f"weights path {path} is a folder; give the .pt file itself (e.g. {path}/best.pt)")
    return ResolvedWeights(name=path.name, path=path, kind=None, expected_sha256=_side_hash(path))


def _checked_bytes(res: ResolvedWeights) -> tuple[bytes, str]:
    """The file's bytes and their SHA-256, after comparing it with the expected hash."""
    try:
        data = res.path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"cannot read weights {res.path} ({exc.strerror or exc}); "
                           "check the file") from None
    # The in-memory bytes themselves are hashed (not the file again, as sha256_file would), so
    # that torch.load unpickles exactly what was checked even if the file changes meanwhile.
    digest = hashlib.sha256(data).hexdigest()
    if res.kind is not None and res.expected_sha256 is None:
        raise WeightsError(
            f"the shipped weights {res.name!r} ({res.path}) have no recorded sha256 in "
            f"spinenet_lite.engine.weights.REGISTRY; record sha256={digest!r} there (and in "
            f"data/weights/README.md) once the file is final")
    if res.expected_sha256 is not None and digest != res.expected_sha256.lower():
        raise WeightsError(
            f"weights {res.path} are corrupt or were replaced: sha256 {digest[:16]}... but "
            f"{res.expected_sha256[:16]}... was recorded; restore the file (git checkout / git lfs pull), "
            f"delete it if it was downloaded (it is fetched again), or remake it with the command in "
            f"data/weights/README.md")
    return data, digest


def verify_weights(name_or_path: str | os.PathLike | None, kind: str = "grader") -> dict[str, str]:
    """Resolve a weights file and check its hash without loading it.

    Returns
    -------
    dict
        ``{"name", "path", "sha256"}``.

    Raises
    ------
    WeightsError
        As :func:`resolve_weights`, or a hash that differs from the recorded one.
    """
    res = resolve_weights(name_or_path, kind=kind)
    _, digest = _checked_bytes(res)
    return res.as_dict(digest)


def _torch_load(data: bytes, path: Path, device: Any) -> Any:
    import torch

    try:
        return torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError,
            OSError, AttributeError, KeyError, TypeError, IndexError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise WeightsError(f"weights {path} cannot be read by torch ({type(exc).__name__}: {first[:200]}); "
                           "the file is truncated, corrupt or not a torch file: remake or restore it"
                           ) from None


def _device(device: Any) -> Any:
    import torch

    if isinstance(device, torch.device):
        return device

    return resolve_device(str(device))


def _is_grader_state(state: Any) -> bool:
    return isinstance(state, dict) and "model" in state and "model_kwargs" in state


def load_grader(name_or_path: str | os.PathLike | None = None, device: Any = "cpu"
                ) -> tuple[Any, dict[str, str]]:
    """The grading network, hash-checked, in eval mode.

    Parameters
    ----------
    name_or_path : str, path or None
        Registry name, checkpoint path, or None for :data:`DEFAULT_GRADER`.
    device : str or torch.device
        ``"cpu"``, ``"cuda"``, ``"auto"``...

    Returns
    -------
    model : SpineNet
        On ``device``, eval mode.
    info : dict
        ``{"name", "path", "sha256"}`` of the file.

    Raises
    ------
    WeightsError
        Missing, wrong-hash, unreadable, wrong-kind file, or weights that do not fit
        :class:`~spinenet_lite.nn.model.SpineNet`.
    """

    res = resolve_weights(name_or_path, kind="grader")
    data, digest = _checked_bytes(res)
    dev = _device(device)
    state = _torch_load(data, res.path, "cpu")
    if isinstance(state, dict) and state.get("kind") == "localiser":
        raise WeightsError(f"{res.path} holds localiser weights, not a grader; give a SpineNet checkpoint "
                           f"(`spinenet-lite train` writes best.pt)")
    if not _is_grader_state(state):
        raise WeightsError(f"{res.path} is a torch file but not a SpineNet checkpoint (no 'model' and "
                           f"'model_kwargs' entries); give a file written by `spinenet-lite train`")
    kwargs = dict(state.get("model_kwargs") or {})
    try:
        model = SpineNet(**kwargs)
        model.load_state_dict(state["model"])
    except Exception as exc:  # wrong shapes, unknown kwargs, a ConfigError from SpineNet
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(f"{res.path} does not fit SpineNet({kwargs}): {first[:200]}; "
                           f"it was written by another version: retrain or restore it") from None
    model.to(dev).eval()
    return model, res.as_dict(digest)


def load_localiser(name_or_path: str | os.PathLike | None = None, device: Any = "cpu"
                   ) -> tuple[Any, dict[str, str]]:
    """The localiser's saved state, hash-checked.

    The network itself is built by :mod:`spinenet_lite.localise.inference`.

    Parameters
    ----------
    name_or_path : str, path or None
        Registry name, path, or None for :data:`DEFAULT_LOCALISER`.
    device : str or torch.device
        Where tensors are mapped.

    Returns
    -------
    state : dict
        What the file holds (tensors and plain types only).
    info : dict
        ``{"name", "path", "sha256"}``.

    Raises
    ------
    WeightsError
        Missing, wrong-hash, unreadable file, or a grader checkpoint given as a localiser.
    """
    res = resolve_weights(name_or_path, kind="localiser")
    data, digest = _checked_bytes(res)
    state = _torch_load(data, res.path, _device(device))
    if _is_grader_state(state) or (isinstance(state, dict) and state.get("kind") == "grader"):
        raise WeightsError(f"{res.path} is a SpineNet grading checkpoint, not localiser weights; "
                           f"give the localiser (data/weights/localiser.pt)")
    if not isinstance(state, dict):
        raise WeightsError(f"{res.path} does not hold localiser weights (a dict of tensors); "
                           f"give the file written by the localiser's training script")
    return state, res.as_dict(digest)
