"""3D image files (.mha, .nii.gz ...) as scans: round trip, orientation, and every refusal."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import SimpleITK as sitk

from spinenet_lite.errors import CorruptFileError, InputError, NotSagittalError, PixelDataError
from spinenet_lite.io.scan import Scan
from spinenet_lite.io.volume import is_volume_file, load_volume, write_volume
from spinenet_lite.phantom import PhantomConfig, synth_patient


@pytest.fixture(scope="module")
def study():
    return synth_patient(1, 0, PhantomConfig.fast())


def _scan(shape=(5, 24, 20), spacing=(0.7, 0.6), slice_spacing=4.0) -> Scan:
    vol = np.random.default_rng(0).random(shape).astype(np.float32) * 900
    return Scan(volume=vol, pixel_spacing=spacing, slice_spacing=slice_spacing)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("suffix", [".mha", ".nii.gz", ".nrrd"])
def test_round_trip_in_project_axes(tmp_path, suffix):
    scan = _scan()
    f = write_volume(scan, tmp_path / f"s{suffix}")
    before = _sha(f)
    back = load_volume(f, patient_id="p1")
    assert _sha(f) == before  # only read
    np.testing.assert_allclose(back.volume, scan.volume, rtol=1e-6)
    assert back.pixel_spacing == pytest.approx(scan.pixel_spacing)
    assert back.slice_spacing == pytest.approx(scan.slice_spacing)
    np.testing.assert_allclose(back.row_direction, scan.row_direction, atol=1e-9)
    np.testing.assert_allclose(back.column_direction, scan.column_direction, atol=1e-9)
    np.testing.assert_allclose(back.origin, scan.origin, atol=1e-6)
    assert back.normal[0] == pytest.approx(-1.0)  # slices run towards the right, along the normal
    assert back.patient_id == "p1" and back.modality == "MR" and not back.is_phantom
    assert back.source == str(f) and is_volume_file(f)


def test_stored_in_another_axis_order_reads_the_same(tmp_path):
    """An axial-major storage of a sagittal acquisition (x = left, z = superior) is reoriented."""
    scan = _scan()
    project = load_volume(write_volume(scan, tmp_path / "a.mha"))
    arr = np.transpose(project.volume[::-1, ::-1, :], (1, 2, 0))  # (z=S, y=P, x=L)
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    img.SetSpacing((scan.slice_spacing, scan.pixel_spacing[1], scan.pixel_spacing[0]))
    img.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, 1))
    sitk.WriteImage(img, str(tmp_path / "b.mha"))
    other = load_volume(tmp_path / "b.mha")
    np.testing.assert_array_equal(other.volume, project.volume)
    assert other.pixel_spacing == pytest.approx(project.pixel_spacing)


def test_axial_and_coronal_acquisitions_refused(tmp_path):
    vol = np.random.default_rng(1).random((6, 30, 30)).astype(np.float32)
    img = sitk.GetImageFromArray(vol)  # z = slices
    for name, direction, kind in [
        ("axial.mha", (1, 0, 0, 0, 1, 0, 0, 0, 1), "axial"),      # z along superior
        ("coronal.mha", (1, 0, 0, 0, 0, 1, 0, 1, 0), "coronal"),  # z along posterior
    ]:
        img.SetSpacing((0.7, 0.7, 5.0))
        img.SetDirection(direction)
        sitk.WriteImage(img, str(tmp_path / name))
        with pytest.raises(NotSagittalError, match=kind):
            load_volume(tmp_path / name)
    # isotropic 3D volumes pass whatever their storage
    img.SetSpacing((1.0, 1.0, 1.0))
    sitk.WriteImage(img, str(tmp_path / "iso.mha"))
    assert load_volume(tmp_path / "iso.mha").volume.size == vol.size


def test_refusals_before_and_after_reading_pixels(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_volume(tmp_path / "missing.mha")
    bad = tmp_path / "bad.mha"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(CorruptFileError, match="damaged"):
        load_volume(bad)
    # truncated pixel data: the header reads, the pixels do not
    good = write_volume(_scan(), tmp_path / "good.mha")
    cut = tmp_path / "cut.mha"
    cut.write_bytes(good.read_bytes()[:-500])
    with pytest.raises(CorruptFileError):
        load_volume(cut)
    # a huge volume is refused from its header: the data file it names does not even exist
    (tmp_path / "huge.mhd").write_text("ObjectType = Image\nNDims = 3\nDimSize = 4000 4000 400\n"
                                       "ElementType = MET_SHORT\nElementSpacing = 0.5 0.5 4\n"
                                       "TransformMatrix = 0 0 1 1 0 0 0 -1 0\nElementDataFile = huge.raw\n")
    with pytest.raises(PixelDataError, match="over the limit"):
        load_volume(tmp_path / "huge.mhd")
    # 2-D, colour, blank, NaN
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((20, 20), np.float32)), str(tmp_path / "flat.mha"))
    with pytest.raises(InputError, match="2-D"):
        load_volume(tmp_path / "flat.mha")
    rgb = sitk.GetImageFromArray(np.zeros((3, 8, 8, 3), np.uint8), isVector=True)
    sitk.WriteImage(rgb, str(tmp_path / "rgb.mha"))
    with pytest.raises(PixelDataError, match="values per voxel"):
        load_volume(tmp_path / "rgb.mha")
    blank = dataclasses.replace(_scan(), volume=np.zeros((5, 24, 20), np.float32))
    with pytest.raises(PixelDataError, match="blank"):
        load_volume(write_volume(blank, tmp_path / "blank.mha"))
    nan = _scan()
    img = sitk.ReadImage(str(write_volume(nan, tmp_path / "nan.mha")))
    arr = sitk.GetArrayFromImage(img)
    arr[0, 0, 0] = np.nan
    img2 = sitk.GetImageFromArray(arr)
    img2.CopyInformation(img)
    sitk.WriteImage(img2, str(tmp_path / "nan.mha"))
    with pytest.raises(PixelDataError, match="NaN"):
        load_volume(tmp_path / "nan.mha")
    with pytest.raises(InputError, match="needs one of"):
        write_volume(_scan(), tmp_path / "x.png")


def test_predict_grades_a_thin_slice_volume_in_slabs(study, tmp_path, tiny_grader):
    """A phantom study resampled to 1 mm slices and saved as .mha: read, averaged into 4 mm slabs."""
    from spinenet_lite.app import SLAB_MM, predict, slab_thickness

    st = study
    thin = np.repeat(st.scan.volume, 4, axis=0)  # ~1 mm apart instead of ~4
    scan = dataclasses.replace(st.scan, volume=thin, slice_spacing=st.scan.slice_spacing / 4, source="")
    f = write_volume(scan, tmp_path / "thin.mha")
    before = _sha(f)
    corners = np.repeat(st.corners, 4, axis=1)
    pred = predict(f, tmp_path / "out", weights=tiny_grader[0], corners=corners, device="cpu",
                   hotspots=False, tta=False, progress=False)
    assert _sha(f) == before
    assert pred.slab_mm == SLAB_MM and any("slabs" in n for n in pred.notes)
    assert len(pred.levels) == 6 and pred.to_dict()["slab_mm"] == SLAB_MM
    # the disc volumes hold slabs one slab apart: its nine slices cover ~36 mm of the 1 mm series
    g = pred.discs.geometries[0]
    assert np.diff(g.slice_indices).mean() == pytest.approx(SLAB_MM / scan.slice_spacing, rel=0.3)
    # --slab-mm 0 keeps the slices; a 4 mm series is never averaged
    assert slab_thickness(scan, 0) == (None, [])
    assert slab_thickness(st.scan) == (None, [])
    with pytest.raises(InputError, match="slab"):
        slab_thickness(scan, -1)
    with pytest.raises(InputError, match="drop --spacing"):
        predict(f, None, spacing_mm=0.5, progress=False)


def test_predict_refuses_bad_volume_files_in_one_line(tmp_path, tiny_grader, capsys):
    """Through predict and the command line: an axial volume and a damaged file, nothing written."""
    from spinenet_lite.app import predict
    from spinenet_lite.cli import main

    vol = np.random.default_rng(3).random((6, 30, 30)).astype(np.float32)
    img = sitk.GetImageFromArray(vol)
    img.SetSpacing((0.7, 0.7, 5.0))  # identity direction: slices along head-foot
    sitk.WriteImage(img, str(tmp_path / "axial.nii.gz"))
    with pytest.raises(NotSagittalError, match="axial"):
        predict(tmp_path / "axial.nii.gz", tmp_path / "o1", weights=tiny_grader[0], progress=False)
    assert not (tmp_path / "o1").exists()
    bad = tmp_path / "bad.mha"
    bad.write_bytes(b"ObjectType = Image\nNDims = 3\n")
    rc = main(["predict", str(bad), "--out", str(tmp_path / "o2"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "bad.mha" in err, err
    assert not (tmp_path / "o2").exists() and bad.read_bytes() == b"ObjectType = Image\nNDims = 3\n"


def test_reader_crash_and_stall_are_refused_not_fatal(tmp_path, monkeypatch):
    """Files found by fuzzing: SimpleITK 2.5 segfaults on a MetaImage with NDims = -1 and hangs on a
    NIfTI header with an infinite affine entry. Read in a child process, both are a CorruptFileError
    (whether a later SimpleITK crashes, stalls or refuses them), and this process lives on."""
    import struct

    import spinenet_lite.io.volume as V

    crash = tmp_path / "crash.mha"
    crash.write_text("ObjectType = Image\nNDims = -1\nElementSpacing = 0 -1 0 0.5\nElementType = MET_DOUBLE\n"
                     "ElementNumberOfChannels = 0\nElementDataFile = missing.raw\n")
    with pytest.raises(CorruptFileError, match="crash.mha"):
        load_volume(crash)
    nii = bytearray(write_volume(_scan(), tmp_path / "ok.nii").read_bytes())
    struct.pack_into("<f", nii, 280 + 4 * 5, float("inf"))  # srow_y[1] of the NIfTI-1 header
    stall = tmp_path / "stall.nii"
    stall.write_bytes(bytes(nii))
    monkeypatch.setattr(V, "READ_TIMEOUT_S", 5.0)
    with pytest.raises(CorruptFileError, match="stall.nii"):
        load_volume(stall)
    # the same reader in this process, for trusted files, gives the same scan as the child
    f = write_volume(_scan(), tmp_path / "fine.mha")
    np.testing.assert_array_equal(load_volume(f, isolate=False).volume, load_volume(f).volume)


_META_KEYS = ("ObjectType = Image", "NDims = {i}", "DimSize = {v}", "ElementType = {t}",
              "ElementSpacing = {v}", "TransformMatrix = {v}", "ElementNumberOfChannels = {i}",
              "CompressedData = True", "HeaderSize = {i}", "ElementDataFile = LOCAL")


def test_fuzzed_metaimage_headers_give_only_project_errors(tmp_path_factory):
    """Random MetaImage headers (counts, sizes, spacings, matrices) and trailing bytes: a Scan or
    one of the project's errors, never a crash of the caller."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from spinenet_lite.errors import SpineNetError

    nums = st.sampled_from(["-1", "0", "1", "3", "9", "2147483648", "nan", "inf", "0.5", "1e30", "x"])
    line = st.tuples(st.sampled_from(_META_KEYS), st.sampled_from(["-1", "0", "1", "2", "3", "4", "99"]),
                     st.lists(nums, min_size=0, max_size=10).map(" ".join),
                     st.sampled_from(["MET_SHORT", "MET_FLOAT", "MET_UCHAR", "MET_BOGUS"]))
    folder = tmp_path_factory.mktemp("fuzz_mha")

    @settings(max_examples=25, deadline=None, derandomize=True, database=None)
    @given(lines=st.lists(line, min_size=1, max_size=10), tail=st.binary(max_size=2000))
    def check(lines, tail):
        text = "\n".join(k.format(i=i, v=v, t=t) for k, i, v, t in lines) + "\n"
        f = folder / "f.mha"
        f.write_bytes(text.encode() + tail)
        try:
            load_volume(f)
        except SpineNetError:
            pass

    check()
