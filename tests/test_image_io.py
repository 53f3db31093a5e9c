"""2D image input: load_image and load_png_stack."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spinenet_lite.errors import CorruptFileError, GeometryError, InputError, PixelDataError
from spinenet_lite.io.image import DEFAULT_SLICE_SPACING_MM, load_image, load_png_stack, natural_key

SPIDER = Path(__file__).resolve().parents[2] / "shared" / "data" / "spider"


def grey(rows: int = 12, cols: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (rows, cols), dtype=np.uint8)


def save(array: np.ndarray, path: Path) -> Path:
    Image.fromarray(array).save(path)
    return path


@pytest.mark.parametrize("suffix", [".png", ".tif", ".bmp"])
def test_load_grey_image_exact(tmp_path, suffix):
    a = grey()
    scan = load_image(save(a, tmp_path / f"x{suffix}"), 0.5)
    assert scan.shape == (1, 12, 10) and scan.volume.dtype == np.float32
    np.testing.assert_array_equal(scan.volume[0], a)
    assert scan.pixel_spacing == (0.5, 0.5) and scan.slice_spacing == DEFAULT_SLICE_SPACING_MM
    np.testing.assert_array_equal(scan.row_direction, [0, 1, 0])
    np.testing.assert_array_equal(scan.column_direction, [0, 0, -1])


def test_rgb_converted_and_pair_spacing(tmp_path):
    a = grey()
    rgb = np.stack([a, a, a], axis=-1)
    scan = load_image(save(rgb, tmp_path / "c.png"), (0.6, 0.7), slice_spacing_mm=3.0)
    np.testing.assert_array_equal(scan.volume[0], a)
    assert scan.pixel_spacing == (0.6, 0.7) and scan.slice_spacing == 3.0


def test_jpeg_and_16bit(tmp_path):
    scan = load_image(save(grey(), tmp_path / "j.jpg"), 1.0)
    assert scan.shape == (1, 12, 10)
    a16 = (grey().astype(np.uint16) * 200).astype(np.uint16)
    Image.fromarray(a16).save(tmp_path / "w.png")
    np.testing.assert_array_equal(load_image(tmp_path / "w.png", 1.0).volume[0], a16)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_image(tmp_path / "none.png", 1.0)


def test_not_an_image(tmp_path):
    f = tmp_path / "x.png"
    f.write_text("hello, not a picture")
    with pytest.raises(CorruptFileError, match="not an image"):
        load_image(f, 1.0)


def test_truncated_image(tmp_path):
    f = save(grey(200, 200), tmp_path / "t.png")
    f.write_bytes(f.read_bytes()[:200])
    with pytest.raises(CorruptFileError, match="t.png"):
        load_image(f, 1.0)


@pytest.mark.parametrize("spacing", [0, -1, (1.0, 0.0), float("nan"), (1, 2, 3), "abc"])
def test_bad_spacing(tmp_path, spacing):
    f = save(grey(), tmp_path / "x.png")
    with pytest.raises(GeometryError, match="pixel spacing"):
        load_image(f, spacing)


def test_bad_slice_spacing(tmp_path):
    with pytest.raises(GeometryError, match="slice spacing"):
        load_image(save(grey(), tmp_path / "x.png"), 1.0, slice_spacing_mm=0)


def test_constant_image(tmp_path):
    with pytest.raises(PixelDataError, match="same value"):
        load_image(save(np.zeros((8, 8), np.uint8), tmp_path / "z.png"), 1.0)


def test_input_not_modified(tmp_path):
    f = save(grey(), tmp_path / "x.png")
    before = hashlib.sha256(f.read_bytes()).hexdigest()
    scan = load_image(f, 1.0)
    scan.volume[:] = 0
    assert hashlib.sha256(f.read_bytes()).hexdigest() == before


def test_stack(tmp_path):
    arrays = [grey(seed=i) for i in range(11)]
    paths = [save(a, tmp_path / f"s_slice{i}.png") for i, a in enumerate(arrays)]
    shuffled = sorted(paths)  # lexicographic: slice10 before slice2
    assert shuffled != paths
    scan = load_png_stack(shuffled, 0.9, 1.0, natural_sort=True)
    assert scan.shape == (11, 12, 10) and scan.slice_spacing == 1.0
    np.testing.assert_array_equal(scan.volume, np.stack(arrays))
    np.testing.assert_allclose(scan.slice_positions()[1] - scan.slice_positions()[0], scan.normal)
    assert sorted(paths, key=natural_key) == paths


def test_stack_errors(tmp_path):
    a = save(grey(), tmp_path / "a.png")
    b = save(grey(14, 10), tmp_path / "b.png")
    with pytest.raises(PixelDataError, match="b.png.*one size"):
        load_png_stack([a, b], 1.0, 1.0)
    with pytest.raises(InputError, match="empty"):
        load_png_stack([], 1.0, 1.0)
    with pytest.raises(InputError, match="list"):
        load_png_stack(a, 1.0, 1.0)
    with pytest.raises(GeometryError, match="slice spacing"):
        load_png_stack([a], 1.0, -2.0)
    z = save(np.full((12, 10), 7, np.uint8), tmp_path / "z.png")
    with pytest.raises(PixelDataError, match="same value"):
        load_png_stack([z, z], 1.0, 1.0)


@pytest.mark.spider
@pytest.mark.skipif(not SPIDER.is_dir(), reason="SPIDER subset not present")
def test_spider_space_stack():
    files = sorted((SPIDER / "t2_space" / "images").glob("110_t2_SPACE_slice*.png"), key=natural_key)
    scan = load_png_stack(files[:5], 0.5, 1.0)
    assert scan.shape[0] == 5 and scan.shape[1] >= 500
    assert load_image(sorted((SPIDER / "t2_midsag").glob("*.png"))[0], 0.6).shape[0] == 1
