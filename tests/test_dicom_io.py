"""DICOM writing and reading: round trip, independent readers, and every rejected input."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file

from spinenet_lite.errors import (
    CorruptFileError,
    GeometryError,
    InputError,
    MultipleSeriesError,
    NoDicomError,
    NotMRError,
    NotSagittalError,
    PixelDataError,
    SpineNetError,
)
from spinenet_lite.io.dicom import DEFAULT_MAX_VOXELS, load_scan, write_dicom_series
from spinenet_lite.io.scan import Scan


def make_scan(n_slices: int = 5, rows: int = 24, cols: int = 20, seed: int = 0, **kw) -> Scan:
    rng = np.random.default_rng(seed)
    volume = rng.normal(300.0, 80.0, (n_slices, rows, cols)).astype(np.float32)
    row_dir = np.array([0.05, 1.0, 0.1])
    row_dir /= np.linalg.norm(row_dir)
    col_dir = np.array([0.0, 0.1, -1.0])
    col_dir -= (col_dir @ row_dir) * row_dir
    col_dir /= np.linalg.norm(col_dir)
    defaults = dict(
        pixel_spacing=(0.7, 0.8), slice_spacing=4.0, slice_thickness=3.5,
        origin=np.array([-12.5, -40.0, 95.0]), row_direction=row_dir, column_direction=col_dir,
        patient_id="P42", series_description="T2 SAG test",
    )
    defaults.update(kw)
    return Scan(volume=volume, **defaults)


def hashes(folder: Path) -> dict[str, str]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def edit(path: Path, **tags) -> None:
    """Rewrite one file with tags changed (None deletes)."""
    ds = pydicom.dcmread(path)
    for name, value in tags.items():
        if value is None:
            if name in ds:
                delattr(ds, name)
        else:
            setattr(ds, name, value)
    ds.save_as(path)


@pytest.fixture
def series(tmp_path) -> tuple[Scan, Path, list[Path]]:
    scan = make_scan()
    folder = tmp_path / "series"
    return scan, folder, write_dicom_series(scan, folder)


# ---------------------------------------------------------------- round trip
def test_round_trip_volume_and_geometry(series):
    scan, folder, paths = series
    assert [p.name for p in paths] == [f"IM{i:04d}.dcm" for i in range(5)]
    loaded = load_scan(folder)
    step = (scan.volume.max() - scan.volume.min()) / 65000
    assert loaded.volume.dtype == np.float32 and loaded.shape == scan.shape
    assert np.abs(loaded.volume - scan.volume).max() <= 0.51 * step + 1e-4
    np.testing.assert_allclose(loaded.pixel_spacing, scan.pixel_spacing)
    assert loaded.slice_spacing == pytest.approx(scan.slice_spacing, abs=1e-6)
    assert loaded.slice_thickness == pytest.approx(3.5)
    np.testing.assert_allclose(loaded.origin, scan.origin, atol=1e-6)
    np.testing.assert_allclose(loaded.row_direction, scan.row_direction, atol=1e-9)
    np.testing.assert_allclose(loaded.column_direction, scan.column_direction, atol=1e-9)
    np.testing.assert_allclose(loaded.slice_positions(), scan.slice_positions(), atol=1e-5)
    assert loaded.patient_id == "P42" and loaded.series_description == "T2 SAG test"
    assert loaded.modality == "MR" and loaded.series_uid and loaded.study_uid
    assert loaded.source == str(folder)
    # not a phantom: its Manufacturer is not the synthetic cohort's, so predict grades it as real
    assert not loaded.is_phantom and loaded.manufacturer != "spinenet_lite"


def test_manufacturer_round_trip_marks_phantom_studies(tmp_path):
    import dataclasses

    scan = dataclasses.replace(make_scan(), manufacturer="ACME MR")
    write_dicom_series(scan, tmp_path / "real")
    assert load_scan(tmp_path / "real").manufacturer == "ACME MR"
    write_dicom_series(dataclasses.replace(scan, source="phantom"), tmp_path / "phantom")
    back = load_scan(tmp_path / "phantom")
    assert back.manufacturer == "spinenet_lite" and back.is_phantom


def test_plain_pydicom_reads_every_file(series):
    scan, _, paths = series
    uids = set()
    for i, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4" and ds.Modality == "MR"
        assert ds.pixel_array.dtype == np.uint16 and ds.pixel_array.shape == scan.shape[1:]
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], scan.slice_positions()[i],
                                   atol=1e-6)
        assert [float(v) for v in ds.PixelSpacing] == [0.7, 0.8]
        assert float(ds.SpacingBetweenSlices) == 4.0 and float(ds.SliceThickness) == 3.5
        uids.add(ds.SOPInstanceUID)
    assert len(uids) == len(paths)
    assert len({pydicom.dcmread(p).SeriesInstanceUID for p in paths}) == 1


def test_simpleitk_reads_series_with_same_geometry(series):
    scan, folder, _ = series
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    assert image.GetSize() == (scan.shape[2], scan.shape[1], scan.shape[0])
    np.testing.assert_allclose(image.GetSpacing(), (0.8, 0.7, 4.0), atol=1e-5)
    np.testing.assert_allclose(image.GetOrigin(), scan.origin, atol=1e-5)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(direction[:, 0], scan.row_direction, atol=1e-6)
    np.testing.assert_allclose(direction[:, 1], scan.column_direction, atol=1e-6)
    np.testing.assert_allclose(direction[:, 2], scan.normal, atol=1e-6)
    array = sitk.GetArrayFromImage(image)
    assert np.abs(array - scan.volume).max() < 0.01


def test_fresh_uids_and_kept_study(tmp_path):
    scan = make_scan(study_uid="1.2.3.4")
    a = load_scan(write_dicom_series(scan, tmp_path / "a")[0].parent)
    b = load_scan(write_dicom_series(scan, tmp_path / "b")[0].parent)
    assert a.series_uid != b.series_uid and a.study_uid == b.study_uid == "1.2.3.4"


def test_order_comes_from_positions_not_names(tmp_path, series):
    scan, folder, paths = series
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    for i, p in enumerate(paths):  # reverse names and InstanceNumber
        target = shuffled / f"z{len(paths) - i}.dcm"
        shutil.copy(p, target)
        edit(target, InstanceNumber=len(paths) - i)
    np.testing.assert_array_equal(load_scan(shuffled).volume, load_scan(folder).volume)


def test_single_file_list_and_recursive_folder(tmp_path, series):
    scan, folder, paths = series
    one = load_scan(paths[2])
    assert one.shape == (1, *scan.shape[1:])
    np.testing.assert_allclose(one.origin, scan.slice_positions()[2], atol=1e-6)
    two = load_scan(paths[1:3])
    assert two.shape[0] == 2 and two.slice_spacing == pytest.approx(4.0)
    nested = tmp_path / "study" / "deep" / "er"
    shutil.copytree(folder, nested)
    (tmp_path / "study" / "README.txt").write_text("not dicom")
    assert load_scan(tmp_path / "study").shape == scan.shape


def test_overwrite_guard(series):
    scan, folder, _ = series
    with pytest.raises(InputError, match="not empty"):
        write_dicom_series(scan, folder)
    assert len(write_dicom_series(scan, folder, overwrite=True)) == scan.n_slices


def test_inputs_never_modified(tmp_path, series):
    _, folder, paths = series
    edit(paths[0], Modality="CT")
    before = hashes(folder)
    with pytest.raises(NotMRError):
        load_scan(folder)
    load_scan(paths[1:])
    assert hashes(folder) == before


def test_pydicom_test_files():
    with pytest.raises(NotSagittalError, match="axial"):
        load_scan(get_testdata_file("MR_small.dcm"))
    with pytest.raises(NotMRError, match="Modality CT"):
        load_scan(get_testdata_file("CT_small.dcm"))


def test_single_image_without_position_loads(series):
    _, _, paths = series
    edit(paths[0], ImagePositionPatient=None, ImageOrientationPatient=None)
    scan = load_scan(paths[0])
    assert scan.shape[0] == 1 and scan.slice_spacing == 4.0
    np.testing.assert_array_equal(scan.row_direction, [0, 1, 0])


# ---------------------------------------------------------------- failure cases
def test_missing_path(tmp_path):
    with pytest.raises(NoDicomError, match="does not exist"):
        load_scan(tmp_path / "nowhere")


def test_empty_folder(tmp_path):
    with pytest.raises(NoDicomError, match="holds no files"):
        load_scan(tmp_path)


def test_folder_without_dicom(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    with pytest.raises(NoDicomError, match="no DICOM image"):
        load_scan(tmp_path)


def test_non_dicom_file_named_explicitly(tmp_path):
    f = tmp_path / "x.dcm"
    f.write_bytes(b"this is not dicom at all" * 20)
    with pytest.raises(NoDicomError, match="not a DICOM file"):
        load_scan(f)


def test_several_series_listed(tmp_path):
    a = write_dicom_series(make_scan(series_description="T2 SAG"), tmp_path / "a")
    write_dicom_series(make_scan(n_slices=3, series_description="T1 SAG"), tmp_path / "b")
    with pytest.raises(MultipleSeriesError) as info:
        load_scan(tmp_path)
    msg = str(info.value)
    assert "2 series" in msg and "T1 SAG" in msg and "3 slices" in msg and "5 slices" in msg
    assert "series_uid=" in msg and "--series" in msg
    uid = pydicom.dcmread(a[0]).SeriesInstanceUID
    assert uid in msg
    assert load_scan(tmp_path, series_uid=uid).n_slices == 5
    with pytest.raises(NoDicomError, match="no series with SeriesInstanceUID 9.9"):
        load_scan(tmp_path, series_uid="9.9")


def test_not_mr(series):
    _, folder, paths = series
    for p in paths:
        edit(p, Modality="CT")
    with pytest.raises(NotMRError, match="not MR"):
        load_scan(folder)


@pytest.mark.parametrize(
    "row, col, name",
    [((1, 0, 0), (0, 1, 0), "axial"), ((1, 0, 0), (0, 0, -1), "coronal"),
     ((0.7071, 0.7071, 0), (0, 0, -1), "oblique")],
)
def test_not_sagittal(tmp_path, row, col, name):
    scan = make_scan(row_direction=np.array(row, float) / np.linalg.norm(row), column_direction=col)
    folder = tmp_path / name
    write_dicom_series(scan, folder)
    with pytest.raises(NotSagittalError, match=name):
        load_scan(folder)


def test_missing_pixel_spacing(series):
    _, folder, paths = series
    edit(paths[3], PixelSpacing=None)
    with pytest.raises(GeometryError, match="PixelSpacing is missing.*IM0003"):
        load_scan(folder)


def test_inconsistent_pixel_spacing(series):
    _, folder, paths = series
    edit(paths[2], PixelSpacing=[0.5, 0.5])
    with pytest.raises(GeometryError, match="PixelSpacing is inconsistent"):
        load_scan(folder)


def test_non_positive_pixel_spacing(series):
    _, folder, paths = series
    for p in paths:
        edit(p, PixelSpacing=[0.0, 0.7])
    with pytest.raises(GeometryError, match="not positive"):
        load_scan(folder)


def test_missing_position_in_series(series):
    _, folder, paths = series
    edit(paths[1], ImagePositionPatient=None)
    with pytest.raises(GeometryError, match="slice order is unknown"):
        load_scan(folder)


def test_damaged_orientation(series):
    _, folder, paths = series
    for p in paths:
        edit(p, ImageOrientationPatient=[1, 0, 0, 1, 0, 0])
    with pytest.raises(GeometryError, match="not two orthogonal"):
        load_scan(folder)


def test_mixed_orientations(series):
    _, folder, paths = series
    edit(paths[4], ImageOrientationPatient=[0, 1, 0, 0, 0, -1])
    with pytest.raises(GeometryError, match="different orientations"):
        load_scan(folder)


def test_different_sizes(tmp_path, series):
    _, folder, paths = series
    other = write_dicom_series(make_scan(n_slices=1, rows=30), tmp_path / "other")[0]
    ds = pydicom.dcmread(other)
    ref = pydicom.dcmread(paths[0])
    ds.SeriesInstanceUID, ds.ImagePositionPatient = ref.SeriesInstanceUID, [-200, 0, 0]
    ds.ImageOrientationPatient = ref.ImageOrientationPatient
    ds.save_as(folder / "odd.dcm")
    with pytest.raises(PixelDataError, match="different sizes"):
        load_scan(folder)


def test_duplicate_positions(series):
    _, folder, paths = series
    shutil.copy(paths[2], folder / "copy.dcm")
    with pytest.raises(GeometryError, match="duplicate slice positions"):
        load_scan(folder)


def test_missing_slice(series):
    _, folder, paths = series
    paths[2].unlink()
    with pytest.raises(GeometryError, match="uneven slice spacing"):
        load_scan(folder)


def test_non_finite_float_pixels(series):
    _, folder, paths = series
    ds = pydicom.dcmread(paths[0])
    values = np.ones((ds.Rows, ds.Columns), dtype="<f4")
    values[3, 4] = np.nan
    del ds.PixelData
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
    for name in ("BitsStored", "HighBit", "PixelRepresentation", "RescaleSlope", "RescaleIntercept"):
        delattr(ds, name)
    ds.FloatPixelData = values.tobytes()
    ds.save_as(paths[0])
    with pytest.raises(PixelDataError, match="NaN or infinite"):
        load_scan(folder)


def test_truncated_pixel_data(series):
    _, folder, paths = series
    data = paths[3].read_bytes()
    paths[3].write_bytes(data[: len(data) - 300])
    with pytest.raises(CorruptFileError, match="IM0003.dcm.*truncated"):
        load_scan(folder)


def test_truncated_header(series):
    _, folder, paths = series
    paths[1].write_bytes(paths[1].read_bytes()[:200])
    with pytest.raises(CorruptFileError, match="IM0001.dcm"):
        load_scan(folder)


def test_all_zero(tmp_path):
    scan = make_scan()
    scan.volume[:] = 0
    write_dicom_series(scan, tmp_path)
    with pytest.raises(PixelDataError, match="same value"):
        load_scan(tmp_path)


def test_huge_refused_before_decoding(series):
    _, folder, paths = series
    with pytest.raises(PixelDataError, match="too large"):
        load_scan(folder, max_voxels=100)
    # a header claiming 60000 x 60000 pixels with tiny pixel data: refused from the header alone
    for p in paths:
        edit(p, Rows=60000, Columns=60000)
    with pytest.raises(PixelDataError, match=f"over the limit of {DEFAULT_MAX_VOXELS:,}"):
        load_scan(folder)


def test_colour_image(series):
    _, folder, paths = series
    edit(paths[0], SamplesPerPixel=3, PhotometricInterpretation="RGB")
    with pytest.raises(PixelDataError, match="colour"):
        load_scan(folder)


def test_garbled_spacing_text(series):
    _, _, paths = series
    raw = paths[0].read_bytes()
    ds = pydicom.dcmread(paths[0])
    old = ds["PixelSpacing"].value
    text = "\\".join(str(v) for v in old).encode()
    assert text in raw
    paths[0].write_bytes(raw.replace(text, b"ab\\cd"[: len(text)].ljust(len(text), b" ")))
    with pytest.raises(GeometryError, match="PixelSpacing"):
        load_scan(paths[0])


def test_errors_are_spinenet_errors():
    for cls in (NoDicomError, CorruptFileError, MultipleSeriesError, NotMRError, NotSagittalError,
                GeometryError, PixelDataError):
        assert issubclass(cls, SpineNetError)


def test_tiny_and_negative_ranges_round_trip(tmp_path):
    for i, (lo, hi) in enumerate([(0.0, 1e-6), (-5000.0, -4990.0), (-1e6, 1e6)]):
        scan = make_scan(n_slices=2)
        v = scan.volume
        scan.volume = ((v - v.min()) / (v.max() - v.min()) * (hi - lo) + lo).astype(np.float32)
        loaded = load_scan(write_dicom_series(scan, tmp_path / str(i))[0].parent)
        assert np.abs(loaded.volume - scan.volume).max() <= (hi - lo) / 65000 + 1e-6 * max(abs(lo), abs(hi))


def test_write_refuses_a_file_as_folder(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        write_dicom_series(make_scan(), f)
