"""The one rule for the grader and slice padding a study gets (spinenet_lite.engine.grading)."""

from __future__ import annotations

import numpy as np
import pytest

from spinenet_lite.engine import grading as G
from spinenet_lite.engine.weights import DEFAULT_GRADER, ONE_SLICE_GRADER, REAL_GRADER, REGISTRY
from spinenet_lite.errors import InputError
from spinenet_lite.io.scan import Scan


def _scan(n_slices: int, **kw) -> Scan:
    return Scan(volume=np.zeros((n_slices, 16, 16), np.float32), pixel_spacing=(1.0, 1.0), slice_spacing=4.0,
                **kw)


def test_study_kinds_and_the_rule_table():
    assert G.study_kind(_scan(1)) == "one_slice"
    assert G.study_kind(_scan(1, source="phantom")) == "one_slice"  # one slice wins over the origin
    assert G.study_kind(_scan(12, source="phantom")) == "synthetic"
    assert G.study_kind(_scan(12, manufacturer="SIEMENS")) == "real"
    assert G.study_kind(n_slices=1) == "one_slice"
    assert G.study_kind(n_slices=3, is_phantom=True) == "synthetic"
    with pytest.raises(InputError, match="slice"):
        G.study_kind(n_slices=0)
    assert set(G.GRADING_RULE) == set(G.STUDY_KINDS)
    assert G.GRADING_RULE["one_slice"] == (ONE_SLICE_GRADER, "replicate")
    assert G.GRADING_RULE["synthetic"] == (DEFAULT_GRADER, "zero")
    assert G.GRADING_RULE["real"] == (REAL_GRADER, "zero")
    for name, _ in G.GRADING_RULE.values():
        assert REGISTRY[name].kind == "grader"


def test_default_grading_keeps_what_the_caller_gives():
    one, real, syn = _scan(1), _scan(12, manufacturer="SIEMENS"), _scan(12, source="phantom")
    for scan in (one, real, syn):
        kind = G.study_kind(scan)
        w, pad, _ = G.default_grading(scan)
        assert (w, pad) == G.GRADING_RULE[kind] == G.grading_for_kind(kind)
        assert G.default_pad(scan) == pad
    assert len(G.default_grading(one)[2]) == 2 and len(G.default_grading(real)[2]) == 1
    assert G.default_grading(syn)[2] == []
    assert G.default_grading(one, "spinenet_real", "zero") == ("spinenet_real", "zero", [])
    assert G.grading_for_kind("real", "x.pt", "replicate") == ("x.pt", "replicate")
    model = object()
    assert G.grading_for_kind("one_slice", model)[0] is model
    with pytest.raises(InputError, match="study kind"):
        G.grading_for_kind("2d")
    # the re-export predict uses is this very function
    from spinenet_lite.app import default_grading

    assert default_grading is G.default_grading


def test_grading_record():
    info = {"name": "spinenet_real_2d", "path": "/w/spinenet_real_2d.pt", "sha256": "ab" * 32}
    assert G.grading_record(info, "replicate", "one_slice") == {
        "grader": "spinenet_real_2d", "path": "/w/spinenet_real_2d.pt", "sha256": "ab" * 32,
        "pad": "replicate", "study_kind": "one_slice"}
    rec = G.grading_record(None, "zero")
    assert rec["grader"] == "<model in memory>" and rec["sha256"] is None and "study_kind" not in rec
