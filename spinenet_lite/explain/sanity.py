"""Sanity checks of saliency maps (Adebayo et al., NeurIPS 2018): does the map depend on the model?

A map that survives re-initialising the network's weights, or training on permuted labels,
shows the input's edges rather than what the model learnt. :func:`cascading_randomization`
re-initialises a copy of the model layer by layer from the top (``fc8``) down to ``conv1``
(:func:`layer_groups`, :func:`reinitialize_`) and compares the maps of each step with the
trained model's (:func:`spinenet_lite.metrics.saliency.map_similarity`);
:func:`permuted_label_model` trains the model a second time on shuffled labels. Used by
:mod:`spinenet_lite.experiments.hotspot_quality` (``results["sanity"]``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..engine.training import train
from ..metrics.saliency import map_similarity, pointing_game

__all__ = ["LAYER_ORDER", "cascading_by_task", "cascading_randomization", "layer_groups",
           "permuted_label_model", "permuted_label_similarity", "reinitialize_"]

LAYER_ORDER: tuple[str, ...] = ("fc8", "fc7", "fc6", "conv5", "conv4", "conv3", "conv2", "conv1")
"""Layers of SpineNet (VGG-M), top (output) first: the order of cascading re-initialisation."""


def layer_groups(model: Any) -> list[tuple[str, list[Any]]]:
    """The model's weighted layers grouped by name, top (output side) first.

    Layers whose qualified name holds one of :data:`LAYER_ORDER` (``fc8`` ... ``conv1``)
    are grouped under that name (all per-task copies of a branched layer together);
    any other :class:`torch.nn.Conv2d` / :class:`torch.nn.Linear` forms its own group,
    in reverse registration order.

    Returns
    -------
    list of (str, list of torch.nn.Module)
    """
    import torch.nn as nn

    named: dict[str, list[Any]] = {}
    others: list[tuple[str, Any]] = []
    for name, mod in model.named_modules():
        if not any(p is not None for p in mod.parameters(recurse=False)):
            continue
        key = None
        for layer in LAYER_ORDER:
            if re.search(rf"(^|[._]){layer}($|[._])", name):
                key = layer
                break
        if key is not None:
            named.setdefault(key, []).append(mod)
        elif isinstance(mod, (nn.Conv2d, nn.Linear)):
            others.append((name, mod))
    if named:
        groups = [(k, named[k]) for k in LAYER_ORDER if k in named]
        if others:  # unnamed weighted layers: keep them (after the named ones)
            groups += [(n, [m]) for n, m in reversed(others)]
        return groups
    return [(n, [m]) for n, m in reversed(others)]


def reinitialize_(modules: Sequence[Any], generator: Any) -> None:
    """Re-initialise modules in place: Glorot-normal weights, zero biases (as at training start).

    Parameters
    ----------
    modules : sequence of torch.nn.Module
    generator : torch.Generator
        Source of the new weights (a CPU generator; weights are copied to their device).
    """
    import torch

    with torch.no_grad():
        for mod in modules:
            for pname, p in mod.named_parameters(recurse=False):
                if p.dim() >= 2 and "weight" in pname:
                    cpu = torch.empty(p.shape, dtype=p.dtype)
                    torch.nn.init.xavier_normal_(cpu, generator=generator)
                    p.copy_(cpu.to(p.device))
                else:
                    p.zero_()


def cascading_randomization(
    model: Any,
    volumes: Any,
    task: str,
    map_fn: Callable[[Any, np.ndarray, str], np.ndarray],
    reference: Any | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Cascading re-initialisation from the top layer down; maps compared with the trained ones.

    The model is copied (the original is untouched); layers are re-initialised
    cumulatively in the order of :func:`layer_groups` (``fc8``, then ``fc8`` and ``fc7``,
    ...), and after each step the maps of ``volumes`` are recomputed and compared with
    ``reference`` (the trained model's maps).

    Parameters
    ----------
    model : torch.nn.Module
        Trained model.
    volumes : array_like of float, shape (N, 9, H, W)
        Discs to map.
    task : str
        Task whose maps are compared.
    map_fn : callable
        ``map_fn(model, volumes, task) -> (N, 9, H, W)`` maps, e.g. a partial of
        :func:`spinenet_lite.explain.saliency.hotspots_batch` (pass ``targets`` in it to fix
        the explained class; otherwise each model explains its own prediction).
    reference : array_like, optional
        The trained model's maps; computed with ``map_fn`` if omitted.
    seed : int
        Seed of the re-initialisation.

    Returns
    -------
    list of dict
        One row per step: ``layer`` (the last layer re-initialised), ``spearman``,
        ``ssim`` (means over discs) and their per-disc lists.
    """
    import torch

    vols = np.asarray(volumes, dtype=np.float32)
    ref = np.asarray(reference) if reference is not None else np.asarray(map_fn(model, vols, task))
    work = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(int(seed))
    rows = []
    for name, mods in layer_groups(work):
        reinitialize_(mods, gen)
        maps = np.asarray(map_fn(work, vols, task))
        sims = [map_similarity(ref[i], maps[i]) for i in range(len(vols))]
        rows.append({
            "layer": name,
            "spearman": float(np.mean([s["spearman"] for s in sims])),
            "ssim": float(np.mean([s["ssim"] for s in sims])),
            "spearman_per_disc": [s["spearman"] for s in sims],
            "ssim_per_disc": [s["ssim"] for s in sims],
        })
    return rows


def cascading_by_task(model: Any, volumes: Mapping[str, Any],
                      map_fn: Callable[[Any, np.ndarray, str], np.ndarray],
                      references: Mapping[str, Any] | None = None, seed: int = 0) -> dict[str, Any]:
    """:func:`cascading_randomization` for several tasks, and its mean over tasks.

    Parameters
    ----------
    volumes : mapping of str to array_like, each (N_t, 9, H, W)
        The discs of each task (the same number per task keeps the mean balanced).
    map_fn, seed
        As :func:`cascading_randomization`.
    references : mapping of str to array_like, optional
        The trained model's maps per task.

    Returns
    -------
    dict
        ``{"per_task": {task: [{"layer", "spearman", "ssim"}]}, "mean": [{"layer", "spearman",
        "ssim"}] (mean over tasks), "n_discs_per_task": max N_t}``; empty without volumes.
    """
    refs = references or {}
    per_task = {t: cascading_randomization(model, v, t, map_fn, reference=refs.get(t), seed=seed)
                for t, v in volumes.items() if len(v)}
    if not per_task:
        return {}
    layers = [r["layer"] for r in next(iter(per_task.values()))]
    mean = [{"layer": name, **{key: float(np.mean([rows[k][key] for rows in per_task.values()]))
                               for key in ("spearman", "ssim")}} for k, name in enumerate(layers)]
    return {"per_task": {t: [{k: r[k] for k in ("layer", "spearman", "ssim")} for r in rows]
                         for t, rows in per_task.items()},
            "mean": mean, "n_discs_per_task": int(max(len(v) for v in volumes.values()))}


def permuted_label_similarity(perm_model: Any, volumes: Mapping[str, Any], masks: Mapping[str, Any],
                              references: Mapping[str, Any],
                              map_fn: Callable[[Any, np.ndarray, str], np.ndarray]) -> dict[str, Any]:
    """The maps of a model trained on permuted labels against the trained model's.

    Parameters
    ----------
    perm_model : torch.nn.Module
        E.g. :func:`permuted_label_model`.
    volumes, masks, references : mapping of str to array_like, each (N_t, 9, H, W)
        Per task: the discs, their lesion masks and the trained model's maps.
    map_fn : callable
        ``map_fn(model, volumes, task) -> maps``.

    Returns
    -------
    dict
        ``spearman``, ``ssim`` (means over all discs) and ``per_task``: ``{task: {"spearman",
        "ssim", "pointing_game"}}`` (the permuted model's strict pointing game).
    """
    sims, per_task = [], {}
    for t, v in volumes.items():
        maps = np.asarray(map_fn(perm_model, np.asarray(v, dtype=np.float32), t))
        s = [map_similarity(references[t][k], maps[k]) for k in range(len(maps))]
        hits = [pointing_game(maps[k], masks[t][k]) for k in range(len(maps)) if np.any(masks[t][k])]
        per_task[t] = {"spearman": float(np.mean([x["spearman"] for x in s])),
                       "ssim": float(np.mean([x["ssim"] for x in s])),
                       "pointing_game": float(np.mean(hits)) if hits else float("nan")}
        sims += s
    return {"spearman": float(np.mean([x["spearman"] for x in sims])) if sims else float("nan"),
            "ssim": float(np.mean([x["ssim"] for x in sims])) if sims else float("nan"), "per_task": per_task}


def permuted_label_model(config: Any, train_data: Any, val_data: Any, seed: int = 0,
                         progress: bool = False) -> Any:
    """A model trained like ``config`` on ``train_data`` with its labels shuffled across discs.

    Parameters
    ----------
    config : TrainConfig
        The training configuration (e.g. fewer epochs: it only has to fit label noise).
    train_data, val_data : DiscDataset
        ``train_data`` is copied (:meth:`DiscDataset.subset`), so its labels stay as they are.
    seed : int
        Seed of the permutation (the training seed is ``config.seed``).

    Returns
    -------
    torch.nn.Module
        The trained model, in eval mode.
    """

    sub = train_data.subset(np.arange(len(train_data)))
    sub.labels = np.asarray(sub.labels)[np.random.default_rng(seed).permutation(len(sub))]
    return train(config, sub, val_data, progress=progress).model.eval()
