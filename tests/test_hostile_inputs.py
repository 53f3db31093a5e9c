"""Hostile and broken input through ``predict``: each refused with its own clear error, nothing written."""

from __future__ import annotations

import shutil
import struct
import zlib

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from spinenet_lite.app import predict
from spinenet_lite.errors import (
    CorruptFileError,
    NoDicomError,
    NotMRError,
    NotSagittalError,
    PixelDataError,
    SpineNetError,
    TooFewDiscsError,
)
from spinenet_lite.io.dicom import write_dicom_series
from spinenet_lite.io.scan import Scan
from spinenet_lite.phantom import PhantomConfig, synth_patient
from spinenet_lite.tasks import VERTEBRAE

KW = {"branch_point": "conv5", "width": 0.0625, "dropout": 0.5}


@pytest.fixture(scope="module")
def tiny(tiny_grader):
    return tiny_grader[0]


@pytest.fixture(scope="module")
def study():
    return synth_patient(3, 0, PhantomConfig.fast())


def _refused(path, tiny, out, error, match, **kw):
    with pytest.raises(error, match=match):
        predict(path, out, weights=tiny, progress=False, device="cpu", **kw)
    assert not out.exists(), "nothing is written for a refused input"


def _series(tmp_path, volume, name="dicom", **geo) -> object:
    scan = Scan(volume=volume, pixel_spacing=(1.0, 1.0), slice_spacing=4.0, **geo)
    folder = tmp_path / name
    write_dicom_series(scan, folder)
    return folder


# ---------------------------------------------------------------- what load_scan rejects (a few)
def test_missing_and_empty_and_not_dicom(tmp_path, tiny):
    _refused(tmp_path / "nope", tiny, tmp_path / "o", SpineNetError, "does not exist")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hello")
    _refused(tmp_path / "empty", tiny, tmp_path / "o", NoDicomError, "DICOM")


def test_ct_is_not_mr(tmp_path, tiny):
    folder = _series(tmp_path, np.random.default_rng(0).random((3, 16, 16)).astype(np.float32))
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.Modality = "CT"
        ds.save_as(f)
    _refused(folder, tiny, tmp_path / "o", NotMRError, "CT")


# ---------------------------------------------------------------- anatomy and orientation
def test_only_three_vertebrae_visible(tmp_path, tiny, study):
    """Crop a phantom study to L3..L5 (mid-disc to mid-disc): refused, the bodies seen are named."""
    c, s = study.corners, study.mid_slice
    top = int((np.nanmax(c[2, s, 2:, 0]) + np.nanmin(c[3, s, :2, 0])) / 2)   # mid L2-L3 disc
    bottom = int((np.nanmax(c[5, s, 2:, 0]) + np.nanmin(c[6, s, :2, 0])) / 2)  # mid L5-S1 disc
    vol = study.scan.volume[:, top:bottom]
    folder = _series(tmp_path, vol)
    cropped = np.full_like(c[:, :, :, :], np.nan)
    cropped[3:6] = c[3:6] - np.array([top, 0], np.float32)
    _refused(folder, tiny, tmp_path / "o", TooFewDiscsError,
             r"only 3 vertebral bodies are visible \(L3, L4, L5\).*T12 to the sacrum", corners=cropped)


def test_axial_series(tmp_path, tiny):
    vol = np.random.default_rng(1).random((5, 32, 32)).astype(np.float32)
    folder = _series(tmp_path, vol, row_direction=np.array([1.0, 0, 0]),
                     column_direction=np.array([0, 1.0, 0]))
    _refused(folder, tiny, tmp_path / "o", NotSagittalError, "axial")


def test_brain_mr_from_pydicom(tmp_path, tiny):
    """pydicom's MR_small (a 64 x 64 axial head slice) is refused as axial, and the file is not touched."""
    path = get_testdata_file("MR_small.dcm")
    before = open(path, "rb").read()
    _refused(path, tiny, tmp_path / "o", NotSagittalError, "axial")
    assert open(path, "rb").read() == before


def test_sagittal_head_is_not_a_spine(tmp_path, tiny):
    """A sagittal head-like blob (skull ring, brain, no vertebrae): the shipped localiser (checked
    against its registry sha256) finds no discs."""
    yy, xx = np.mgrid[0:256, 0:256]
    r = np.hypot((yy - 120) / 100, (xx - 128) / 85)
    img = np.where(r < 0.85, 0.6, 0.0) + np.where((r >= 0.85) & (r < 1.0), 0.15, 0.0)
    img = img + 0.05 * np.random.default_rng(2).random(img.shape)
    folder = _series(tmp_path, np.repeat(img[None].astype(np.float32), 9, axis=0))
    _refused(folder, tiny, tmp_path / "o", TooFewDiscsError, "vertebral bodies")


# ---------------------------------------------------------------- pixels and files
def test_all_zero_dicom_and_png(tmp_path, tiny):
    scan = Scan(volume=np.ones((3, 16, 16), np.float32), pixel_spacing=(1.0, 1.0), slice_spacing=4.0)
    folder = tmp_path / "zero"
    write_dicom_series(scan, folder)
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.PixelData = np.zeros((16, 16), "<u2").tobytes()
        ds.RescaleIntercept, ds.RescaleSlope = "0", "1"
        ds.save_as(f)
    _refused(folder, tiny, tmp_path / "o", PixelDataError, "blank")
    png = tmp_path / "zero.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(png)
    _refused(png, tiny, tmp_path / "o", PixelDataError, "blank", spacing_mm=1.0)


def test_huge_dicom_refused_before_decoding(tmp_path, tiny):
    folder = _series(tmp_path, np.random.default_rng(3).random((2, 16, 16)).astype(np.float32))
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.Rows, ds.Columns = 60000, 60000  # 2 x 3.6e9 voxels claimed, 512 bytes present
        ds.save_as(f)
    _refused(folder, tiny, tmp_path / "o", PixelDataError, "limit|voxels|too large")


def _png_header_only(path, width: int, height: int) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_huge_png_refused_before_decoding(tmp_path, tiny):
    png = tmp_path / "huge.png"
    _png_header_only(png, 40000, 40000)
    _refused(png, tiny, tmp_path / "o", PixelDataError, "over the limit|too large", spacing_mm=1.0)


def test_truncated_files(tmp_path, tiny):
    folder = _series(tmp_path, np.random.default_rng(4).random((3, 32, 32)).astype(np.float32))
    f = sorted(folder.iterdir())[1]
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    _refused(folder, tiny, tmp_path / "o", CorruptFileError, f.name)
    png = tmp_path / "t.png"
    Image.fromarray((np.random.default_rng(5).random((64, 64)) * 255).astype(np.uint8)).save(png)
    png.write_bytes(png.read_bytes()[:200])
    _refused(png, tiny, tmp_path / "o", CorruptFileError, "damaged or truncated", spacing_mm=1.0)
    truncated = tmp_path / "MR_truncated.dcm"
    shutil.copy(get_testdata_file("MR_truncated.dcm"), truncated)
    with pytest.raises(SpineNetError):
        predict(truncated, tmp_path / "o", weights=tiny, progress=False)


def test_vertebra_names_are_the_tasks_module():
    assert VERTEBRAE[3:6] == ("L3", "L4", "L5")
