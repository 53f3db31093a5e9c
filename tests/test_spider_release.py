"""The original SPIDER release reader and its hashed, cached download (no network)."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from spinenet_lite.datasets import spider_release as sr
from spinenet_lite.datasets.spider import labels_from_gradings, read_gradings
from spinenet_lite.errors import CorruptFileError, InputError
from spinenet_lite.extract.landmarks import SPIDER_CANAL, SPIDER_DISC, SPIDER_VERTEBRA


def _volume() -> np.ndarray:
    """(S, H, W) = (3, 5, 4) in project axes, every voxel distinct."""
    return np.arange(3 * 5 * 4, dtype=np.float32).reshape(3, 5, 4)


def _write_as_stored(vol: np.ndarray, file: Path, layout: str) -> None:
    """Write ``vol`` (project axes) as an .mha stored in another axis order / direction."""
    if layout == "project":  # x -> posterior, y -> inferior, z -> right
        arr = vol
        direction = (0, 0, -1, 1, 0, 0, 0, -1, 0)  # row-major; its columns are P, I, R in LPS
        spacing = (0.5, 0.6, 4.0)  # (col, row, slice)
    else:  # stored as z -> superior, y -> posterior, x -> left, the head at the end
        arr = np.transpose(vol[::-1, ::-1, :], (1, 2, 0))  # (slices, rows reversed, cols) -> z,y,x
        direction = (1, 0, 0, 0, 1, 0, 0, 0, 1)
        spacing = (4.0, 0.5, 0.6)  # x=slice (L), y=col (P), z=row (S)
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    img.SetDirection(direction)
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(file))


@pytest.mark.parametrize("layout", ["project", "lps"])
def test_read_mha_reorients_to_project_axes(tmp_path, layout):
    vol = _volume()
    f = tmp_path / "1_t2.mha"
    _write_as_stored(vol, f, layout)
    scan = sr.read_mha(f, patient_id="x")
    np.testing.assert_array_equal(scan.volume, vol)
    assert scan.pixel_spacing == pytest.approx((0.6, 0.5))
    assert scan.slice_spacing == pytest.approx(4.0)


def _release(tmp_path: Path) -> Path:
    root = tmp_path / "release"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    vol = _volume()
    for pid in ("2", "10"):
        _write_as_stored(vol, root / "images" / f"{pid}_t2.mha", "lps")
    _write_as_stored(vol, root / "images" / "2_t1.mha", "lps")
    mask = np.zeros(vol.shape, np.float32)
    mask[0, 0, :] = 3       # a vertebra
    mask[1, 1, :] = 100     # canal
    mask[2, 2, :] = 203     # a disc
    _write_as_stored(mask, root / "masks" / "2_t2.mha", "lps")
    (root / "overview.csv").write_text("new_file_name,PixelSpacing\n2_t2,\"[0.6, 0.5]\"\n")
    (root / "radiological_gradings.csv").write_text(
        "Patient,IVD label,Modic,UP endplate,LOW endplate,Spondylolisthesis,Disc herniation,"
        "Disc narrowing,Disc bulging,Pfirrman grade\n2,1,2,0,1,0,0,1,0,4\n2,0,0,0,0,0,0,0,0,3\n")
    return root


def test_read_series_and_masks(tmp_path):
    root = _release(tmp_path)
    assert sr.release_series(root, "t2") == ["2", "10"]
    assert sr.release_series(root, "t1") == ["2"]
    scan, mask = sr.read_series(root, "2")
    assert scan.patient_id == "SPIDER-2"
    np.testing.assert_array_equal(scan.volume, _volume())
    g = sr.mask_groups(mask)
    assert g[0, 0, 0] == SPIDER_VERTEBRA and g[1, 1, 0] == SPIDER_CANAL and g[2, 2, 0] == SPIDER_DISC
    assert (g[0, 1:] == 0).all()
    _, none = sr.read_series(root, "10")
    assert none is None
    df = read_gradings(root)  # the release's CSVs read like the subset's
    assert len(df) == 1 and df["level"].iloc[0] == 5
    lab = labels_from_gradings(df)
    assert lab[0, 0] == 3  # Pfirrmann 4 -> class 3


def test_read_errors(tmp_path):
    with pytest.raises(InputError, match="images/"):
        sr.release_series(tmp_path)
    bad = tmp_path / "bad.mha"
    bad.write_bytes(b"not an image")
    with pytest.raises(CorruptFileError):
        sr.read_mha(bad)
    with pytest.raises(InputError, match="does not exist"):
        sr.read_mha(tmp_path / "missing.mha")


def test_fetch_file_local_url_hash_and_cache(tmp_path, monkeypatch):
    src = tmp_path / "src" / "overview.csv"
    src.parent.mkdir()
    src.write_text("new_file_name,PixelSpacing\n")
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    monkeypatch.setenv(sr.CACHE_ENV, str(tmp_path / "cache"))
    reg = {"overview.csv": (src.as_uri(), sha)}
    out = sr.fetch_file("overview.csv", registry=reg)
    assert out.parent == tmp_path / "cache" / "spider"
    assert out.read_bytes() == src.read_bytes()
    src.write_text("changed\n")  # cached: not fetched again
    assert sr.fetch_file("overview.csv", registry=reg).read_text() == "new_file_name,PixelSpacing\n"
    bad = {"overview.csv": (src.as_uri(), "0" * 64)}
    with pytest.raises(CorruptFileError, match="hash"):
        sr.fetch_file("overview.csv", registry=bad, cache=tmp_path / "other")
    with pytest.raises(InputError, match="not a file"):
        sr.fetch_file("nope.zip", registry=reg)


def test_fetch_release_unpacks_with_fake_fetch(tmp_path):
    zsrc = tmp_path / "zsrc"
    zsrc.mkdir()
    _write_as_stored(_volume(), zsrc / "5_t2.mha", "project")
    with zipfile.ZipFile(zsrc / "images.zip", "w") as zf:
        zf.write(zsrc / "5_t2.mha", "images/5_t2.mha")
    (zsrc / "overview.csv").write_text("new_file_name,PixelSpacing\n")
    calls = []

    def fake(url, known_hash, fname, folder):
        calls.append((url, known_hash, fname))
        return str(zsrc / fname)

    root = sr.fetch_release(tmp_path / "rel", names=("images.zip", "overview.csv"), fetch=fake,
                            cache=tmp_path / "c")
    assert sr.release_series(root) == ["5"]
    assert (root / "overview.csv").is_file()
    assert calls[0][0] == sr.REGISTRY["images.zip"][0]
    assert calls[0][1] == "sha256:" + sr.REGISTRY["images.zip"][1]
    assert calls[1][1] is None  # CSV hashes are not pinned
    assert "zenodo.org/records/10159290" in calls[0][0]
