"""One rule for the grader and the slice padding a study gets.

``predict`` (:mod:`spinenet_lite.app.pipeline`), ``evaluate-spider`` and
``experiment-spider`` (:mod:`spinenet_lite.experiments.spider_cv`) and the chapters all ask
this module, so that the same kind of study is graded the same way everywhere:

============== ======================================================= ===============
study kind     grader (:data:`~spinenet_lite.engine.weights.REGISTRY`)  slice padding
============== ======================================================= ===============
``one_slice``  :data:`~spinenet_lite.engine.weights.ONE_SLICE_GRADER`  ``"replicate"``
``synthetic``  :data:`~spinenet_lite.engine.weights.DEFAULT_GRADER`    ``"zero"``
``real``       :data:`~spinenet_lite.engine.weights.REAL_GRADER`       ``"zero"``
============== ======================================================= ===============

A study with one slice (a 2D image, a mid-sagittal PNG, a single DICOM slice) is
``one_slice`` whatever its origin: the one-slice grader was trained on mid-sagittal slices
copied into all nine disc-volume positions, and a nine-slice model fed one slice among eight
empty ones grades nearly every disc alike (chapter 8). A multi-slice study from the
synthetic cohort (:attr:`~spinenet_lite.io.scan.Scan.is_phantom`) is ``synthetic``; any
other multi-slice study is ``real``. A grader or padding the caller names is kept.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import InputError
from ..io.scan import Scan
from .weights import DEFAULT_GRADER, ONE_SLICE_GRADER, REAL_GRADER

__all__ = [
    "GRADING_RULE",
    "STUDY_KINDS",
    "default_grading",
    "default_pad",
    "grading_for_kind",
    "grading_record",
    "study_kind",
]

STUDY_KINDS: tuple[str, ...] = ("one_slice", "synthetic", "real")
"""The kinds of study :func:`study_kind` tells apart."""

GRADING_RULE: dict[str, tuple[str, str]] = {
    "one_slice": (ONE_SLICE_GRADER, "replicate"),
    "synthetic": (DEFAULT_GRADER, "zero"),
    "real": (REAL_GRADER, "zero"),
}
"""``{study kind: (grader registry name, slice padding)}``: the rule (module docstring)."""


def study_kind(scan: Scan | None = None, *, n_slices: int | None = None, is_phantom: bool = False) -> str:
    """The kind of a study: ``"one_slice"``, ``"synthetic"`` or ``"real"``.

    Parameters
    ----------
    scan : Scan, optional
        The study; or give ``n_slices`` (and ``is_phantom``) without loading it.
    n_slices : int, optional
        Number of sagittal slices (used when ``scan`` is None).
    is_phantom : bool
        A synthetic-cohort study (used when ``scan`` is None).

    Returns
    -------
    str
        One of :data:`STUDY_KINDS`.
    """

    if scan is not None:
        n_slices, is_phantom = scan.n_slices, scan.is_phantom
    if n_slices is None or int(n_slices) < 1:
        raise InputError(f"a study needs at least one slice; got n_slices={n_slices}")
    if int(n_slices) == 1:
        return "one_slice"
    return "synthetic" if is_phantom else "real"


def grading_for_kind(kind: str, weights: str | os.PathLike | Any | None = None,
                     pad: str | None = None) -> tuple[Any, str]:
    """The grader and padding of a study kind, keeping what the caller gives.

    Parameters
    ----------
    kind : str
        One of :data:`STUDY_KINDS`.
    weights : str, path, model or None
        None: the rule's grader for ``kind``.
    pad : {"zero", "replicate"} or None
        None: the rule's padding for ``kind``.

    Returns
    -------
    weights : str, path or model
    pad : str
    """

    if kind not in GRADING_RULE:
        raise InputError(f"unknown study kind {kind!r}; use one of {', '.join(STUDY_KINDS)}")
    rule_weights, rule_pad = GRADING_RULE[kind]
    return (rule_weights if weights is None else weights), (rule_pad if pad is None else pad)


def default_pad(scan: Scan) -> str:
    """The slice padding the rule gives ``scan``: ``"replicate"`` for one slice, else ``"zero"``."""
    return grading_for_kind(study_kind(scan))[1]


def default_grading(scan: Scan, weights: str | os.PathLike | None = None,
                    pad: str | None = None) -> tuple[str | os.PathLike, str, list[str]]:
    """The grader and slice padding a study gets when not given (:data:`GRADING_RULE`).

    A study with one slice gets :data:`~spinenet_lite.engine.weights.ONE_SLICE_GRADER` and
    ``"replicate"`` padding (the slice in all nine positions, as that model was trained); a
    synthetic-cohort study (:attr:`~spinenet_lite.io.scan.Scan.is_phantom`)
    :data:`~spinenet_lite.engine.weights.DEFAULT_GRADER` (the synthetic grader); any other (real)
    study :data:`~spinenet_lite.engine.weights.REAL_GRADER`; both with the paper's zero padding. A
    value the caller gives is kept.

    Returns
    -------
    weights : str or path
    pad : {"zero", "replicate"}
    notes : list of str
        One line per choice made here, for the report.
    """
    kind = study_kind(scan)
    chosen_weights, chosen_pad = grading_for_kind(kind, weights, pad)
    notes = []
    if weights is None and kind == "one_slice":
        notes.append(f"one-slice study: graded with {ONE_SLICE_GRADER}, the real-scan model for single "
                     "mid-sagittal slices (--weights chooses another)")
    elif weights is None and kind == "real":
        notes.append(f"a real (not synthetic) study: graded with {REAL_GRADER}, the model fine-tuned on "
                     "real SPIDER scans (--weights spinenet_synthetic chooses the synthetic one)")
    if pad is None and kind == "one_slice":
        notes.append("one-slice study: the slice is copied into all nine disc-volume positions "
                     "(--pad zero gives the paper's zero padding)")
    return chosen_weights, chosen_pad, notes


def grading_record(info: dict[str, Any] | None, pad: str, kind: str | None = None) -> dict[str, Any]:
    """What a results file records of a grading: grader name, path, sha256, padding, study kind.

    Parameters
    ----------
    info : dict or None
        ``{"name", "path", "sha256"}`` from :func:`spinenet_lite.engine.weights.load_grader`;
        None for a model given in memory (recorded as ``"<model in memory>"``, no hash).
    pad : str
        The slice padding used.
    kind : str, optional
        The study kind (:func:`study_kind`).

    Returns
    -------
    dict
        ``{"grader", "path", "sha256", "pad"[, "study_kind"]}``.
    """
    info = info or {"name": "<model in memory>", "path": None, "sha256": None}
    out = {"grader": info.get("name"), "path": info.get("path"), "sha256": info.get("sha256"), "pad": pad}
    if kind is not None:
        out["study_kind"] = kind
    return out
