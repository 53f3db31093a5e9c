"""Property test: corrupted DICOM series make ``load_scan`` succeed or raise a SpineNetError, never more.

Each example starts from a small valid sagittal series (written once), copies it to a fresh
folder and applies 1-4 random corruptions: deleted or garbled header tags (geometry, sizes,
pixel format, ids), values of the wrong type, pixel arrays of the wrong size / dtype / with
NaN, truncated files, flipped bytes and files of random bytes.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydicom import config as dicom_config
from pydicom.dataelem import DataElement

from spinenet_lite.errors import SpineNetError
from spinenet_lite.io.dicom import load_scan, write_dicom_series
from spinenet_lite.io.scan import Scan

TAGS = (
    "PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient", "Rows", "Columns",
    "Modality", "SeriesInstanceUID", "BitsAllocated", "BitsStored", "HighBit", "PixelData",
    "SamplesPerPixel", "PhotometricInterpretation", "PixelRepresentation", "RescaleSlope",
    "RescaleIntercept", "SliceThickness", "SpacingBetweenSlices", "NumberOfFrames", "SOPClassUID",
    "PatientID", "SeriesDescription", "StudyInstanceUID",
)

numbers = st.one_of(
    st.integers(-(2**31), 2**31),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([0, 1, -1, 65535, 60000, 3, 8, 16, 32]),
)
values = st.one_of(
    numbers,
    st.text(max_size=20),
    st.lists(numbers, min_size=0, max_size=7),
    st.binary(max_size=24),
    st.sampled_from(["MR", "CT", "", "abc\\def", "1\\0\\0\\0\\1\\0", "0\\1\\0\\0\\0\\-1", "nan\\inf"]),
)


@st.composite
def pixel_arrays(draw) -> np.ndarray:
    rows = draw(st.integers(0, 9))
    cols = draw(st.integers(0, 9))
    dtype = draw(st.sampled_from(["<u2", "<i2", "<f4", "u1", "<f8"]))
    fill = draw(st.sampled_from(["random", "zero", "nan", "inf"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    arr = (rng.random((rows, cols)) * 1000).astype(dtype)
    if fill == "zero":
        arr[:] = 0
    elif fill in ("nan", "inf") and arr.dtype.kind == "f" and arr.size:
        arr.flat[0] = np.nan if fill == "nan" else np.inf
    return arr


corruption = st.one_of(
    st.tuples(st.just("delete"), st.sampled_from(TAGS)),
    st.tuples(st.just("set"), st.sampled_from(TAGS), values),
    st.tuples(st.just("raw"), st.sampled_from(TAGS), st.binary(max_size=24)),
    st.tuples(st.just("pixels"), pixel_arrays()),
    st.tuples(st.just("truncate"), st.floats(0.0, 1.0)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=8)),
    st.tuples(st.just("random_bytes"), st.binary(max_size=400), st.booleans()),
    st.tuples(st.just("drop"),),
)


@pytest.fixture(scope="module")
def base_files(tmp_path_factory) -> list[bytes]:
    rng = np.random.default_rng(1)
    scan = Scan(volume=rng.random((3, 8, 7)).astype(np.float32) * 500, pixel_spacing=(0.8, 0.9),
                slice_spacing=4.0, slice_thickness=4.0)
    paths = write_dicom_series(scan, tmp_path_factory.mktemp("fuzz_base"))
    return [p.read_bytes() for p in paths]


def _apply(path: Path, op: tuple) -> None:
    kind = op[0]
    if kind == "drop":
        path.unlink()
        return
    data = path.read_bytes()
    if kind == "truncate":
        path.write_bytes(data[: int(op[1] * len(data))])
        return
    if kind == "flip":
        buf = bytearray(data)
        for where, byte in op[1]:
            if buf:
                buf[min(int(where * len(buf)), len(buf) - 1)] = byte
        path.write_bytes(bytes(buf))
        return
    if kind == "random_bytes":
        path.write_bytes((bytes(128) + b"DICM" if op[2] else b"") + op[1])
        return
    try:
        ds = pydicom.dcmread(path, force=True)
        if kind == "delete":
            if op[1] in ds:
                delattr(ds, op[1])
        elif kind == "set":
            setattr(ds, op[1], op[2])
        elif kind == "raw":
            tag = pydicom.datadict.tag_for_keyword(op[1])
            vr = pydicom.datadict.dictionary_VR(tag)
            ds[tag] = DataElement(tag, "UN" if vr not in ("OB", "OW", "UN") else vr, op[2])
        elif kind == "pixels":
            arr = op[1]
            for name in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
                if name in ds:
                    delattr(ds, name)
            if arr.dtype.kind == "f":
                if arr.dtype.itemsize == 4:
                    ds.FloatPixelData = arr.tobytes()
                else:
                    ds.DoubleFloatPixelData = arr.tobytes()
                ds.BitsAllocated = arr.dtype.itemsize * 8
            else:
                ds.PixelData = arr.tobytes()
                ds.BitsAllocated = ds.BitsStored = arr.dtype.itemsize * 8
                ds.HighBit = ds.BitsStored - 1
                ds.PixelRepresentation = int(arr.dtype.kind == "i")
        ds.save_as(path)
    except Exception:
        # the corruption could not even be written (pydicom refuses the value): fall back to
        # garbling the bytes around the tag's keyword position instead
        path.write_bytes(data[: len(data) // 2] + bytes(7) + data[len(data) // 2 + 7:])


@settings(max_examples=500, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(st.tuples(st.integers(0, 2), corruption), min_size=1, max_size=4),
    as_list=st.booleans(),
)
def test_corrupted_series_only_raise_spinenet_errors(base_files, ops, as_list):
    saved = dicom_config.settings.writing_validation_mode
    dicom_config.settings.writing_validation_mode = dicom_config.IGNORE
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            paths = []
            for i, data in enumerate(base_files):
                p = folder / f"IM{i:04d}.dcm"
                p.write_bytes(data)
                paths.append(p)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pydicom complains about the values we write
                for index, op in ops:
                    if paths[index].exists():
                        _apply(paths[index], op)
            target = [p for p in paths if p.exists()] if as_list else folder
            try:
                scan = load_scan(target)
            except SpineNetError as exc:
                event(type(exc).__name__)
                return
            event("loaded")
            assert scan.volume.dtype == np.float32 and np.isfinite(scan.volume).all()
    finally:
        dicom_config.settings.writing_validation_mode = saved
