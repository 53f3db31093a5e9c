"""Vertebra localiser: network, working grid, geometry, weights loading, training data, scoring,
and the shipped weights on a held-out synthetic study and a SPIDER slice."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from spinenet_lite.errors import InputError, TooFewDiscsError, WeightsError
from spinenet_lite.io.scan import Scan
from spinenet_lite.localise.inference import (
    WORK_SPACING_MM,
    Localisation,
    corners_from_probability,
    disc_centres,
    load_localiser,
    localise,
    save_localiser,
    to_work_grid,
)
from spinenet_lite.localise.net import LocaliserNet, n_parameters
from spinenet_lite.localise.training import (
    LocaliserTrainConfig,
    SliceSet,
    make_batch,
    phantom_body_mask,
    score_study,
    spider_body_mask,
    split_patients,
    train_localiser,
)
from spinenet_lite.tasks import LEVELS, VERTEBRAE

torch.set_num_threads(1)


def _boxes(n: int = 7, top: float = 20.0, height: float = 16.0, gap: float = 7.0, col: float = 30.0,
           depth: float = 22.0) -> np.ndarray:
    """Axis-aligned body boxes (n, 4, 2) in working pixels, top to bottom."""
    out = []
    for k in range(n):
        r0 = top + k * (height + gap)
        out.append([[r0, col], [r0, col + depth], [r0 + height, col + depth], [r0 + height, col]])
    return np.array(out, dtype=np.float64)


def _mask_from_boxes(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    m = np.zeros(shape, np.float32)
    for b in boxes:
        m[int(b[0, 0]):int(b[2, 0]) + 1, int(b[0, 1]):int(b[1, 1]) + 1] = 1.0
    return m


# ------------------------------------------------------------------ network and grid
def test_net_shapes_and_size():
    net = LocaliserNet(8).eval()
    assert n_parameters(net) < 500_000
    with torch.no_grad():
        y = net(torch.zeros(2, 1, 64, 48))
    assert y.shape == (2, 1, 64, 48)
    with pytest.raises(ValueError, match="multiples of 8"):
        net(torch.zeros(1, 1, 60, 48))


def test_work_grid_resamples_to_working_pixels_and_pads():
    vol = np.random.default_rng(0).random((3, 200, 150)).astype(np.float32)
    x, size, scale = to_work_grid(vol, (0.5, 0.75))
    assert size == (round(200 * 0.5 / WORK_SPACING_MM), round(150 * 0.75 / WORK_SPACING_MM))
    assert x.shape[0] == 3 and x.shape[1] == 1 and x.shape[2] % 8 == 0 and x.shape[3] % 8 == 0
    assert scale == pytest.approx((200 / size[0], 150 / size[1]))
    assert float(x[:, :, size[0]:].abs().max()) == 0.0  # padding is zero


# ------------------------------------------------------------------ geometry
def test_geometry_on_a_synthetic_mask_maps_back_to_scan_voxels():
    boxes = _boxes()
    prob = _mask_from_boxes(boxes, (184, 80))[None]
    scale = (3.0, 2.0)  # scan voxels per working pixel
    corners, messages = corners_from_probability(prob, (184, 80), scale)
    assert corners.shape == (7, 1, 4, 2) and corners.dtype == np.float32
    assert not np.isnan(corners).any() and not messages
    # the working-pixel box edges (pixel centres +- 0.5), scaled to scan voxels
    for k, b in enumerate(boxes):
        lo = np.array([(b[0, 0] - 0.5 + 0.5) * 3 - 0.5, (b[0, 1] - 0.5 + 0.5) * 2 - 0.5])
        hi = np.array([(b[2, 0] + 0.5 + 0.5) * 3 - 0.5, (b[1, 1] + 0.5 + 0.5) * 2 - 0.5])
        np.testing.assert_allclose(corners[k, 0, 0], lo, atol=1e-3)  # superior-anterior
        np.testing.assert_allclose(corners[k, 0, 2], hi, atol=1e-3)  # inferior-posterior
        assert corners[k, 0, 1, 1] > corners[k, 0, 0, 1]  # posterior right of anterior
    centres = disc_centres(corners)
    assert centres.shape == (len(LEVELS), 1, 2)
    assert np.all(np.diff(centres[:, 0, 0]) > 0)


def test_geometry_counts_levels_up_from_the_lowest_body():
    boxes = _boxes(n=4)
    corners, messages = corners_from_probability(_mask_from_boxes(boxes, (120, 80))[None], (120, 80), (1, 1))
    present = ~np.isnan(corners[:, 0, 0, 0])
    assert [v for v, p in zip(VERTEBRAE, present) if p] == list(VERTEBRAE[-4:])
    assert any("only 4" in m for m in messages)


def test_geometry_ignores_a_blob_off_the_spine_and_anchors_s1_on_the_middle_slice():
    boxes = _boxes()
    spine = _mask_from_boxes(boxes, (200, 100))
    blob = np.zeros_like(spine)
    blob[180:196, 70:90] = 1.0  # out of line with the bodies, below S1
    s2 = _mask_from_boxes(_boxes(n=1, top=boxes[-1, 0, 0] + 23.0), (200, 100))  # a sacral segment
    prob = np.stack([spine + s2, spine + blob, spine + s2])  # S2 only on the lateral slices
    corners, messages = corners_from_probability(prob, (200, 100), (1.0, 1.0))
    assert any("off the line of the spine" in m for m in messages)
    assert not np.isnan(corners).any()
    for s in range(3):  # T12 .. S1 are the seven boxes on every slice, not shifted by a level
        np.testing.assert_allclose(corners[:, s].mean(1), boxes.mean(1), atol=0.01)


# ------------------------------------------------------------------ weights
def test_weights_roundtrip_and_errors(tmp_path):
    net = LocaliserNet(4)
    path = save_localiser(net, tmp_path / "w.pt", note="test")
    again = load_localiser(path)
    for a, b in zip(net.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(WeightsError, match="not found"):
        load_localiser(tmp_path / "missing.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(path.read_bytes()[:200])
    with pytest.raises(WeightsError, match="not a readable"):
        load_localiser(bad)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(WeightsError, match="not localiser weights"):
        load_localiser(other)
    blob = torch.load(path, weights_only=True)
    blob["state_dict"] = {k: v for k, v in list(blob["state_dict"].items())[:-2]}
    torch.save(blob, tmp_path / "partial.pt")
    with pytest.raises(WeightsError, match="do not fit"):
        load_localiser(tmp_path / "partial.pt")


def test_localise_reports_too_few_discs_and_bad_input():
    net = LocaliserNet(4).eval()
    torch.nn.init.constant_(net.head.bias, -20.0)
    torch.nn.init.zeros_(net.head.weight)  # probability ~0 everywhere: nothing found
    scan = Scan(volume=np.random.default_rng(1).random((1, 120, 100)), pixel_spacing=(1.0, 1.0),
                slice_spacing=4.0)
    with pytest.raises(TooFewDiscsError, match="found 0 vertebral bodies"):
        localise(scan, net=net)
    loc = localise(scan, net=net, min_discs=0)
    assert isinstance(loc, Localisation) and loc.levels == [] and np.isnan(loc.corners).all()
    assert loc.corners.shape == (7, 1, 4, 2)
    with pytest.raises(InputError, match="Scan"):
        localise(np.zeros((10, 10)), net=net)


# ------------------------------------------------------------------ training data and scoring
def test_spider_body_mask_cuts_posterior_elements():
    m = np.zeros((2, 40, 40), np.uint8)
    m[:, 5:35, 20:24] = 150  # canal, front edge at column 20
    m[:, 10:18, 5:30] = 76  # body + pedicle reaching behind the canal
    m[1][m[1] == 150] = 0  # slice 1: no canal (lateral): the other slice's edge is used
    body = spider_body_mask(m)
    assert body[0, 12, 5:23].all() and not body[0, 12, 23:].any()
    assert body[1, 12, 5:23].all() and not body[1, 12, 23:].any()


def test_phantom_body_mask_rasterises_quads():
    corners = np.full((7, 2, 4, 2), np.nan)
    corners[6, 1] = [[10, 10], [10, 30], [30, 30], [30, 10]]  # scan voxels
    m = phantom_body_mask(corners, (40, 40), scale=(2.0, 2.0))
    assert not m[0].any()
    assert abs(int(m[1].sum()) - 100) <= 25  # 10 x 10 working pixels


def test_split_is_patient_level_and_fixed():
    ids = [str(i) for i in range(30)]
    a, b = split_patients(ids, 0), split_patients(list(reversed(ids)), 0)
    assert a == b
    assert [len(a[k]) for k in ("train", "val", "test")] == [20, 4, 6]
    assert not set(a["train"]) & set(a["test"]) and not set(a["val"]) & set(a["test"])
    with pytest.raises(InputError):
        split_patients(ids[:5])


def test_split_reproduces_the_committed_localiser_split(spider_dir):
    """The split of the shipped localiser's results is what :func:`split_patients` makes today."""
    from spinenet_lite.extract.landmarks import space_patients
    from spinenet_lite.results import read_results

    rec = read_results("localiser", "teaching")
    assert split_patients(space_patients(spider_dir), rec["config"]["split_seed"]) == rec["results"]["split"]


def test_score_study_counts_and_errors():
    truth = np.full((7, 2, 4, 2), np.nan, np.float32)
    for k, b in enumerate(_boxes()):
        truth[k, 0] = b
    pred = truth.copy()
    pred[:, 0, :, 0] += 2.0  # 2 px down at 1 mm rows
    pred[0, 0] = np.nan  # T12 missed: disc T12-L1 not found
    r = score_study(pred, truth, (1.0, 1.0), tol_mm=3.0)
    assert r["n_true"] == 6 and r["n_found"] == 5 and r["n_within"] == 5 and r["n_level_ok"] == 5
    np.testing.assert_allclose(r["errors_mm"], 2.0, atol=1e-5)
    assert score_study(pred, truth, (2.0, 1.0), tol_mm=3.0)["n_within"] == 0  # 4 mm


def test_training_loop_runs_and_lowers_the_loss():
    rng = np.random.default_rng(0)
    imgs, masks = [], []
    for _ in range(4):
        m = _mask_from_boxes(_boxes(height=10, gap=5, depth=14, top=4), (120, 64)) > 0
        imgs.append((m * 0.8 + 0.1 * rng.random(m.shape)).astype(np.float16))
        masks.append(m)
    data = SliceSet(imgs, masks, ["phantom"] * 4)
    x, y = make_batch(data, 2, 32, np.random.default_rng(1))
    assert x.shape == y.shape == (2, 1, 32, 32)
    cfg = LocaliserTrainConfig(epochs=2, steps_per_epoch=5, batch_size=2, crop=32, width=4, lr=1e-2)
    _, hist = train_localiser(data, cfg, seed=0, val=data, progress=False)
    assert len(hist) == 2 and hist[-1]["loss"] < hist[0]["loss"]
    assert 0.0 <= hist[-1]["val_dice"] <= 1.0


# ------------------------------------------------------------------ shipped weights
@pytest.mark.slow
def test_shipped_weights_on_a_held_out_phantom_study():
    from spinenet_lite.phantom import synth_patient

    study = synth_patient(0, 0)  # the test studies are indices 0..19; training used 10000+
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loc = localise(study.scan)
    assert loc.corners.shape == study.corners.shape
    mid = study.mid_slice
    r = score_study(loc.corners, study.corners, study.scan.pixel_spacing, np.array([mid]))
    assert r["n_true"] == 6 and r["n_found"] == 6 and r["n_level_ok"] == 6
    assert max(r["errors_mm"]) < 4.0
    assert loc.levels == list(LEVELS)


def test_shipped_weights_on_a_spider_test_patient(spider_dir):
    from spinenet_lite.localise.training import spider_test_studies
    from spinenet_lite.results import read_results

    test = read_results("localiser", "teaching")["results"]["split"]["test"]
    scan, truth, mid = spider_test_studies(spider_dir, test[:1])[0]
    one = Scan(volume=scan.volume[mid:mid + 1], pixel_spacing=scan.pixel_spacing, slice_spacing=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loc = localise(one)
    r = score_study(loc.corners, truth[:, mid:mid + 1], scan.pixel_spacing)
    assert r["n_found"] >= r["n_true"] - 1 and r["n_level_ok"] == r["n_pred"]
    assert np.median(r["errors_mm"]) < 3.0


@pytest.mark.slow
def test_cli_localise_writes_corners_that_extract_reads(tmp_path):
    from spinenet_lite.cli import main
    from spinenet_lite.io.dicom import write_dicom_series
    from spinenet_lite.phantom import PhantomConfig, synth_patient

    study = synth_patient(1, 0, PhantomConfig.fast())
    write_dicom_series(study.scan, tmp_path / "dicom")
    assert main(["localise", str(tmp_path / "dicom"), "--out", str(tmp_path / "c.npz")]) == 0
    with np.load(tmp_path / "c.npz") as z:
        assert z["corners"].shape == study.corners.shape
        assert list(z["levels"]) == list(LEVELS)
    assert main(["extract", str(tmp_path / "dicom"), "--corners", str(tmp_path / "c.npz"),
                 "--out", str(tmp_path / "d.npz")]) == 0
    with np.load(tmp_path / "d.npz") as z:
        assert z["volumes"].shape == (6, 9, 112, 224)
    assert main(["localise", str(tmp_path / "x.png"), "--out", str(tmp_path / "e.npz")]) == 2


def test_localise_refuses_an_unknown_lowest_body():
    scan = Scan(volume=np.zeros((1, 64, 64), np.float32), pixel_spacing=(1.0, 1.0), slice_spacing=1.0)
    with pytest.raises(InputError, match="lowest"):
        localise(scan, lowest="L4")


def test_score_localiser_refuses_a_folder_without_spider(tmp_path):
    from spinenet_lite.cli import main

    assert main(["score-localiser", "--spider-dir", str(tmp_path), "--no-results"]) == 2


def test_score_localiser_writes_the_levels_beside_the_real_scan_recipes(tmp_path, monkeypatch):
    import json

    from spinenet_lite.cli import main
    from spinenet_lite.localise import training

    split = {part: {"mid_slice": {"level_accuracy": acc, "n_studies": 2}, "six_levels_mid": 1.0}
             for part, acc in (("train", 0.9), ("val", 0.75), ("test", 1.0))}
    monkeypatch.setattr(training, "score_levels",
                        lambda *a, **k: {"spider": {"lowest_is_S1": split, "auto": split}})
    monkeypatch.setenv("SPINENET_RESULTS_DIR", str(tmp_path))
    # a recipes section written before must survive
    (tmp_path / "spider_recipes_teaching.json").write_text(json.dumps(
        {"experiment": "spider_recipes", "tier": "teaching", "config": {},
         "results": {"baseline": {"pfirrmann": 0.5}}}))
    assert main(["score-localiser"]) == 0
    res = json.loads((tmp_path / "spider_recipes_teaching.json").read_text())["results"]
    assert res["levels"] == {"train": 0.9, "val": 0.75, "test": 1.0}
    assert res["baseline"] == {"pfirrmann": 0.5}
    details = res["levels_details"]
    assert details["tuned_on"] == "train" and details["flagging"].startswith("none")
