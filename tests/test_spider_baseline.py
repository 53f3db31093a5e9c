"""The classical baseline (spinenet_lite.experiments.spider_baseline) on a phantom SPIDER-layout folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spinenet_lite.errors import InputError
from spinenet_lite.experiments import spider_baseline as sb
from spinenet_lite.experiments import spider_cv as se
from spinenet_lite.experiments import spider_discs
from spinenet_lite.extract.features import FEATURE_NAMES
from spinenet_lite.tasks import LEVELS, MISSING, TASK_NAMES

N_PATIENTS = 12


@pytest.fixture(scope="module")
def phantom_spider(tmp_path_factory):
    """Mid-sagittal PNGs of phantom patients graded with their true labels in SPIDER's columns."""
    from PIL import Image

    from spinenet_lite.phantom import PhantomConfig, synth_patient

    root = tmp_path_factory.mktemp("spider_phantoms")
    (root / "t2_midsag").mkdir()
    rows, ov, corners = [], [], {}
    col = TASK_NAMES.index
    for k in range(N_PATIENTS):
        st = synth_patient(k, 11, PhantomConfig.fast())
        img = st.scan.volume[st.mid_slice]
        pid = str(100 + k)
        Image.fromarray((255 * (img - img.min()) / (img.max() - img.min())).astype(np.uint8)).save(
            root / "t2_midsag" / f"{pid}_t2.png")
        ps = st.scan.pixel_spacing
        ov.append(f'{pid}_t2,"[{ps[0]}, {ps[1]}]",4.0,4.0')
        corners[pid] = st.corners[:, st.mid_slice:st.mid_slice + 1]
        t = st.labels["true"]
        for i in range(len(LEVELS)):
            modic = 2 * int(t[i, col("upper_marrow")] or t[i, col("lower_marrow")])
            rows.append(f"{pid},{len(LEVELS) - i},{modic},{t[i, col('upper_endplate')]},"
                        f"{t[i, col('lower_endplate')]},0,0,{int(t[i, col('narrowing')] > 0)},0,"
                        f"{t[i, col('pfirrmann')] + 1}")
    (root / "overview.csv").write_text(
        "new_file_name,PixelSpacing,SpacingBetweenSlices,SliceThickness\n" + "\n".join(ov) + "\n")
    (root / "radiological_gradings.csv").write_text(
        "Patient,IVD label,Modic,UP endplate,LOW endplate,Spondylolisthesis,Disc herniation,"
        "Disc narrowing,Disc bulging,Pfirrman grade\n" + "\n".join(rows) + "\n")
    return root, corners


@pytest.fixture(scope="module")
def discs(phantom_spider):
    root, corners = phantom_spider
    d, _ = se.build_discs(root, source="midsag", corners=corners, progress=False)
    return d


def test_cross_validate_baseline_uses_the_cnn_folds_and_learns(discs):
    cv = sb.cross_validate_baseline(discs, tier="ci", seed=3)
    folds = se.patient_folds(discs.patients, se.SPIDER_TIERS["ci"]["n_folds"], 3)
    assert cv["n_folds"] == len(folds) == 2 and cv["n_patients"] == N_PATIENTS
    expected = {str(p): k for k, f in enumerate(folds) for p in np.unique(discs.patients[f])}
    assert cv["fold_of_patient"] == expected
    oof = cv["out_of_fold"]
    assert oof.shape == discs.labels.shape and (oof != MISSING).all()
    assert se.score(discs.labels, discs.narrowing_binary, oof) == cv["pooled"]
    summary = sb.baseline_summary(cv["pooled"])
    assert set(summary) == {*se.SCORED_TASKS, "pfirrmann_within_1", "narrowing_binary"}
    assert all(0 <= v <= 1 for v in summary.values())
    # the phantom draws Pfirrmann as nucleus brightness and narrowing as disc height: both are learnt
    # from patients the trees never saw, well above chance (0.2 and 0.5)
    assert summary["pfirrmann"] > 0.4 and summary["narrowing_binary"] > 0.7
    # the same seed gives the same folds and the same trees
    again = sb.cross_validate_baseline(discs, tier="ci", seed=3, features=sb.baseline_features(discs))
    np.testing.assert_array_equal(again["out_of_fold"], oof)
    with pytest.raises(InputError, match="tier"):
        sb.cross_validate_baseline(discs, tier="huge")
    with pytest.raises(InputError, match="shape"):
        sb.cross_validate_baseline(discs, tier="ci", features=np.zeros((3, 2)))
    bare = se.SpiderDiscs(discs.volumes, discs.labels, discs.narrowing_binary, discs.patients, discs.levels)
    with pytest.raises(InputError, match="context"):
        sb.baseline_features(bare)


def test_subset_and_cache_keep_the_context(discs, phantom_spider, tmp_path):
    sub = discs.subset([0, 3])
    np.testing.assert_array_equal(sub.context, discs.context[[0, 3]])
    assert sub.for_training(True).context.shape[0] == 4
    root, corners = phantom_spider
    cached = se.cached_discs(root, source="midsag", cache_dir=tmp_path, corners=corners, progress=False)
    assert (tmp_path / "spider_midsag_replicated.npz").is_file()  # the rule's padding of a one-slice study
    again = se.cached_discs(root, source="midsag", cache_dir=tmp_path, corners=corners)
    np.testing.assert_array_equal(again.context, cached.context)
    np.testing.assert_array_equal(sb.baseline_features(again), sb.baseline_features(discs))


def test_experiment_spider_baseline_cli(phantom_spider, tmp_path, monkeypatch):
    from spinenet_lite.cli import main
    from spinenet_lite.results import read_results

    root, corners = phantom_spider
    monkeypatch.setattr(spider_discs, "_localise_corners",
                        lambda scan, weights, device: corners[scan.patient_id.split("-")[1]])
    out = tmp_path / "res"
    out.mkdir()
    # another section written earlier (a CNN recipe) must survive the baseline's rewrite
    (out / "spider_recipes_ci.json").write_text(json.dumps(
        {"experiment": "spider_recipes", "tier": "ci", "config": {"recipes": {"x": 1}},
         "results": {"recipes": {"finetune": {"pfirrmann": 0.5}}}}))
    args = ["experiment-spider", "--tier", "ci", "--data-dir", str(root), "--recipes", "baseline",
            "--out-dir", str(out), "--cache-dir", str(tmp_path / "c")]
    assert main(args) == 0
    rec = read_results("spider_recipes", "ci", out)
    res = rec["results"]
    assert res["recipes"] == {"finetune": {"pfirrmann": 0.5}} and rec["config"]["recipes"] == {"x": 1}
    assert set(res["baseline"]) == {*se.SCORED_TASKS, "pfirrmann_within_1", "narrowing_binary"}
    assert all(0 <= v <= 1 for v in res["baseline"].values())
    det = res["baseline_details"]
    assert det["feature_names"] == list(FEATURE_NAMES) and det["n_folds"] == 2
    assert det["provenance"]["config"]["class_weight"] == "balanced"
    assert "--recipes baseline" in det["command"] and det["folds_match_cnn"] is None
    assert (out / "spider_recipes_ci.md").read_text().startswith("| metric | baseline (trees) |")
    # the baseline is measured on the mid-sagittal PNGs only
    assert main([*args, "--source", "space"]) == 2


def test_same_folds_against_a_cnn_record(discs):
    cv = sb.cross_validate_baseline(discs, tier="ci", seed=0)
    pats = cv["discs"]["patients"]
    cnn = {"seed": 0, "tier": "ci", "commit": "abc1234",
           "results": {"n_folds": 2, "discs": {"patients": pats},
                       "recipes": {"finetune": {"pooled": cv["pooled"]}}}}
    assert sb.same_folds(cv, cnn, 0) is True
    assert sb.same_folds(cv, {**cnn, "seed": 1}, 0) is False
    assert sb.same_folds(cv, None, 0) is None
    md = sb.baseline_markdown(cv, cnn, True)
    assert "CNN finetune" in md and "the same patient folds" in md


def test_real_midsag_features(spider_dir, repo_root):
    """On real PNGs (localiser corners): CSF is the brightest fluid, discs are thinner than bodies."""
    from spinenet_lite.datasets.spider import midsag_patients

    ids = midsag_patients(spider_dir)[:4]
    d, rep = se.build_discs(spider_dir, source="midsag", patients=ids, progress=False,
                            localiser_weights=repo_root / "data" / "weights" / "localiser.pt")
    assert rep["n_studies"] >= 3 and {st["pad"] for st in rep["studies"].values()} == {"replicate"}
    f = sb.baseline_features(d)
    col = {n: i for i, n in enumerate(FEATURE_NAMES)}
    assert np.isfinite(f).mean() > 0.95
    assert np.nanmean(f[:, col["csf_body"]] > 1) > 0.8 and np.nanmean(f[:, col["nucleus_csf"]] < 1) > 0.8
    dhi = f[:, col["dhi_mid"]]
    assert np.mean((dhi > 0.05) & (dhi < 0.8)) > 0.8
