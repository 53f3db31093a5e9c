"""The real-scan recipe ablation (spinenet_lite.experiments.spider_ablation) on phantom SPIDER discs."""

from __future__ import annotations

import numpy as np
import pytest
from test_spider_baseline import N_PATIENTS, discs, phantom_spider  # noqa: F401  (fixtures)

from spinenet_lite.errors import InputError
from spinenet_lite.experiments import spider_ablation as sa
from spinenet_lite.experiments import spider_cv as se
from spinenet_lite.experiments import spider_discs
from spinenet_lite.tasks import MISSING, TASK_NAMES


@pytest.fixture(scope="module")
def tiny_synthetic(tmp_path_factory):
    """A tiny synthetic-cohort model to fine-tune (the shipped one is 35 MB; this is enough to test)."""
    import torch

    from spinenet_lite.nn.model import SpineNet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("syn") / "tiny.pt"
    se.save_weights(SpineNet(width=0.0625).eval(), path)
    return path


def _space_like(d, patients):
    """'SPACE' discs: copies of some discs under other patient numbers."""
    idx = np.arange(len(patients) * 6) % len(d)
    sub = d.subset(idx)
    sub.patients = np.repeat(np.asarray(patients, dtype=str), 6)
    return sub


def test_inner_split_is_by_patient(discs):  # noqa: F811
    tr, val = sa.inner_split(discs.patients, seed=4)
    assert len(np.intersect1d(tr, val)) == 0 and len(tr) + len(val) == len(discs)
    assert not set(discs.patients[tr]) & set(discs.patients[val])
    assert len(set(discs.patients[val])) == -(-N_PATIENTS // sa.INNER_FRACTION_FOLDS)  # fold 0: the larger
    again = sa.inner_split(discs.patients, seed=4)
    np.testing.assert_array_equal(again[1], val)


def test_training_set_adds_space_discs_of_allowed_patients_only(discs):  # noqa: F811
    space = _space_like(discs, ["100", "101", "999"])
    both = sa.training_set(discs.subset(np.arange(12)), space, exclude_patients=["100"])
    assert len(both) == 12 + 12
    assert "100" not in set(both.patients[12:]) and {"101", "999"} == set(both.patients[12:])
    nar = TASK_NAMES.index("narrowing")
    assert (both.labels[:, nar] != MISSING).any()  # training labels: SPIDER's binary narrowing filled in
    assert len(sa.training_set(discs.subset(np.arange(12)))) == 12
    odd = _space_like(discs, ["5"])
    odd.volumes = odd.volumes[:, :, :50]
    with pytest.raises(InputError, match="shape"):
        sa.training_set(discs.subset(np.arange(12)), odd)


@pytest.fixture(scope="module")
def ablation(discs, tiny_synthetic):  # noqa: F811
    space = _space_like(discs, ["900", str(100)])
    return sa.ablate(discs, space=space, tier="ci", seed=1, recipes=("finetune", "ordinal", "with_space"),
                     synthetic=tiny_synthetic)


def test_ablate_nested_selection_and_rows(discs, tiny_synthetic, ablation):  # noqa: F811
    res = ablation
    assert set(res["rows"]) == {"zero_shot", "trees", "finetune", "ordinal", "with_space", "ensemble",
                                "selected"}
    folds = se.patient_folds(discs.patients, se.SPIDER_TIERS["ci"]["n_folds"], 1)  # experiment-spider's folds
    assert res["n_folds"] == len(folds) == 2
    for row in res["rows"].values():
        oof = np.asarray(row["out_of_fold"])
        assert oof.shape == discs.labels.shape and (oof != MISSING).all()
        assert row["pooled"] == se.score(discs.labels, discs.narrowing_binary, oof)
    # each fold's selected recipe is the one with the best inner-validation score, and its
    # out-of-fold predictions are that recipe's on the fold
    for k, test in enumerate(folds):
        chosen = res["selected_per_fold"][k]
        cands = ["trees", "finetune", "ordinal", "with_space"]
        assert res["rows"][chosen]["inner"][k] == max(res["rows"][r]["inner"][k] for r in cands)
        np.testing.assert_array_equal(res["rows"]["selected"]["out_of_fold"][test],
                                      res["rows"][chosen]["out_of_fold"][test])
    assert res["ship"] == max(["finetune", "ordinal", "with_space"],
                              key=lambda r: np.mean(res["rows"][r]["inner"]))
    numbers = sa.summary(res)
    assert set(numbers["selected"]) == {*se.SCORED_TASKS, "pfirrmann_within_1", "narrowing_binary"}
    assert all(0 <= v <= 1 for row in numbers.values() for v in row.values())
    md = sa.ablation_markdown(res)
    assert md.startswith("| row | pfirrmann |") and "Selected per outer fold" in md
    # the trees learn the phantom's Pfirrmann (nucleus brightness) from patients they never saw
    assert numbers["trees"]["pfirrmann"] > 0.3
    levels, oof = sa.ablation_out_of_fold(res, discs.patients[0])
    mine = np.flatnonzero(discs.patients == discs.patients[0])
    np.testing.assert_array_equal(oof, np.asarray(res["rows"][res["ship"]]["out_of_fold"])[mine])
    np.testing.assert_array_equal(levels, discs.levels[mine])
    with pytest.raises(InputError, match="row"):
        sa.ablation_out_of_fold(res, discs.patients[0], row="nothing")
    with pytest.raises(InputError, match="SPACE"):
        sa.ablate(discs, tier="ci", recipes=("with_space",), synthetic=tiny_synthetic)
    with pytest.raises(InputError, match="recipe"):
        sa.ablate(discs, tier="ci", recipes=("bigger",), synthetic=tiny_synthetic)
    bare = se.SpiderDiscs(discs.volumes, discs.labels, discs.narrowing_binary, discs.patients, discs.levels)
    with pytest.raises(InputError, match="context"):
        sa.ablate(bare, tier="ci", recipes=(), synthetic=tiny_synthetic)


def test_the_book_s_table_and_worst_failures(discs, ablation):  # noqa: F811
    import json

    import matplotlib

    matplotlib.use("Agg")
    from spinenet_lite.results import to_jsonable
    from spinenet_lite.viz import REAL_COLUMNS, plot_failures, real_recipes_frame, worst_failures

    # as read back from spider_recipes_<tier>.json
    record = {"recipes": sa.summary(ablation), "recipes_details": ablation}
    results = json.loads(json.dumps(to_jsonable(record)))
    frame = real_recipes_frame(results)
    assert list(frame.index) == ["zero_shot", "trees", "finetune", "ordinal", "with_space", "ensemble",
                                 "selected"]
    assert list(frame.columns) == [*REAL_COLUMNS.values(), "inner"]
    assert frame.loc["ordinal", "Pfirrmann"] == pytest.approx(results["recipes"]["ordinal"]["pfirrmann"])
    assert np.isnan(frame.loc["selected", "inner"]) and np.isfinite(frame.loc["trees", "inner"])
    fails = worst_failures(results, discs.patients, discs.levels, discs.labels, row="finetune", n=5)
    assert 0 < len(fails) <= 5
    errors = [f["error"] for f in fails]
    assert errors == sorted(errors, reverse=True)
    pf = TASK_NAMES.index("pfirrmann")
    oof = np.asarray(ablation["rows"]["finetune"]["out_of_fold"])
    worst = max(abs(int(oof[i, pf]) - int(discs.labels[i, pf])) for i in range(len(discs)))
    assert errors[0] == worst
    f = fails[0]
    assert f["reference"] == discs.labels[f["index"], pf] and f["predicted"] == oof[f["index"], pf]
    fig = plot_failures(discs.volumes, fails)
    assert len([ax for ax in fig.axes if ax.images]) == len(fails)
    with pytest.raises(InputError, match="row"):
        worst_failures(results, discs.patients, discs.levels, discs.labels, row="nothing")
    with pytest.raises(InputError, match="same discs"):
        worst_failures(results, discs.patients, discs.levels, discs.labels[:3])
    with pytest.raises(InputError, match="spider-ablation"):
        real_recipes_frame({"baseline": {}})
    with pytest.raises(InputError, match="no failures"):
        plot_failures(discs.volumes, [])


def test_fit_recipe_applies_the_recipe(discs, tiny_synthetic, monkeypatch):  # noqa: F811
    seen = {}

    def fake_train(cfg, data, progress=False, model=None):
        seen["cfg"] = cfg

        class R:
            pass

        r = R()
        r.model = model
        return r

    monkeypatch.setattr(sa, "train", fake_train)
    sa.fit_recipe("combined", sa.training_set(discs), tier="teaching", seed=3, synthetic=tiny_synthetic)
    cfg = seen["cfg"]
    base = {**se.SPIDER_TIERS["teaching"]["finetune"], **sa.ABLATION_BASE["teaching"]}
    assert cfg.max_epochs == int(np.ceil(base["max_epochs"] * 1.5)) and cfg.batch_size == base["batch_size"]
    assert (cfg.ordinal_tasks, cfg.lr_schedule, cfg.mixup_alpha, cfg.intensity_augment) == (
        ("pfirrmann",), "cosine", 0.4, 0.3)
    assert cfg.seed == 3 and cfg.width == 0.0625
    with pytest.raises(InputError, match="recipe"):
        sa.fit_recipe("scratch", discs, synthetic=tiny_synthetic)


def test_spider_ablation_cli(phantom_spider, tiny_synthetic, tmp_path, monkeypatch):  # noqa: F811
    from spinenet_lite.cli import main
    from spinenet_lite.results import read_results

    root, corners = phantom_spider
    monkeypatch.setattr(spider_discs, "_localise_corners",
                        lambda scan, weights, device: corners[scan.patient_id.split("-")[1]])
    out = tmp_path / "res"
    base = ["--tier", "ci", "--data-dir", str(root), "--out-dir", str(out), "--cache-dir",
            str(tmp_path / "c"), "--synthetic", str(tiny_synthetic)]
    # the baseline first, as experiment-spider writes it: the ablation keeps it
    assert main(["experiment-spider", "--recipes", "baseline", *base]) == 0
    assert main(["spider-ablation", *base, "--recipes", "finetune,ordinal", "--save-weights",
                 str(tmp_path / "w.pt")]) == 0
    rec = read_results("spider_recipes", "ci", out)
    res = rec["results"]
    assert set(res["recipes"]) == {"zero_shot", "trees", "finetune", "ordinal", "ensemble", "selected"}
    assert "baseline" in res and "baseline_details" in res
    det = res["recipes_details"]
    assert det["ship"] in ("finetune", "ordinal") and det["weights"]["recipe"] == det["ship"]
    assert det["provenance"]["config"]["recipes"]["ordinal"]["overrides"] == {"ordinal_tasks": ["pfirrmann"]}
    assert (tmp_path / "w.pt").is_file()
    model = se.load_model(tmp_path / "w.pt")
    assert float(model.width) == 0.0625
    md = (out / "spider_recipes_ci.md").read_text()
    assert md.startswith("| row |") and "classical baseline on every outer-training disc" in md
    # the SPACE recipes need the T2 SPACE folder, which this phantom folder lacks: a clear error
    assert main(["spider-ablation", *base, "--recipes", "with_space"]) == 2
    assert main(["spider-ablation", *base, "--recipes", "bigger"]) == 2
