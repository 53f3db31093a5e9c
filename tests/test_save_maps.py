"""``predict --save-maps``: every finding's hotspot as a volume in the input series' geometry.

The reference geometry is what SimpleITK itself reads from the input (``ImageSeriesReader`` on
the DICOM folder, ``ImageFileReader`` on a 3D file), not the project's own loaders; where the
maps sit is checked in patient space (mm) against the phantom's true disc masks.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from spinenet_lite.app import HOTSPOT_DIR, map_filename, predict, scan_map, write_maps
from spinenet_lite.cli import main
from spinenet_lite.errors import InputError
from spinenet_lite.io.dicom import write_dicom_series
from spinenet_lite.io.volume import load_volume
from spinenet_lite.phantom import PhantomConfig, synth_patient
from spinenet_lite.tasks import LEVELS, TASK_NAMES

FAST = {"device": "cpu", "n_aug": 2, "tta": False, "report": False, "progress": False}


@pytest.fixture(scope="module")
def tiny(tiny_grader):
    return tiny_grader[0]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    st = synth_patient(0, 0, PhantomConfig.fast())
    folder = tmp_path_factory.mktemp("in") / "dicom"
    write_dicom_series(st.scan, folder)
    return st, folder


@pytest.fixture(scope="module")
def reference(study):
    """The input series as SimpleITK reads it, independently of the project's loaders."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(study[1])))
    return reader.Execute()


@pytest.fixture(scope="module")
def run(study, tiny, tmp_path_factory):
    st, folder = study
    out = tmp_path_factory.mktemp("out") / "report"
    pred = predict(folder, out, weights=tiny, corners=st.corners, save_maps=True, **FAST)
    return pred, out


def _geometry(img: sitk.Image) -> tuple[np.ndarray, ...]:
    return (np.array(img.GetSize()), np.array(img.GetSpacing()), np.array(img.GetOrigin()),
            np.array(img.GetDirection()))


def _assert_same_geometry(img: sitk.Image, ref: sitk.Image) -> None:
    size, spacing, origin, direction = _geometry(img)
    rsize, rspacing, rorigin, rdirection = _geometry(ref)
    assert size.tolist() == rsize.tolist()
    np.testing.assert_allclose(spacing, rspacing, rtol=1e-5)
    np.testing.assert_allclose(origin, rorigin, atol=1e-3)  # mm; NIfTI stores float32
    np.testing.assert_allclose(direction, rdirection, atol=1e-5)


def _project_image(values: np.ndarray, scan) -> sitk.Image:
    """``values (S, H, W)`` in the scan's geometry: x along the row direction, y the column one."""
    img = sitk.GetImageFromArray(np.asarray(values, dtype=np.float32))
    img.SetSpacing((scan.pixel_spacing[1], scan.pixel_spacing[0], scan.slice_spacing))
    img.SetOrigin(tuple(scan.origin))
    normal = np.cross(scan.row_direction, scan.column_direction)
    img.SetDirection(tuple(np.column_stack([scan.row_direction, scan.column_direction, normal]).ravel()))
    return img


def _centre_mm(img: sitk.Image, weights: np.ndarray) -> np.ndarray:
    """Patient-space (LPS, mm) centre of mass of ``weights``, an array in ``img``'s (z, y, x) order."""
    w = np.asarray(weights, dtype=np.float64)
    idx = np.array([(w.sum(axis=tuple(a for a in range(3) if a != k)) * np.arange(w.shape[k])).sum()
                    for k in range(3)]) / w.sum()
    return np.array(img.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in idx[::-1])))


def _check_maps_in_place(pred, out, reference, disc_masks, like_reference: bool) -> None:
    """Every listed file: geometry of ``reference``, finite, >= 0, mass at its own disc."""
    js = json.loads((out / "grades.json").read_text())
    listed = {(e["level"], e["task"]): e for e in js["hotspot_maps"]}
    assert set(listed) == set(pred.findings()) == set(pred.maps)
    discs = {lv: _centre_mm(reference, (disc_masks == i + 1)) for i, lv in enumerate(LEVELS)}
    gap = min(np.linalg.norm(discs[a] - discs[b]) for a, b in zip(LEVELS[:-1], LEVELS[1:]))
    for (level, task), entry in listed.items():
        assert entry["file"] == f"{HOTSPOT_DIR}/{map_filename(level, task)}"
        assert entry["raw_max"] > 0
        img = sitk.ReadImage(str(out / entry["file"]))
        assert img.GetPixelID() == sitk.sitkFloat32 and img.GetDimension() == 3
        _assert_same_geometry(img, reference)
        arr = sitk.GetArrayFromImage(img)
        assert np.isfinite(arr).all() and arr.min() >= 0 and abs(arr.max() - 1) < 1e-6
        # the mass sits on its own disc: inside the disc's region of the scan (in the reference's
        # grid when that is the project's, as for DICOM) and, in mm, nearer its own disc than any other
        if like_reference:
            region = pred.discs.geometries[pred.levels.index(level)].region_mask(pred.scan.shape)
            assert arr[region].sum() / arr.sum() > 0.95
        centre = _centre_mm(img, arr)
        dist = {lv: np.linalg.norm(centre - c) for lv, c in discs.items()}
        assert min(dist, key=dist.get) == level and dist[level] < gap / 2, (level, task, dist)


def test_maps_of_a_dicom_study_lie_on_the_series_grid(run, study, reference):
    pred, out = run
    st = study[0]
    assert len(pred.findings()) > 0, "the test grader must report findings for this test to mean anything"
    _check_maps_in_place(pred, out, reference, st.lesions[TASK_NAMES.index("pfirrmann")], like_reference=True)
    # the same files through the project's own reader: the input scan's grid and geometry
    for (level, task), entry in pred.saved_maps.items():
        back = load_volume(out / entry["file"], isolate=False)
        assert back.shape == pred.scan.shape
        np.testing.assert_allclose(back.spacing, pred.scan.spacing, rtol=1e-5)
        np.testing.assert_allclose(back.origin, pred.scan.origin, atol=1e-3)
        np.testing.assert_allclose(back.row_direction, pred.scan.row_direction, atol=1e-5)
        np.testing.assert_allclose(back.column_direction, pred.scan.column_direction, atol=1e-5)
        raw = scan_map(pred, level, task)
        np.testing.assert_allclose(back.volume * entry["raw_max"], raw, rtol=1e-4, atol=1e-6 * raw.max())


def test_grades_json_lists_every_file_and_only_those(run):
    pred, out = run
    js = json.loads((out / "grades.json").read_text())
    files = sorted(p.name for p in (out / HOTSPOT_DIR).iterdir())
    assert files == sorted(map_filename(e["level"], e["task"]) for e in js["hotspot_maps"])
    assert {(e["level"], e["task"]) for e in js["hotspot_maps"]} == {(f["level"], f["task"])
                                                                    for f in js["findings"]}
    assert "save_maps" in js["timings_s"]
    for e in js["hotspot_maps"]:
        assert pred.files[f"map_{e['level']}_{e['task']}"] == out / e["file"]


def test_write_maps_replaces_only_its_own_stale_files(run, tmp_path):
    pred, _ = run
    stale = next((lv, t) for lv in LEVELS for t in TASK_NAMES if (lv, t) not in pred.maps)
    folder = tmp_path / HOTSPOT_DIR
    folder.mkdir()
    (folder / map_filename(*stale)).write_bytes(b"from an earlier study")
    (folder / "notes.txt").write_text("the user's")
    written = write_maps(pred, tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*(map_filename(*k) for k in pred.maps), "notes.txt"])
    assert set(written) == set(pred.maps)


def test_no_maps_without_the_flag(study, tiny, tmp_path):
    st, folder = study
    pred = predict(folder, tmp_path / "o", weights=tiny, corners=st.corners, **FAST)
    assert pred.maps and not pred.saved_maps
    assert not (tmp_path / "o" / HOTSPOT_DIR).exists()
    assert not list((tmp_path / "o").rglob("*.nii*"))
    assert json.loads((tmp_path / "o" / "grades.json").read_text())["hotspot_maps"] == []


def test_save_maps_needs_hotspots_and_an_output_folder(study, tiny, tmp_path):
    st, folder = study
    with pytest.raises(InputError, match="hotspots"):
        predict(folder, tmp_path / "o", weights=tiny, corners=st.corners, hotspots=False, save_maps=True,
                progress=False)
    with pytest.raises(InputError, match="output folder"):
        predict(folder, None, weights=tiny, corners=st.corners, save_maps=True, progress=False)
    assert not (tmp_path / "o").exists()


def test_a_3d_file_input_gets_maps_in_that_files_own_axes(study, tiny, tmp_path):
    """A ``.nii.gz`` stored in LPS index order (not the project's axes): the maps keep its grid."""
    st = study[0]
    src = tmp_path / "in" / "study.nii.gz"
    src.parent.mkdir()
    stored = sitk.DICOMOrient(_project_image(st.scan.volume, st.scan), "LPS")
    sitk.WriteImage(stored, str(src))
    reference = sitk.ReadImage(str(src))
    assert reference.GetSize() != (st.scan.shape[2], st.scan.shape[1], st.scan.shape[0])  # really permuted
    out = tmp_path / "out"
    pred = predict(src, out, weights=tiny, corners=st.corners, save_maps=True, **FAST)
    assert pred.saved_maps
    # the truth in the file's own axes, to locate the discs in mm
    discs = sitk.GetArrayFromImage(sitk.DICOMOrient(
        _project_image(st.lesions[TASK_NAMES.index("pfirrmann")], st.scan), "LPS"))
    _check_maps_in_place(pred, out, reference, discs, like_reference=False)
    for (level, task), entry in pred.saved_maps.items():
        raw = scan_map(pred, level, task)
        back = load_volume(out / entry["file"], isolate=False).volume
        np.testing.assert_allclose(back * entry["raw_max"], raw, rtol=1e-4, atol=1e-6 * raw.max())


def test_a_2d_image_gets_a_one_slice_volume_with_its_spacing(study, tiny, tmp_path):
    st = study[0]
    s = st.mid_slice
    img = st.scan.volume[s]
    png = tmp_path / "mid.png"
    Image.fromarray(np.clip(img / img.max() * 255, 0, 255).astype(np.uint8)).save(png)
    spacing = (0.9, 1.1)
    pred = predict(png, tmp_path / "o", weights=tiny, corners=st.corners[:, s:s + 1], spacing_mm=spacing,
                   save_maps=True, **FAST)
    assert pred.saved_maps and pred.pad == "replicate"
    for (level, _), entry in pred.saved_maps.items():
        m = sitk.ReadImage(str(tmp_path / "o" / entry["file"]))
        assert m.GetSize() == (img.shape[1], img.shape[0], 1)
        np.testing.assert_allclose(m.GetSpacing()[:2], (spacing[1], spacing[0]), rtol=1e-6)
        np.testing.assert_allclose(m.GetSpacing()[2], pred.scan.slice_spacing, rtol=1e-6)
        arr = sitk.GetArrayFromImage(m)
        assert np.isfinite(arr).all() and arr.min() >= 0 and abs(arr.max() - 1) < 1e-6
        region = pred.discs.geometries[pred.levels.index(level)].region_mask(pred.scan.shape)
        assert arr[region].sum() / arr.sum() > 0.95


def test_cli_save_maps(study, tiny, tmp_path, monkeypatch, capsys):
    import spinenet_lite.app as app

    st, folder = study
    real = app.predict

    def with_corners(*args, **kwargs):  # the CLI has no corners option: give the phantom's
        kwargs.update(corners=st.corners, tta=False, n_aug=2, report=False)
        return real(*args, **kwargs)

    monkeypatch.setattr(app, "predict", with_corners)
    rc = main(["predict", str(folder), "--out", str(tmp_path / "o"), "--weights", str(tiny),
               "--device", "cpu", "--save-maps", "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0, text
    js = json.loads((tmp_path / "o" / "grades.json").read_text())
    assert js["hotspot_maps"] and "hotspot volumes:" in text
    assert all((tmp_path / "o" / e["file"]).is_file() for e in js["hotspot_maps"])


def test_synth_help_documents_every_truth_key(study, tmp_path, capsys):
    """``spinenet-lite synth --help`` names every array of ``truth.npz`` with its dtype and rank."""
    import re

    from spinenet_lite.phantom.cohort import save_truth

    with pytest.raises(SystemExit):
        main(["synth", "--help"])
    text = capsys.readouterr().out
    save_truth(study[0], tmp_path / "truth.npz")
    with np.load(tmp_path / "truth.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for key, a in arrays.items():
        m = re.search(rf"^\s+{key}\s+\(([^)]*)\)\s+(\w+)", text, flags=re.M)
        assert m, f"{key} is not documented in synth --help"
        dims = [d for d in m.group(1).split(",") if d.strip()]
        assert len(dims) == a.ndim, (key, m.group(1), a.shape)
        assert m.group(2) == ("str" if a.dtype.kind == "U" else str(a.dtype)), (key, m.group(2), a.dtype)
