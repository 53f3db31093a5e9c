"""Deriving the chapters' SPIDER folder from a (small, self-written) original .mha release."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from spinenet_lite.cli import main
from spinenet_lite.datasets import spider
from spinenet_lite.datasets import spider_derive as sd
from spinenet_lite.datasets import spider_release as sr
from spinenet_lite.errors import InputError
from spinenet_lite.extract.landmarks import SPIDER_CANAL, SPIDER_DISC, SPIDER_VERTEBRA, read_space_study

MARK = 1000.0  # the head-anterior corner of every image


def _write_lps(vol: np.ndarray, file: Path, spacing: tuple[float, float, float]) -> None:
    """Write ``vol`` (project axes: slices -> right, rows -> foot, cols -> posterior) as an .mha stored
    the other way round: x -> left (slices reversed), y -> posterior, z -> superior (rows reversed)."""
    arr = np.transpose(vol[::-1, ::-1, :], (1, 2, 0))
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    img.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, 1))
    img.SetSpacing(spacing)  # (slice, col, row) mm
    sitk.WriteImage(img, str(file))


def _t2(n_slices: int, h: int, w: int) -> np.ndarray:
    """Project-axes volume: a bright block at the top-left (head, anterior), slice-dependent level."""
    vol = np.zeros((n_slices, h, w), np.float32)
    vol += (10.0 * np.arange(n_slices))[:, None, None] + 100.0
    vol[:, :4, :4] = MARK
    vol[:, -3:, -3:] = 0.0  # darkest at the bottom-right (foot, posterior)
    return vol


CANAL_AREAS = (0, 2, 10, 12, 10, 5, 0)  # per slice of the T2 SPACE mask: slices 2-4 have >= 6 (half of 12)


def _space_mask(h: int, w: int) -> np.ndarray:
    m = np.zeros((len(CANAL_AREAS), h, w), np.int16)
    for s, a in enumerate(CANAL_AREAS):
        m[s].flat[w * 10: w * 10 + a] = 100      # canal, a pixels of row 10 (and on)
    m[:, :4, :4] = 3                              # a vertebra at the top-left
    m[:, 5:7, 2:8] = 203                          # a disc below it
    return m


def make_release(root: Path) -> Path:
    """Patients 1 (training: t2, t2_SPACE + mask), 2 (training: t2), 3 (validation: t2)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for pid in ("1", "2", "3"):
        _write_lps(_t2(5, 24, 16), root / "images" / f"{pid}_t2.mha", (4.0, 0.5, 0.6))
    _write_lps(_t2(len(CANAL_AREAS), 20, 18), root / "images" / "1_t2_SPACE.mha", (1.0, 0.5, 0.5))
    _write_lps(_space_mask(20, 18).astype(np.float32), root / "masks" / "1_t2_SPACE.mha", (1.0, 0.5, 0.5))
    (root / "overview.csv").write_text(
        "new_file_name,subset,PixelSpacing,SliceThickness,SpacingBetweenSlices\n"
        '1_t2,training,"[0.6, 0.5]",4.0,4.0\n'
        '1_t2_SPACE,training,"[0.5, 0.5]",0.9,1.0\n'
        '2_t2,training,"[0.6, 0.5]",4.0,4.0\n'
        '3_t2,validation,"[0.6, 0.5]",4.0,4.0\n')
    head = ("Patient,IVD label,Modic,UP endplate,LOW endplate,Spondylolisthesis,Disc herniation,"
            "Disc narrowing,Disc bulging,Pfirrman grade\n")
    (root / "radiological_gradings.csv").write_text(
        head + "1,1,0,0,0,0,0,1,1,3\n1,2,2,1,0,0,0,0,1,4\n2,1,0,0,0,0,0,0,0,2\n3,1,0,0,1,0,0,0,0,5\n")
    return root


def _png(file: Path) -> np.ndarray:
    return np.asarray(Image.open(file))


def test_derive_writes_the_chapters_layout(tmp_path):
    release = make_release(tmp_path / "release")
    before = {f: f.read_bytes() for f in release.rglob("*") if f.is_file()}
    out = sd.derive_subset(release, tmp_path / "derived", progress=False)

    assert out.patients == ["1", "2"]  # 3 is of the validation subset
    assert sorted(f.name for f in (out.out_dir / "t2_midsag").iterdir()) == ["1_t2.png", "2_t2.png"]
    names = sorted(f.name for f in (out.out_dir / "t2_space" / "images").iterdir())
    assert names == [f"1_t2_SPACE_slice{k}.png" for k in (2, 3, 4)]
    assert sorted(f.name for f in (out.out_dir / "t2_space" / "masks").iterdir()) == names

    # orientation: head up, anterior left; the middle slice; 8-bit with the scaling of the series
    img = _png(out.out_dir / "t2_midsag" / "1_t2.png")
    assert img.dtype == np.uint8 and img.shape == (24, 16)
    assert (img[:4, :4] == 255).all() and (img[-3:, -3:] == 0).all()
    np.testing.assert_array_equal(img, sd.series_to_uint8(_t2(5, 24, 16))[2])

    # masks: release labels -> 76 vertebra, 29 disc, 150 canal, same orientation as the image
    m = _png(out.out_dir / "t2_space" / "masks" / "1_t2_SPACE_slice3.png")
    assert m.shape == (20, 18) and set(np.unique(m)) == {0, SPIDER_DISC, SPIDER_VERTEBRA, SPIDER_CANAL}
    assert (m[:4, :4] == SPIDER_VERTEBRA).all() and (m[5:7, 2:8] == SPIDER_DISC).all()
    assert (m == SPIDER_CANAL).sum() == CANAL_AREAS[3]
    assert (_png(out.out_dir / "t2_space" / "images" / "1_t2_SPACE_slice3.png")[:4, :4] == 255).all()

    # the CSVs keep the release's rows of the kept patients, and the readers take the folder
    assert spider.spider_available(out.out_dir)
    assert set(spider.read_gradings(out.out_dir)["patient"]) == {"1", "2"}
    assert list(spider.read_overview(out.out_dir).index) == ["1_t2", "1_t2_SPACE", "2_t2"]
    assert spider.midsag_patients(out.out_dir) == ["1", "2"]
    scan = spider.read_midsag("1", out.out_dir)
    assert scan.volume.shape == (1, 24, 16) and scan.pixel_spacing == (0.6, 0.5)
    space, mask = read_space_study(out.out_dir, "1")
    assert space.volume.shape == (3, 20, 18) and mask.shape == (3, 20, 18)
    assert space.slice_spacing == 1.0
    assert "2 patients: 2 mid-sagittal T2 PNGs, 3 T2 SPACE slices" in str(out)
    # the release is only read
    assert {f: f.read_bytes() for f in release.rglob("*") if f.is_file()} == before


def test_all_subsets_and_skipped_series(tmp_path):
    release = make_release(tmp_path / "release")
    (release / "masks" / "1_t2_SPACE.mha").unlink()
    out = sd.derive_subset(release, tmp_path / "d", subsets=None, progress=False)
    assert out.patients == ["1", "2", "3"] and len(out.midsag) == 3
    assert out.space_images == [] and out.skipped == [f"1_t2_SPACE: no mask in {release / 'masks'}"]


def test_space_slices_and_scaling():
    mask = np.zeros((7, 2, 8), int)
    for s, a in enumerate(CANAL_AREAS):
        mask[s].flat[:a] = 100
    assert sd.space_slices(mask).tolist() == [2, 3, 4]
    assert sd.space_slices(mask, canal_fraction=0.1).tolist() == [1, 2, 3, 4, 5]
    no_canal = np.zeros((3, 2, 2), int)
    no_canal[1:, 0, 0] = 5
    assert sd.space_slices(no_canal).tolist() == [1, 2]
    assert sd.space_slices(np.zeros((3, 2, 2))).size == 0
    v = np.array([0.0, 50.0, 100.0, 1e6])
    np.testing.assert_array_equal(sd.series_to_uint8(v, 100.0), [0, 0, 0, 255])
    assert sd.series_to_uint8(v, 50.0).tolist() == [0, 170, 255, 255]  # the 50th percentile is 75
    assert sd.series_to_uint8(np.full(4, 3.0)).tolist() == [0, 0, 0, 0]
    with pytest.raises(InputError, match="high_percentile"):
        sd.series_to_uint8(v, 0.0)
    with pytest.raises(InputError, match="canal_fraction"):
        sd.space_slices(mask, 0.0)


def test_refuses_what_is_not_a_release(tmp_path):
    with pytest.raises(InputError, match="not a folder"):
        sd.derive_subset(tmp_path / "missing", tmp_path / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"not a SPIDER release folder: images/, masks/, overview.csv"):
        sd.derive_subset(empty, tmp_path / "out")
    derived = sd.derive_subset(make_release(tmp_path / "release"), tmp_path / "derived", progress=False)
    with pytest.raises(InputError, match="already derived folder"):
        sd.derive_subset(derived.out_dir, tmp_path / "out")
    no_mha = tmp_path / "no_mha"
    for sub in ("images", "masks"):
        (no_mha / sub).mkdir(parents=True)
    for name in ("overview.csv", "radiological_gradings.csv"):
        (no_mha / name).write_text("x\n")
    with pytest.raises(InputError, match="no <patient>_t2.mha"):
        sd.check_release(no_mha)
    assert not (tmp_path / "out").exists()


def test_refuses_a_used_out_dir(tmp_path):
    release = make_release(tmp_path / "release")
    with pytest.raises(InputError, match="release folder itself"):
        sd.derive_subset(release, release)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        sd.derive_subset(release, busy)
    sd.derive_subset(release, busy, overwrite=True, progress=False)
    assert (busy / "notes.txt").read_text() == "mine" and (busy / "t2_midsag" / "1_t2.png").is_file()
    with pytest.raises(InputError, match="subset"):
        sd.derive_subset(release, tmp_path / "none", subsets=("test",))


def test_cli_spider_derive(tmp_path, capsys, monkeypatch):
    release = make_release(tmp_path / "release")
    assert main(["spider-derive", str(release), str(tmp_path / "out")]) == 0
    assert "2 patients" in capsys.readouterr().out
    assert (tmp_path / "out" / "t2_space" / "masks" / "1_t2_SPACE_slice4.png").is_file()
    assert main(["spider-derive", str(tmp_path / "out"), str(tmp_path / "out2")]) == 2
    assert "not a SPIDER release folder" in capsys.readouterr().err

    calls = []

    def fake_fetch(out_dir):  # --download: the release is fetched when RELEASE_DIR is not one yet
        calls.append(Path(out_dir))
        make_release(Path(out_dir))
        return Path(out_dir)

    monkeypatch.setattr(sr, "fetch_release", fake_fetch)
    assert main(["spider-derive", str(tmp_path / "fresh"), str(tmp_path / "out3"), "--download"]) == 0
    assert calls == [tmp_path / "fresh"]
    assert main(["spider-derive", str(release), str(tmp_path / "out4"), "--download"]) == 0
    assert calls == [tmp_path / "fresh"]  # already a release: nothing downloaded


def test_data_page_gives_the_command_that_exists():
    from spinenet_lite.cli import build_parser

    text = (Path(__file__).resolve().parents[1] / "book" / "data.md").read_text()
    assert "spinenet-lite spider-derive RELEASE_DIR OUT_DIR" in text
    assert "10159290" in text and "CC BY 4.0" in text
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert "spider-derive" in sub.choices
