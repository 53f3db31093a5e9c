"""The counterfactual lesion test: the same disc rendered with and without one lesion.

Only a generator can do this. :func:`counterfactual_disc` renders phantom patient ``index``
of cohort ``seed`` twice, once as it is and once with one endplate defect or marrow change
left out (``synth_patient(..., drop_lesions=...)``: same anatomy, textures, bias field and
noise, so the two scans are the same voxel for voxel outside the lesion and its edge), and
cuts the disc from both with the *same* geometry and the *same* intensity scale (the full
study's per-slice body medians, :mod:`spinenet_lite.extract.discs`): the two volumes then
differ only where the lesion was. A model that reads the finding off the lesion loses its
probability on the second volume (:func:`spinenet_lite.metrics.saliency.lesion_reliance`);
one that reads it off the correlated degeneration of the disc does not.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..extract.discs import extract_discs, extract_masks
from ..phantom import LESION_TASKS, PhantomConfig, synth_patient
from ..tasks import LEVELS, TASK_NAMES

__all__ = ["CounterfactualDisc", "cohort_source", "counterfactual_disc", "counterfactual_discs"]

_ROUNDING = 1e-5
"""Differences between the two renders below this share of the scan's maximum are float rounding."""


@dataclass
class CounterfactualDisc:
    """One disc with and without one of its lesions.

    Attributes
    ----------
    patient_id, level, task : str
        The disc (``"P00007"``, ``"L4-L5"``) and the task whose lesion was removed.
    with_lesion, without_lesion : ndarray, shape (9, 112, 224), float32
        The disc volume in [0, 1] (quantised to 1/255 as in the disc cache), the second
        rendered without the lesion and normalised with the first one's scale.
    mask : ndarray, shape (9, 112, 224), bool
        The removed lesion in the disc volume's grid.
    other_masks : dict of str to ndarray of bool
        The disc's other lesions (tasks whose lesion mask is not empty), which stay.
    """

    patient_id: str
    level: str
    task: str
    with_lesion: np.ndarray
    without_lesion: np.ndarray
    mask: np.ndarray
    other_masks: dict[str, np.ndarray] = field(default_factory=dict)


def _normalise_like(raw: np.ndarray, medians: np.ndarray, valid: np.ndarray, fallback_raw: np.ndarray
                    ) -> np.ndarray:
    """The disc normalisation of :func:`spinenet_lite.extract.discs.extract_discs` with given medians."""
    ok = medians > 0
    fallback = float(np.median(medians[ok])) if ok.any() else float(fallback_raw.max() or 1.0) / 2
    scale = np.where(ok, medians, fallback)
    vol = np.clip(raw / (2 * scale[:, None, None]), 0.0, 1.0).astype(np.float32)
    vol[~valid] = 0
    return np.rint(vol * 255) / np.float32(255)


def _level_index(level: int | str) -> int:
    if isinstance(level, str):
        if level not in LEVELS:
            raise InputError(f"unknown level {level!r}; use one of {', '.join(LEVELS)}")
        return LEVELS.index(level)
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 0 <= level < len(LEVELS):
        raise InputError(f"level must be 0..{len(LEVELS) - 1} or a level name; got {level!r}")
    return int(level)


def counterfactual_disc(index: int, seed: int, task: str, level: int | str, config: Any = None,
                        study: Any = None) -> CounterfactualDisc:
    """Disc ``level`` of phantom patient ``index`` with and without its ``task`` lesion.

    Parameters
    ----------
    index, seed : int
        The patient and its cohort seed (:func:`spinenet_lite.phantom.synth_patient`).
    task : str
        An endplate or marrow task whose true label at ``level`` is abnormal.
    level : int or str
        Level index (0 = T12-L1) or name.
    config : PhantomConfig, optional
        The cohort's configuration (default ``PhantomConfig()``).
    study : PhantomStudy, optional
        The full study ``synth_patient(index, seed, config)`` if already rendered (saves a
        render when several lesions of one patient are tested).

    Returns
    -------
    CounterfactualDisc
    """

    lv = _level_index(level)
    if task not in TASK_NAMES:
        raise InputError(f"unknown task {task!r}; use one of {', '.join(TASK_NAMES)}")
    full = study if study is not None else synth_patient(index, seed, config)
    # raises InputError when the task draws no lesion or the disc has none
    cut = synth_patient(index, seed, config, drop_lesions=[(task, lv)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dv = extract_discs(full.scan, full.corners, levels=[lv])
    if len(dv) == 0:
        raise InputError(f"disc {LEVELS[lv]} of patient {full.patient_id} could not be extracted")
    geom = dv.geometries[0]
    med = np.asarray(dv.norm_medians[0])
    raw_full = geom.sample(full.scan.volume)
    raw_cut = geom.sample(cut.scan.volume)
    # The renderer mixes float32 and float64 near an endplate defect, so the two scans differ by
    # float rounding (1e-7 relative) away from it too: count such differences as none, or the
    # 1/255 quantisation could turn one into a step.
    same = np.abs(raw_cut - raw_full) <= _ROUNDING * float(np.abs(raw_full).max() or 1.0)
    with_lesion = _normalise_like(raw_full, med, geom.valid, raw_full)
    without = _normalise_like(np.where(same, raw_full, raw_cut), med, geom.valid, raw_full)
    masks = extract_masks(full.lesions, [geom])[0]
    t = TASK_NAMES.index(task)
    others = {name: masks[k] for k, name in enumerate(TASK_NAMES)
              if k != t and name in _lesion_tasks() and masks[k].any()}
    return CounterfactualDisc(full.patient_id, LEVELS[lv], task, with_lesion, without, masks[t], others)


def _lesion_tasks() -> tuple[str, ...]:

    return LESION_TASKS


def counterfactual_discs(dataset: Any, indices: Sequence[int] | np.ndarray, task: str
                         ) -> list[CounterfactualDisc]:
    """Discs of a phantom disc cache, each rendered again without its ``task`` lesion.

    Parameters
    ----------
    dataset : DiscDataset
        A cache extracted from a phantom cohort that is still on disk (:func:`cohort_source`).
    indices : sequence of int
        Discs of ``dataset`` whose true ``task`` label is abnormal.
    task : str
        An endplate or marrow task.

    Returns
    -------
    list of CounterfactualDisc
        In the order of ``indices``; each patient's full study is rendered once.
    """

    source = cohort_source(dataset)
    if source is None:
        raise InputError("the counterfactual test needs discs of a phantom cohort that is still on disk "
                         "(the cache's meta.json names it as 'source'); make the cache with "
                         "spinenet_lite.datasets.synthetic.synthetic_dataset")
    seed, config = source
    out, study, at = [], None, None
    for i in np.asarray(indices, dtype=np.int64):
        index = int(str(dataset.patients[i]).lstrip("P"))
        if at != index:
            study, at = synth_patient(index, seed, config), index
        level = LEVELS[int(dataset.levels[i])]
        out.append(counterfactual_disc(index, seed, task, level, config, study=study))
    return out


def cohort_source(dataset: Any) -> tuple[int, Any] | None:
    """The phantom cohort a disc cache was extracted from: ``(seed, PhantomConfig)``, or None.

    Reads ``cohort.json`` of the folder in ``dataset.meta["source"]`` (written by
    :func:`spinenet_lite.datasets.cache.extract_cohort`); None when the cache does not come
    from a phantom cohort or the cohort is gone.
    """

    src = (getattr(dataset, "meta", None) or {}).get("source")
    if not src:
        return None
    path = Path(src) / "cohort.json"
    try:
        record = json.loads(path.read_text())
        return int(record["seed"]), PhantomConfig.from_dict(record.get("config", {}))
    except (OSError, ValueError, KeyError):
        return None
