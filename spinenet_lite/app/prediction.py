"""What :func:`~spinenet_lite.app.pipeline.predict` returns: the :class:`Prediction` of one
study, which classes are findings, and its ``grades.csv`` / ``grades.json`` writers."""


from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io.scan import Scan
from ..tasks import LEVELS, TASK_NAMES, TASKS, get_task

__all__ = [
    "FINDING_THRESHOLDS",
    "Prediction",
    "is_finding",
    "write_grades",
]

FINDING_THRESHOLDS: dict[str, int] = {
    "pfirrmann": 2,   # grade III or worse
    "narrowing": 2,   # moderate or worse
    **{t.name: 1 for t in TASKS if t.is_binary},  # abnormal
}
"""A predicted class ``>=`` this index is a finding and gets a hotspot map."""


def is_finding(task: str, label: int) -> bool:
    """True when class ``label`` of ``task`` is a finding (see :data:`FINDING_THRESHOLDS`)."""
    get_task(task)
    return int(label) >= FINDING_THRESHOLDS[task]


@dataclass
class Prediction:
    """Everything :func:`predict` computed for one study.

    Attributes
    ----------
    source : str
        The input path.
    scan : Scan
        The loaded scan, ``volume (S, H, W)`` float32.
    corners : ndarray, shape (7, S, 4, 2), float32
        Vertebra corners used (voxel ``(row, col)``, NaN where a body is absent).
    discs : DiscVolumes
        The disc volumes ``(D, 9, 112, 224)`` with their geometries, ``D <= 6``.
    probs : dict of str to ndarray
        ``{task: (D, C_t) float32}`` TTA-averaged class probabilities.
    labels : ndarray, shape (D, T), int16
        Predicted class per disc and task (``TASK_NAMES`` order).
    maps : dict
        ``{(level, task): (9, 112, 224) float32}`` hotspot of every finding.
    weights : dict
        ``{"name", "path", "sha256"}`` of the grader.
    localiser : dict or None
        Same for the localiser; None when corners were given.
    version : str
        ``spinenet_lite.__version__``.
    timings : dict of str to float
        Wall-clock seconds spent in ``load``, ``localise``, ``extract``, ``tta``, ``hotspots``,
        ``report`` (and ``save_maps`` when the hotspot volumes were written).
    cpu_timings : dict of str to float
        CPU seconds of this process (all threads) in the same steps: on a busy machine the
        better measure of the work done.
    notes : list of str
        Warnings for the reader (skipped discs, the grader and padding chosen for the study, ...).
    files : dict of str to Path
        The files written (``grades_csv``, ``grades_json``, ``report``, ``overview``,
        ``disc_<level>``, ``map_<level>_<task>``).
    saved_maps : dict
        ``{(level, task): {"file": "hotspots/<level>_<task>.nii.gz", "raw_max": float}}``: the
        hotspot volumes written (``save_maps``, :func:`spinenet_lite.app.maps.write_maps`),
        relative to the output folder, with the scale of each (its values times ``raw_max``
        are the map's own units); empty when none were.
    pad : {"zero", "replicate"}
        How slice positions the scan does not cover were filled.
    slab_mm : float or None
        Thickness of the slabs the scan's slices were averaged into, mm (None: none).
    """

    source: str
    scan: Scan
    corners: np.ndarray
    discs: Any
    probs: dict[str, np.ndarray]
    labels: np.ndarray
    maps: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    weights: dict[str, str] = field(default_factory=dict)
    localiser: dict[str, str] | None = None
    version: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    cpu_timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    saved_maps: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pad: str = "zero"
    slab_mm: float | None = None

    @property
    def levels(self) -> list[str]:
        """Levels of the graded discs (a subset of ``LEVELS``, top to bottom)."""
        return list(self.discs.levels)

    def grade(self, level: str, task: str) -> tuple[str, float] | None:
        """``(class name, probability)`` of ``task`` at ``level``; None when that disc was not graded."""
        if level not in self.levels:
            return None
        i, t = self.levels.index(level), TASK_NAMES.index(get_task(task).name)
        c = int(self.labels[i, t])
        return get_task(task).classes[c], float(self.probs[task][i, c])

    def findings(self) -> list[tuple[str, str]]:
        """``(level, task)`` of every finding, top to bottom, in ``TASK_NAMES`` order."""
        return [(lv, t) for i, lv in enumerate(self.levels) for k, t in enumerate(TASK_NAMES)
                if is_finding(t, int(self.labels[i, k]))]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per level of ``LEVELS`` (ungraded levels have empty grades and a note)."""
        out = []
        for level in LEVELS:
            row: dict[str, Any] = {"level": level, "graded": level in self.levels}
            for t in TASK_NAMES:
                g = self.grade(level, t)
                row[t] = g[0] if g else ""
                row[f"{t}_prob"] = round(g[1], 4) if g else ""
            out.append(row)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The content of ``grades.json`` (plain JSON types)."""
        levels = []
        for level in LEVELS:
            entry: dict[str, Any] = {"level": level, "graded": level in self.levels}
            if level in self.levels:
                i = self.levels.index(level)
                entry["tasks"] = {
                    t: {"class": get_task(t).classes[int(self.labels[i, k])],
                        "class_index": int(self.labels[i, k]),
                        "probability": round(float(self.probs[t][i, int(self.labels[i, k])]), 4),
                        "probabilities": [round(float(p), 4) for p in self.probs[t][i]],
                        "finding": is_finding(t, int(self.labels[i, k]))}
                    for k, t in enumerate(TASK_NAMES)}
            levels.append(entry)
        return {
            "source": self.source,
            "patient_id": self.scan.patient_id,
            "series_uid": self.scan.series_uid,
            "scan_shape": list(self.scan.shape),
            "pixel_spacing_mm": list(self.scan.pixel_spacing),
            "slice_spacing_mm": self.scan.slice_spacing,
            "spinenet_lite_version": self.version,
            "weights": dict(self.weights),
            "localiser": dict(self.localiser) if self.localiser else "corners given by the caller",
            "slice_padding": self.pad,
            "slab_mm": self.slab_mm,
            "tta_views": 54,
            "hotspot_method": "paper",
            "levels": levels,
            "findings": [{"level": lv, "task": t} for lv, t in self.findings()],
            "hotspot_maps": [{"level": lv, "task": t, **entry} for (lv, t), entry in self.saved_maps.items()],
            "notes": list(self.notes),
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "cpu_timings_s": {k: round(v, 3) for k, v in self.cpu_timings.items()},
        }


def write_grades(pred: Prediction, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``grades.csv`` and ``grades.json`` into ``out_dir``.

    ``grades.csv`` has one row per level ``T12-L1 ... L5-S1`` with columns ``level``,
    ``graded``, then per task ``<task>`` (class name) and ``<task>_prob``, then
    ``weights``, ``weights_sha256`` and ``spinenet_lite_version``. ``grades.json`` is
    :meth:`Prediction.to_dict`: besides the grades, ``findings`` (``level``, ``task``) and
    ``hotspot_maps``, one entry per hotspot volume written by ``save_maps``
    (:func:`spinenet_lite.app.maps.write_maps`): ``level``, ``task``, ``file`` (relative to
    ``out_dir``, e.g. ``hotspots/L4-L5_lower_endplate.nii.gz``, float32 in the input series'
    geometry, scaled to a maximum of 1) and ``raw_max`` (the scale: the map's own maximum); empty
    without ``save_maps``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / "grades.csv", out / "grades.json"
    fields = ["level", "graded", *[c for t in TASK_NAMES for c in (t, f"{t}_prob")],
              "weights", "weights_sha256", "spinenet_lite_version"]
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for row in pred.rows():
            w.writerow({**row, "weights": pred.weights.get("name", ""),
                        "weights_sha256": pred.weights.get("sha256", ""),
                        "spinenet_lite_version": pred.version})
    json_path.write_text(json.dumps(pred.to_dict(), indent=2), encoding="utf-8")
    return {"grades_csv": csv_path, "grades_json": json_path}


