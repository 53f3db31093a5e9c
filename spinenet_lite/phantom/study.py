"""One synthetic patient: :class:`PhantomStudy` and :func:`synth_patient`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError
from ..io.scan import Scan
from ..tasks import LEVELS, N_CLASSES, TASK_NAMES
from .acquisition import apply_acquisition, sample_acquisition
from .anatomy import FIRST, build_spine, place_spine, sizes_mm
from .config import PhantomConfig
from .pathology import ENDPLATE_TASKS, MARROW_TASKS, sample_age, sample_labels, sample_lesions
from .raters import read_labels
from .render import render

VERSION = 1
"""Version of the generator; bumped whenever the same (seed, index) would change."""

LESION_TASKS: tuple[str, ...] = ENDPLATE_TASKS + MARROW_TASKS
"""Tasks whose abnormal label draws a lesion (``drop_lesions`` can remove it)."""


@dataclass
class PhantomStudy:
    """One synthetic sagittal T2 study with its ground truth.

    Attributes
    ----------
    scan : Scan
        ``volume (S, H, W)`` float32: rows head to foot, columns anterior to posterior,
        slices left to right.
    corners : ndarray, shape (7, S, 4, 2), float32
        Vertebra corners (T12 ... S1) in voxels ``(row, col)``; NaN where a body is absent.
        Order: sup-ant, sup-post, inf-post, inf-ant.
    lesions : ndarray, shape (T, S, H, W), uint8
        ``lesions[t] == i + 1`` where task ``t``'s evidence for disc ``i`` lies.
    labels : dict of str to ndarray
        ``"true"``, ``"observed"``, ``"reread"``: ``(6, T)`` int64 class indices,
        ``MISSING`` (-1) for a missing reading.
    meta : dict
        ``patient_id``, ``index``, ``seed``, ``age`` (years), ``lordosis`` and
        ``sacral_slope`` (deg), sizes in mm (``disc_height_mm``, ``body_height_mm``,
        ``body_depth_mm``), the acquisition (``pixel_spacing``, ``slice_thickness``,
        ``slice_spacing``, ``n_slices``, ``snr``, ``bias_amplitude``, ``scanner_scale``,
        ``slice_z_mm``) and ``version``.
    """

    scan: Scan
    corners: np.ndarray
    lesions: np.ndarray
    labels: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def patient_id(self) -> str:
        """``P00000``-style id."""
        return str(self.meta.get("patient_id", self.scan.patient_id))

    @property
    def corners_mm(self) -> np.ndarray:
        """Corners ``(7, S, 4, 2)`` in mm ``(row * row_spacing, col * col_spacing)``."""
        return self.corners * np.asarray(self.scan.pixel_spacing, dtype=np.float32)

    @property
    def mid_slice(self) -> int:
        """Index of the slice closest to the mid-sagittal plane."""
        z = self.meta.get("slice_z_mm")
        if z is None:
            return self.scan.n_slices // 2
        return int(np.argmin(np.abs(np.asarray(z))))


def patient_id(index: int) -> str:
    """``P00000`` for index 0."""
    return f"P{int(index):05d}"


def patient_rng(index: int, seed: int) -> np.random.Generator:
    """The generator of patient ``index``: depends only on ``(seed, index)``."""
    if int(index) < 0 or int(seed) < 0:
        raise InputError(f"patient index and seed must be non-negative integers; got {index}, {seed}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def patient_labels(index: int, seed: int, config: PhantomConfig | None = None
                   ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Age and the three label readings of patient ``index`` without rendering.

    Returns exactly what :func:`synth_patient` puts in ``meta["age"]`` and ``labels``.

    Returns
    -------
    age : float
    true, observed, reread : ndarray, shape (6, T), int64
    """
    config = config or PhantomConfig()
    rng = patient_rng(index, seed)
    age = sample_age(rng, config)
    true = sample_labels(rng, config, age)
    label_rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 1]))
    observed = read_labels(label_rng, true, config)
    reread = read_labels(label_rng, true, config)
    return age, true, observed, reread


def _check_true(true_labels: np.ndarray) -> np.ndarray:
    arr = np.asarray(true_labels)
    if arr.shape != (len(LEVELS), len(TASK_NAMES)) or not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"true_labels must be an integer array of shape ({len(LEVELS)}, {len(TASK_NAMES)}) "
                         f"(levels x tasks); got {arr.dtype} {arr.shape}")
    for t, name in enumerate(TASK_NAMES):
        if arr[:, t].min() < 0 or arr[:, t].max() >= N_CLASSES[name]:
            raise InputError(f"true_labels[:, {t}] ({name}) must be class indices 0..{N_CLASSES[name] - 1}; "
                             f"got {arr[:, t].tolist()}")
    return arr.astype(np.int64)


def _check_drop(drop_lesions: Sequence[tuple[str, int | str]], true: np.ndarray) -> list[tuple[int, int]]:
    """``(task column, level index)`` of every lesion to leave out; each must be a true lesion."""
    out = []
    for item in drop_lesions:
        try:
            task, level = item
        except (TypeError, ValueError):
            raise InputError(f"drop_lesions takes (task, level) pairs, e.g. ('upper_endplate', 'L4-L5'); "
                             f"got {item!r}") from None
        if task not in LESION_TASKS:
            raise InputError(f"drop_lesions: {task!r} draws no lesion; use one of {', '.join(LESION_TASKS)}")
        if isinstance(level, str):
            if level not in LEVELS:
                raise InputError(f"drop_lesions: unknown level {level!r}; use one of {', '.join(LEVELS)}")
            level = LEVELS.index(level)
        if (isinstance(level, bool) or not isinstance(level, (int, np.integer))
                or not 0 <= level < len(LEVELS)):
            raise InputError(f"drop_lesions: level must be 0..{len(LEVELS) - 1} or a level name; "
                             f"got {level!r}")
        t = TASK_NAMES.index(task)
        if true[level, t] != 1:
            raise InputError(f"drop_lesions: {task} at {LEVELS[level]} is not a true lesion of this patient "
                             "(its true label is not abnormal); nothing to remove")
        out.append((t, int(level)))
    return out


def synth_patient(index: int, seed: int, config: PhantomConfig | None = None, *,
                  true_labels: np.ndarray | None = None,
                  drop_lesions: Sequence[tuple[str, int | str]] = ()) -> PhantomStudy:
    """Generate synthetic patient ``index`` of the cohort ``seed``.

    Parameters
    ----------
    index : int
        Patient number (>= 0); the id is ``P{index:05d}``.
    seed : int
        Cohort seed (>= 0). The patient depends only on ``(seed, index)``.
    config : PhantomConfig, optional
        Defaults to ``PhantomConfig()``.
    true_labels : ndarray, shape (6, T), int, optional
        Force the true labels (e.g. to show one example of every grade); the readings
        are then drawn from them. Default: drawn from the config's prevalences.
    drop_lesions : sequence of (str, int or str)
        Counterfactual studies: ``(task, level)`` pairs (level index or name such as
        ``"L4-L5"``) of true endplate / marrow lesions to leave out of the image. Every
        random draw is made as without them (anatomy, the other lesions' shapes, textures,
        bias field, noise), so the study is the same voxel for voxel except where the
        dropped lesion was drawn (its mask and an edge of about one pixel around it, widened
        by the scanner's 0.6-pixel blur). The dropped lesion's true label becomes normal
        (0) and its mask is empty; the readings (``observed``, ``reread``) stay those of the
        full study and ``meta["dropped_lesions"]`` lists the pairs as ``[task, level name]``.

    Returns
    -------
    PhantomStudy
    """
    config = config or PhantomConfig()
    if not isinstance(config, PhantomConfig):
        raise ConfigError(f"config must be a PhantomConfig; got {type(config).__name__}")
    age, true, observed, reread = patient_labels(index, seed, config)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 2]))
    if true_labels is not None:
        true = _check_true(true_labels)
        label_rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 1]))
        observed = read_labels(label_rng, true, config)
        reread = read_labels(label_rng, true, config)
    acq = sample_acquisition(rng, config)
    spine = build_spine(rng, config, true, age)
    top = float(rng.uniform(14.0, 32.0))
    air = float(rng.uniform(6.0, 22.0))
    need_fov, need_ap = place_spine(spine, top, acq.fov_ap, air)
    acq.fov = max(acq.fov, need_fov)
    acq.fov_ap = max(acq.fov_ap, need_ap)
    half = np.array([b.half_width for b in spine.bodies[FIRST:FIRST + len(LEVELS) + 1]])
    lesions = sample_lesions(rng, config, true, acq.slice_z, half)
    dropped = _check_drop(drop_lesions, true)
    if dropped:
        lesions = [les for les in lesions if (les.task, les.level) not in dropped]
        true = true.copy()
        for t, level in dropped:
            true[level, t] = 0
    clean, masks, corners = render(spine, acq, lesions, config, rng)
    volume = apply_acquisition(clean, acq, rng)
    del clean
    pid = patient_id(index)
    n, h, w = acq.shape
    # slices ordered left to right: slice k sits at lateral z_k (mm, + = patient right),
    # LPS x = -z; rows go to the feet (-z in LPS), columns to posterior (+y in LPS)
    origin = np.array([-acq.slice_z[0], -0.5 * acq.fov_ap, 0.5 * acq.fov])
    scan = Scan(volume=volume, pixel_spacing=(acq.pixel_spacing, acq.pixel_spacing),
                slice_spacing=acq.slice_spacing, slice_thickness=acq.slice_thickness, origin=origin,
                row_direction=np.array([0.0, 1.0, 0.0]), column_direction=np.array([0.0, 0.0, -1.0]),
                patient_id=pid, series_description="T2 SAG (spinenet_lite phantom)", modality="MR",
                source="phantom")
    sizes = sizes_mm(spine)
    meta = {
        "patient_id": pid, "index": int(index), "seed": int(seed), "version": VERSION,
        "age": round(age, 1), "lordosis": round(spine.lordosis, 2),
        "sacral_slope": round(spine.sacral_slope, 2),
        "disc_height_mm": sizes["disc_height"].round(2).tolist(),
        "body_height_mm": sizes["body_height"].round(2).tolist(),
        "body_depth_mm": sizes["body_depth"].round(2).tolist(),
        "body_width_mm": (2 * half).round(2).tolist(),
        "pixel_spacing": acq.pixel_spacing, "slice_thickness": acq.slice_thickness,
        "slice_spacing": acq.slice_spacing, "n_slices": n, "shape": [n, h, w],
        "fov_mm": [acq.fov, acq.fov_ap], "snr": acq.snr, "bias_amplitude": acq.bias_amplitude,
        "scanner_scale": acq.scale, "slice_z_mm": acq.slice_z.round(3).tolist(),
    }
    if dropped:
        meta["dropped_lesions"] = [[TASK_NAMES[t], LEVELS[level]] for t, level in dropped]
    return PhantomStudy(scan=scan, corners=corners, lesions=masks,
                        labels={"true": true, "observed": observed, "reread": reread}, meta=meta)
