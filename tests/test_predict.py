"""The end-to-end pipeline: ``predict`` on a phantom study with known corners, its files, the CLI."""

from __future__ import annotations

import csv
import hashlib
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from spinenet_lite import __version__
from spinenet_lite.app import (
    DEMO_LABELS,
    FINDING_THRESHOLDS,
    compare_table,
    is_finding,
    predict,
)
from spinenet_lite.cli import main
from spinenet_lite.engine.evaluation import predict as tta_predict
from spinenet_lite.errors import InputError, LandmarkError, SpineNetError
from spinenet_lite.extract.discs import extract_discs
from spinenet_lite.io.dicom import write_dicom_series
from spinenet_lite.nn.model import SpineNet
from spinenet_lite.phantom import PhantomConfig, synth_patient
from spinenet_lite.tasks import LEVELS, TASK_NAMES

KW = {"branch_point": "conv5", "width": 0.0625, "dropout": 0.5}


@pytest.fixture(scope="module")
def tiny(tiny_grader):
    return tiny_grader[0]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    st = synth_patient(0, 0, PhantomConfig.fast())
    folder = tmp_path_factory.mktemp("in") / "dicom"
    write_dicom_series(st.scan, folder)
    return st, folder


def _hashes(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def run(study, tiny, tmp_path_factory):
    st, folder = study
    before = _hashes(folder)
    corners = st.corners.copy()
    out = tmp_path_factory.mktemp("out") / "report"
    pred = predict(folder, out, weights=tiny, corners=corners, device="cpu", n_aug=2, progress=False)
    return pred, out, before, corners


def test_findings_rule():
    assert FINDING_THRESHOLDS == {"pfirrmann": 2, "narrowing": 2, "upper_endplate": 1, "lower_endplate": 1,
                                  "upper_marrow": 1, "lower_marrow": 1}
    assert not is_finding("pfirrmann", 1) and is_finding("pfirrmann", 2)
    assert not is_finding("narrowing", 1) and is_finding("narrowing", 3)
    assert is_finding("upper_marrow", 1) and not is_finding("upper_marrow", 0)


def test_input_untouched_and_caller_corners_untouched(run, study):
    pred, _, before, corners = run
    assert _hashes(study[1]) == before
    assert np.array_equal(corners, study[0].corners, equal_nan=True)


def test_grades_match_tta_on_the_same_volumes(run, study, tiny):
    pred, *_ = run
    st = study[0]
    assert pred.levels == list(LEVELS)
    ref = extract_discs(st.scan, st.corners)
    # the DICOM round trip quantises to 16 bits: the volumes agree to the quantisation
    assert np.abs(ref.volumes - pred.discs.volumes).max() < 1e-3
    m = SpineNet(**KW)
    m.load_state_dict(torch.load(tiny, weights_only=True)["model"])
    probs = tta_predict(m, pred.discs.volumes[:2], tta=True, device="cpu")
    for t in TASK_NAMES:
        np.testing.assert_allclose(pred.probs[t][:2], probs[t], atol=1e-5)
        assert pred.labels[:2, TASK_NAMES.index(t)].tolist() == probs[t].argmax(1).tolist()


def test_a_map_for_every_finding_and_none_else(run):
    pred, *_ = run
    assert set(pred.maps) == set(pred.findings())
    for m in pred.maps.values():
        assert m.shape == (9, 112, 224) and m.dtype == np.float32 and (m >= 0).all() and m.max() > 0


def test_grades_files(run, tiny):
    pred, out, *_ = run
    rows = list(csv.DictReader(open(out / "grades.csv", encoding="utf-8")))
    assert [r["level"] for r in rows] == list(LEVELS)
    sha = hashlib.sha256(tiny.read_bytes()).hexdigest()
    for i, r in enumerate(rows):
        assert r["weights"] == "tiny.pt" and r["weights_sha256"] == sha
        assert r["spinenet_lite_version"] == __version__
        for t in TASK_NAMES:
            g = pred.grade(LEVELS[i], t)
            assert r[t] == g[0] and abs(float(r[f"{t}_prob"]) - g[1]) < 1e-4
    js = json.loads((out / "grades.json").read_text())
    assert js["weights"]["sha256"] == sha and js["spinenet_lite_version"] == __version__
    assert [lv["level"] for lv in js["levels"]] == list(LEVELS)
    first = js["levels"][0]["tasks"]["pfirrmann"]
    assert abs(sum(first["probabilities"]) - 1) < 1e-3
    assert {(f["level"], f["task"]) for f in js["findings"]} == set(pred.findings())
    assert set(js["timings_s"]) >= {"load", "localise", "extract", "tta", "hotspots", "report"}


def test_report_is_one_self_contained_file(run):
    pred, out, *_ = run
    text = (out / "report.html").read_text(encoding="utf-8")
    assert text.count('src="data:image/png;base64,') == 1 + len(pred.levels)
    assert not re.search(r'(src|href)\s*=\s*"(?!data:)', text), "only inline data: URIs"
    assert "<script" not in text and "<link" not in text and "@import" not in text
    for lv in LEVELS:
        assert lv in text
    for key in ["overview", *[f"disc_{lv}" for lv in pred.levels]]:
        with Image.open(out / f"{key}.png") as im:
            assert im.width > 100 and im.height > 100


def test_out_inside_input_is_refused(study, tiny):
    st, folder = study
    with pytest.raises(InputError, match="inside the input"):
        predict(folder, folder / "out", weights=tiny, corners=st.corners, progress=False)
    assert not (folder / "out").exists()


def test_bad_corners(study, tiny):
    st, folder = study
    with pytest.raises(LandmarkError, match="shape"):
        predict(folder, None, weights=tiny, corners=st.corners[:, :2], progress=False)
    with pytest.raises(LandmarkError):
        predict(folder, None, weights=tiny, corners="abc", progress=False)


def test_no_localiser_weights_is_a_clear_error(study, tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("SPINENET_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(SpineNetError, match="localiser"):
        predict(study[1], None, weights=tiny, progress=False)


def test_png_input(study, tiny, tmp_path):
    st = study[0]
    s = st.mid_slice
    img = st.scan.volume[s]
    png = tmp_path / "mid.png"
    Image.fromarray(np.clip(img / img.max() * 255, 0, 255).astype(np.uint8)).save(png)
    with pytest.raises(InputError, match="--spacing"):
        predict(png, None, weights=tiny, progress=False)
    with pytest.raises(InputError, match="drop --spacing"):
        predict(study[1], None, weights=tiny, spacing_mm=1.0, progress=False)
    pred = predict(png, None, weights=tiny, corners=st.corners[:, s:s + 1], spacing_mm=st.scan.pixel_spacing,
                   hotspots=False, tta=False, device="cpu", progress=False, pad="zero")
    assert pred.scan.shape == (1, *img.shape) and len(pred.levels) == 6
    assert pred.pad == "zero" and not any("one-slice" in n for n in pred.notes)
    # by default a one-slice study has its slice in all nine positions instead of among eight
    # empty ones: other probabilities, and the report says so
    rep = predict(png, None, weights=tiny, corners=st.corners[:, s:s + 1], spacing_mm=st.scan.pixel_spacing,
                  hotspots=False, tta=False, device="cpu", progress=False)
    assert rep.levels == pred.levels and rep.pad == "replicate"
    assert any("nine disc-volume positions" in n for n in rep.notes)
    assert not any("graded with" in n for n in rep.notes)  # the caller named the weights
    assert any(not np.allclose(rep.probs[t], pred.probs[t]) for t in pred.probs)
    assert rep.to_dict()["slice_padding"] == "replicate"
    with pytest.raises(InputError, match="padding"):
        predict(png, None, weights=tiny, spacing_mm=st.scan.pixel_spacing, progress=False, pad="mirror")


def test_compare_table(run):
    pred, *_ = run
    text = compare_table(pred, DEMO_LABELS)
    lines = text.splitlines()
    assert len(lines) == 2 + len(LEVELS) + 1 and lines[-1].startswith("agreement:")
    assert "V/V" in text or "/V*" in text  # L5-S1 is Pfirrmann V in the demo truth


def test_cli_failure_is_one_line(tmp_path, capsys):
    rc = main(["predict", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "does not exist" in err


def test_cli_unexpected_error_is_one_line(tmp_path, capsys, monkeypatch):
    import spinenet_lite.app as A

    def boom(*a, **k):
        raise RuntimeError("something broke\nsecond line")

    monkeypatch.setattr(A, "predict", boom)  # what the CLI calls
    monkeypatch.delenv("SPINENET_DEBUG", raising=False)
    rc = main(["predict", str(tmp_path), "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 3 and len(err.splitlines()) == 1 and "internal error" in err


@pytest.mark.slow
def test_cli_demo(tmp_path, tiny, capsys):
    rc = main(["demo", "--out", str(tmp_path / "demo"), "--weights", str(tiny), "--device", "cpu",
               "--corners", "truth", "--no-hotspots", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "agreement:" in out and "report.html" in out
    assert (tmp_path / "demo" / "report" / "report.html").is_file()
    assert len(list((tmp_path / "demo" / "dicom").glob("IM*.dcm"))) > 5
    rows = list(csv.DictReader(open(tmp_path / "demo" / "report" / "grades.csv", encoding="utf-8")))
    assert len(rows) == 6


@pytest.mark.slow
def test_cli_predict_with_the_shipped_localiser(study, tiny, tmp_path, capsys):
    """End to end as a user runs it: DICOM folder in, localiser finds the corners, report out.

    The shipped localiser is loaded through the registry and checked against its recorded sha256."""
    from spinenet_lite.engine import weights as W

    entry = W.REGISTRY[W.DEFAULT_LOCALISER]
    assert entry.sha256 is not None, "the shipped localiser has no sha256 in the registry"
    rc = main(["predict", str(study[1]), "--out", str(tmp_path / "o"), "--weights", str(tiny),
               "--device", "cpu", "--no-hotspots", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "report:" in out and (tmp_path / "o" / "report.html").is_file()
    js = json.loads((tmp_path / "o" / "grades.json").read_text())
    assert js["localiser"]["sha256"] == entry.sha256
    assert sum(lv["graded"] for lv in js["levels"]) >= 4


def test_default_grading_by_study_kind(study):
    import dataclasses

    from spinenet_lite.app import default_grading
    from spinenet_lite.engine.weights import DEFAULT_GRADER, ONE_SLICE_GRADER, REAL_GRADER, REGISTRY
    from spinenet_lite.io.dicom import load_scan
    from spinenet_lite.io.scan import Scan

    st, folder = study
    for name in (ONE_SLICE_GRADER, REAL_GRADER, DEFAULT_GRADER):
        assert REGISTRY[name].kind == "grader" and REGISTRY[name].sha256
    # a synthetic study, in memory and read back from the DICOM the phantom wrote
    assert default_grading(st.scan) == (DEFAULT_GRADER, "zero", [])
    back = load_scan(folder)
    assert back.is_phantom and default_grading(back) == (DEFAULT_GRADER, "zero", [])
    # a real multi-slice study: the real-scan model, zero padding, and a note saying so
    real = dataclasses.replace(back, source=str(folder), manufacturer="SIEMENS")
    w, pad, notes = default_grading(real)
    assert (w, pad) == (REAL_GRADER, "zero") and len(notes) == 1 and REAL_GRADER in notes[0]
    # one slice: the single-slice model, the slice in all nine positions
    one = Scan(volume=st.scan.volume[st.mid_slice:st.mid_slice + 1], pixel_spacing=st.scan.pixel_spacing,
               slice_spacing=st.scan.slice_spacing)
    w, pad, notes = default_grading(one)
    assert (w, pad) == (ONE_SLICE_GRADER, "replicate") and len(notes) == 2
    # what the caller names is kept
    assert default_grading(one, "spinenet_real", "zero") == ("spinenet_real", "zero", [])
    assert default_grading(real, "spinenet_synthetic") == ("spinenet_synthetic", "zero", [])
    assert default_grading(st.scan, None, "replicate")[:2] == (DEFAULT_GRADER, "replicate")


def test_predict_a_real_mid_sagittal_png(spider_dir, tmp_path):
    """A real SPIDER PNG through the defaults: the single-slice grader, sensible grades.

    Patient 100 is among the patients the shipped single-slice model was trained on, so
    agreement here checks the pipeline (the default weights and padding, the localiser, the
    level order), not the model's accuracy: that is the cross-validation's job
    (``data/results/spider_cv_midsag_replicated_teaching.json``, whose out-of-fold grades for
    this patient are the same Pfirrmann grades).
    """
    from spinenet_lite.datasets.spider import read_gradings

    png = spider_dir / "t2_midsag" / "100_t2.png"
    before = hashlib.sha256(png.read_bytes()).hexdigest()
    pred = predict(png, tmp_path / "out", spacing_mm=0.478, device="cpu", progress=False, hotspots=False,
                   tta=False)
    assert hashlib.sha256(png.read_bytes()).hexdigest() == before
    assert pred.weights["name"] == "spinenet_real_2d" and pred.pad == "replicate"
    assert pred.levels == list(LEVELS)
    g = read_gradings(spider_dir)
    g = g[g["patient"] == "100"].set_index("level")["Pfirrman grade"]
    truth = np.array([int(g[lv]) for lv in range(len(LEVELS))])
    grades = pred.labels[:, 0] + 1
    assert np.abs(grades - truth).max() <= 1, (grades, truth)
    assert len(set(grades)) > 1  # not one grade for every disc, as a zero-padded slice gave
    assert json.loads((tmp_path / "out" / "grades.json").read_text())["slice_padding"] == "replicate"
