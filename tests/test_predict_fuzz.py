"""Property test: randomised, corrupted DICOM headers, pixel arrays and corners thrown at ``load_scan``
and ``predict``; only the project's own errors (``SpineNetError``) may come out.

Two properties, 500 examples in all (derandomised, so every run tries the same cases):

* ``load_scan`` (400 examples): a 3-slice 12 x 10 series with 1-4 corruptions (deleted,
  garbled or mistyped tags, pixel arrays of the wrong size / dtype / with NaN or constant
  values, truncated files, flipped bytes, stray files);
* ``predict`` (100 examples): a 3-slice crop of a phantom study with 0-2 header / pixel
  corruptions and a possibly corrupted corner array (NaN holes, shifts, swaps, scaling,
  points far outside, infinities, wrong dtype), graded by a tiny network without TTA or
  hotspots so an example costs a fraction of a second.
"""

from __future__ import annotations

import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from spinenet_lite.app import predict
from spinenet_lite.engine.checkpoint import save_checkpoint
from spinenet_lite.errors import SpineNetError
from spinenet_lite.io.dicom import load_scan, write_dicom_series
from spinenet_lite.io.scan import Scan
from spinenet_lite.nn.model import SpineNet
from spinenet_lite.phantom import PhantomConfig, synth_patient

KW = {"branch_point": "conv5", "width": 0.0625, "dropout": 0.5}
TAGS = ("PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient", "Rows", "Columns", "Modality",
        "SeriesInstanceUID", "BitsAllocated", "BitsStored", "HighBit", "PixelData", "SamplesPerPixel",
        "PhotometricInterpretation", "PixelRepresentation", "RescaleSlope", "RescaleIntercept",
        "SliceThickness", "SpacingBetweenSlices", "NumberOfFrames", "SOPClassUID")
SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

numbers = st.one_of(st.integers(-(2**31), 2**31), st.floats(allow_nan=True, allow_infinity=True, width=32),
                    st.sampled_from([0, 1, -1, 65535, 3, 8, 16, 32, 1e-9, 1e9]))
values = st.one_of(numbers, st.text(max_size=12), st.lists(numbers, max_size=7), st.binary(max_size=16),
                   st.sampled_from(["MR", "CT", "", "1\\0\\0\\0\\1\\0", "0\\1\\0\\0\\0\\-1", "nan\\inf"]))
pixel_kinds = st.sampled_from(["random", "zero", "nan", "max", "short", "long", "float"])
corruption = st.one_of(
    st.tuples(st.just("delete"), st.sampled_from(TAGS)),
    st.tuples(st.just("set"), st.sampled_from(TAGS), values),
    st.tuples(st.just("pixels"), pixel_kinds, st.integers(0, 2**16)),
    st.tuples(st.just("truncate"), st.floats(0.0, 1.0)),
    st.tuples(st.just("flip"),
              st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 255)), min_size=1, max_size=6)),
    st.tuples(st.just("stray"), st.binary(max_size=300)),
)


def _corrupt_pixels(ds: pydicom.Dataset, kind: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(ds.Rows) * int(ds.Columns)
    if kind == "random":
        arr = rng.integers(0, 65536, n).astype("<u2")
    elif kind == "zero":
        arr = np.zeros(n, "<u2")
    elif kind == "max":
        arr = np.full(n, 65535, "<u2")
    elif kind == "short":
        arr = rng.integers(0, 65536, max(n // 3, 1)).astype("<u2")
    elif kind == "long":
        arr = rng.integers(0, 65536, 2 * n + 1).astype("<u2")
    elif kind == "float":
        arr = rng.random(n).astype("<f4")
    else:  # nan as float bytes in a 16-bit array
        arr = np.full(n // 2 + 1, np.nan, "<f4")
    ds.PixelData = arr.tobytes()


def _apply(files: list[bytes], folder: Path, ops) -> None:
    data = list(files)
    for op in ops:
        k = zlib.crc32(repr(op).encode()) % len(data) if data else 0
        kind = op[0]
        if kind == "stray":
            (folder / f"stray{len(list(folder.iterdir()))}.dcm").write_bytes(b"\0" * 128 + b"DICM" + op[1])
            continue
        if kind == "truncate":
            data[k] = data[k][: int(len(data[k]) * op[1])]
            continue
        if kind == "flip":
            b = bytearray(data[k])
            for pos, x in op[1]:
                if b:
                    b[min(int(pos * len(b)), len(b) - 1)] ^= x
            data[k] = bytes(b)
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data[k]), force=True)
                if kind == "delete":
                    if op[1] in ds:
                        del ds[op[1]]
                elif kind == "set":
                    setattr(ds, op[1], op[2])
                else:
                    _corrupt_pixels(ds, op[1], op[2])
                buf = pydicom.filebase.DicomBytesIO()
                ds.save_as(buf)
                data[k] = buf.getvalue()
        except Exception:  # a value pydicom itself will not write: keep the file as it was
            continue
    for i, b in enumerate(data):
        (folder / f"IM{i:04d}.dcm").write_bytes(b)


def _series_bytes(scan: Scan, tmp: Path) -> list[bytes]:
    return [p.read_bytes() for p in write_dicom_series(scan, tmp)]


@pytest.fixture(scope="module")
def small_series(tmp_path_factory) -> list[bytes]:
    rng = np.random.default_rng(7)
    scan = Scan(volume=(rng.random((3, 12, 10)) * 800).astype(np.float32), pixel_spacing=(0.9, 0.8),
                slice_spacing=4.0, slice_thickness=4.0)
    return _series_bytes(scan, tmp_path_factory.mktemp("small") / "s")


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    study = synth_patient(1, 0, PhantomConfig.fast())
    s = study.mid_slice
    keep = slice(s - 1, s + 2)
    sub = Scan(volume=study.scan.volume[keep], pixel_spacing=study.scan.pixel_spacing,
               slice_spacing=study.scan.slice_spacing, slice_thickness=study.scan.slice_thickness)
    files = _series_bytes(sub, tmp_path_factory.mktemp("ph") / "s")
    torch.manual_seed(0)
    weights = tmp_path_factory.mktemp("w") / "tiny.pt"
    save_checkpoint({"model": SpineNet(**KW).state_dict(), "model_kwargs": KW}, weights)
    return files, study.corners[:, keep].copy(), weights


@settings(max_examples=400, **SETTINGS)
@given(ops=st.lists(corruption, min_size=1, max_size=4))
def test_load_scan_only_raises_spinenet_errors(small_series, ops):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _apply(small_series, folder, ops)
        try:
            scan = load_scan(folder)
        except SpineNetError as exc:
            event(f"load_scan refused: {type(exc).__name__}")
            return
        event("load_scan loaded")
        assert scan.volume.ndim == 3 and np.isfinite(scan.volume).all()


corner_ops = st.one_of(
    st.just(("none",)),
    st.tuples(st.just("nan"), st.integers(0, 6), st.integers(0, 2)),
    st.tuples(st.just("shift"), st.floats(-400, 400), st.floats(-400, 400)),
    st.tuples(st.just("scale"), st.floats(-3, 3)),
    st.tuples(st.just("swap"), st.integers(0, 6), st.integers(0, 6)),
    st.tuples(st.just("far"), st.integers(0, 6), st.floats(-1e6, 1e6)),
    st.tuples(st.just("inf"), st.integers(0, 6)),
    st.tuples(st.just("collapse"), st.integers(0, 6)),
    st.tuples(st.just("int"),),
)


def _corners(c: np.ndarray, op) -> np.ndarray:
    c = c.copy()
    kind = op[0]
    if kind == "nan":
        c[op[1], op[2]] = np.nan
    elif kind == "shift":
        c += np.array([op[1], op[2]], np.float32)
    elif kind == "scale":
        c *= op[1]
    elif kind == "swap":
        c[[op[1], op[2]]] = c[[op[2], op[1]]]
    elif kind == "far":
        c[op[1], :, 0] = op[2]
    elif kind == "inf":
        c[op[1], 0, 0, 0] = np.inf
    elif kind == "collapse":
        c[op[1]] = np.nanmean(c[op[1]], axis=1, keepdims=True)
    elif kind == "int":
        return np.nan_to_num(c).astype(np.int64)
    return c


@settings(max_examples=100, **SETTINGS)
@given(ops=st.lists(corruption, max_size=2), corner_op=corner_ops)
def test_predict_only_raises_spinenet_errors(phantom, ops, corner_op):
    files, corners, weights = phantom
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        _apply(files, folder, ops)
        try:
            pred = predict(folder, None, weights=weights, corners=_corners(corners, corner_op), device="cpu",
                           hotspots=False, tta=False, progress=False)
        except SpineNetError as exc:
            event(f"predict refused: {type(exc).__name__}")
            return
        event("predict graded")
        for p in pred.probs.values():
            assert np.isfinite(p).all() and np.allclose(p.sum(1), 1, atol=1e-4)
        assert 1 <= len(pred.levels) <= 6
