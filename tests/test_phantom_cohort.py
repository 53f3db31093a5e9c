"""The synthetic cohort on disk: layout, DICOM round trip, worker independence, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spinenet_lite.cli import main
from spinenet_lite.errors import InputError
from spinenet_lite.phantom import PhantomConfig, load_patient, read_cohort, synth_patient, write_cohort
from spinenet_lite.tasks import LEVELS, TASK_NAMES

FAST = PhantomConfig.fast()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort") / "c"
    return write_cohort(out, 3, seed=5, workers=1, config=FAST, progress=False)


def test_layout_and_tables(cohort):
    root = cohort.path
    record = json.loads((root / "cohort.json").read_text())
    assert record["n_patients"] == 3 and record["seed"] == 5
    assert record["patient_ids"] == ["P00000", "P00001", "P00002"]
    assert PhantomConfig.from_dict(record["config"]) == FAST
    for pid in cohort.patient_ids:
        assert (root / pid / "truth.npz").is_file()
        assert sorted(p.name for p in (root / pid / "dicom").iterdir())[0] == "IM0000.dcm"
    table = cohort.labels
    assert len(table) == 3 * len(LEVELS)
    assert list(table.columns[:2]) == ["patient", "level"]
    assert set(TASK_NAMES) | {f"{t}_true" for t in TASK_NAMES} <= set(table.columns)
    assert list(table["level"][:6]) == list(LEVELS)


def test_round_trip_through_dicom(cohort):
    direct = synth_patient(1, 5, FAST)
    back = cohort.load("P00001")
    assert back.scan.shape == direct.scan.shape
    vol = direct.scan.volume
    tol = (vol.max() - vol.min()) / 60000 + 1e-6
    np.testing.assert_allclose(back.scan.volume, vol, atol=tol)
    np.testing.assert_allclose(back.scan.pixel_spacing, direct.scan.pixel_spacing, rtol=1e-5)
    assert back.scan.slice_spacing == pytest.approx(direct.scan.slice_spacing, rel=1e-4)
    np.testing.assert_allclose(back.scan.normal, direct.scan.normal, atol=1e-6)
    np.testing.assert_array_equal(back.corners, direct.corners)
    np.testing.assert_array_equal(back.lesions, direct.lesions)
    for kind in ("true", "observed", "reread"):
        np.testing.assert_array_equal(back.labels[kind], direct.labels[kind])
    rows = cohort.labels[cohort.labels["patient"] == "P00001"]
    np.testing.assert_array_equal(rows[list(TASK_NAMES)].to_numpy(), direct.labels["observed"])
    np.testing.assert_array_equal(cohort.label_array("true")[6:12], direct.labels["true"])
    assert back.meta["age"] == direct.meta["age"]


def test_patient_independent_of_n_and_workers(cohort, tmp_path):
    other = write_cohort(tmp_path / "two", 2, seed=5, workers=2, config=FAST, progress=False)
    for pid in other.patient_ids:
        a, b = cohort.load(pid), other.load(pid)
        np.testing.assert_array_equal(a.scan.volume, b.scan.volume)
        np.testing.assert_array_equal(a.lesions, b.lesions)
        np.testing.assert_array_equal(a.corners, b.corners)
    np.testing.assert_array_equal(other.labels.to_numpy(), cohort.labels.to_numpy()[:12])


def test_bad_paths_and_arguments(cohort, tmp_path):
    with pytest.raises(InputError, match="cohort.json"):
        read_cohort(tmp_path / "nothing")
    with pytest.raises(InputError, match="no patient P00009"):
        load_patient(cohort.path, 9)
    with pytest.raises(InputError, match="already holds a cohort"):
        write_cohort(cohort.path, 1, seed=5, config=FAST, progress=False)
    with pytest.raises(InputError, match="n_patients"):
        write_cohort(tmp_path / "x", 0, seed=5)
    with pytest.raises(InputError, match="workers"):
        write_cohort(tmp_path / "x", 1, seed=5, workers=0)


def test_cli_synth_writes_and_reports(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["synth", "--patients", "1", "--out", str(out), "--seed", "2", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "wrote 1 studies (6 discs)" in text and "pfirrmann" in text and "observed %" in text
    assert read_cohort(out).patient_ids == ["P00000"]
    assert main(["synth", "--patients", "1", "--out", str(out), "--no-progress"]) == 2
    assert "already holds a cohort" in capsys.readouterr().err
    assert main(["synth", "--patients", "1", "--out", str(out), "--overwrite", "--no-progress"]) == 0
