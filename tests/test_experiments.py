"""Experiments (with a stand-in trainer) and the evaluate / experiment command lines."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from spinenet_lite.cli import main
from spinenet_lite.datasets.cache import DiscDataset
from spinenet_lite.engine import evaluation as E
from spinenet_lite.experiments import paper as X
from spinenet_lite.tasks import BRANCH_POINTS, MISSING, N_CLASSES, PAPER_TABLE2, TASK_NAMES

T = len(TASK_NAMES)


class OracleModel(nn.Module):
    """Reads task t's class from the mean of slice t; ``blind`` always answers class 0."""

    def __init__(self, blind: bool = False) -> None:
        super().__init__()
        self.blind = blind

    def forward(self, x):
        out = {}
        for j, t in enumerate(TASK_NAMES):
            code = x[:, j].mean(dim=(1, 2)) * 255 / 10
            if self.blind:
                code = torch.zeros_like(code)
            c = torch.arange(N_CLASSES[t], dtype=x.dtype)
            out[t] = -10 * (code[:, None] - c[None]).abs()
        return out


@dataclasses.dataclass
class RollViews:
    shift_x: torch.Tensor


def roll_apply(x, t, intensity=True):
    return torch.stack([torch.roll(xi, int(s), dims=-1) for xi, s in zip(x, t.shift_x)])


def _dataset(n_patients=10, seed=0, size=(8, 12)):
    rng = np.random.default_rng(seed)
    n = 6 * n_patients
    true = np.stack([rng.integers(0, N_CLASSES[t], n) for t in TASK_NAMES], 1).astype(np.int16)

    def noisy():
        lab = true.copy()
        for j, t in enumerate(TASK_NAMES):
            flip = rng.random(n) < 0.25
            lab[flip, j] = rng.integers(0, N_CLASSES[t], flip.sum())
        lab[rng.random((n, T)) < 0.05] = MISSING
        return lab

    vol = np.zeros((n, 9, *size), np.uint8)
    for j in range(T):
        vol[:, j] = (true[:, j] * 10)[:, None, None]
    return DiscDataset(vol, noisy(), true, noisy(), np.repeat([f"P{i:05d}" for i in range(n_patients)], 6),
                       np.tile(np.arange(6, dtype=np.int8), n_patients))


@pytest.fixture
def fake_tta(monkeypatch):
    monkeypatch.setattr(E, "_tta_views", lambda device: (RollViews(torch.tensor([-2, 0, 2])), roll_apply))


def _fake_train(calls):
    def train_fn(config, train_data, val_data):
        calls.append((config.branch_point, config.train_augment, config.class_balance, config.seed,
                      len(train_data.labels), len(val_data.labels)))
        assert not set(train_data.patients) & set(val_data.patients)
        return SimpleNamespace(model=OracleModel(blind=not config.train_augment), best_epoch=1)
    return train_fn


def test_all_experiments_share_models_and_write_results(tmp_path, fake_tta):
    from spinenet_lite.results import read_results

    calls: list = []
    ds = _dataset()
    lines: list[str] = []
    paths = X.run_experiment("all", "ci", device="cpu", seed=3, out_dir=tmp_path, data=ds,
                             train_fn=_fake_train(calls), log=lines.append)
    assert set(paths) == {"table2", "ablations", "lootus"}
    # 6 branch points x 2 folds, + no_train_aug and no_class_balance x 2 folds; conv5 trained once
    assert len(calls) == 2 * len(BRANCH_POINTS) + 4
    assert sum(c[0] == "conv5" and c[1] and c[2] for c in calls) == 2
    assert {c[3] for c in calls} == {3, 4}
    # the two folds swap validation and test: same training set, different validation set
    assert len({c[4] for c in calls}) == 1

    t2 = read_results("table2", "ci", tmp_path)
    assert t2["tier"] == "ci" and t2["seed"] == 3
    bps = t2["results"]["branch_points"]
    assert list(bps) == list(BRANCH_POINTS)
    ceiling = t2["results"]["references"]["ceiling"]
    for bp in BRANCH_POINTS:
        assert set(bps[bp]) == set(TASK_NAMES)
        for t in TASK_NAMES:
            # the oracle predicts the true labels: its score is the label-noise ceiling
            assert bps[bp][t]["mean"] == pytest.approx(ceiling[t]["mean"])
            assert 0 <= bps[bp][t]["std"] <= 0.5
    md = (tmp_path / "table2_ci.md").read_text()
    assert "71.2 ± 0.4" in md and "Label-noise ceiling" in md

    ab = read_results("ablations", "ci", tmp_path)["results"]["variants"]
    assert list(ab) == ["baseline", "no_train_aug", "no_tta", "no_class_balance"]
    for t in TASK_NAMES:
        assert ab["baseline"][t]["mean"] == pytest.approx(bps["conv5"][t]["mean"])
        assert ab["no_tta"][t]["mean"] == pytest.approx(ab["baseline"][t]["mean"])
        assert ab["no_train_aug"][t]["mean"] < ab["baseline"][t]["mean"]
    lo = read_results("lootus", "ci", tmp_path)["results"]
    assert set(lo["lootus"]) == {"pfirrmann_within_1", "narrowing_binary"}
    nb = "narrowing_binary"
    assert lo["lootus"][nb]["mean"] == pytest.approx(lo["ceiling"][nb]["mean"])
    assert lo["paper"]["pfirrmann_within_1"] == {"previous": 0.874, "spinenet": 0.961}
    assert any("wrote" in line for line in lines)


def test_convergence_keeps_the_curves_and_the_gap_to_the_ceiling(tmp_path, fake_tta):
    from spinenet_lite.results import read_results

    def train_fn(config, train_data, val_data):
        history = [{"epoch": e, "lr": 0.01, "train_loss": 2.0 / e, "val_loss": 2.5 / e,
                    "val_mean_acc": 0.1 * e, "val_acc_pfirrmann": 0.2} for e in (1, 2, 3)]
        return SimpleNamespace(model=OracleModel(), best_epoch=3, history=history)

    paths = X.run_experiment("convergence", "ci", device="cpu", out_dir=tmp_path, data=_dataset(),
                             train_fn=train_fn, log=lambda s: None)
    assert set(paths) == {"convergence"}
    rec = read_results("convergence", "ci", tmp_path)["results"]
    assert len(rec["curves"]) == 2 and [r["epoch"] for r in rec["curves"][0]] == [1, 2, 3]
    assert set(rec["curves"][0][0]) == set(X.CURVE_KEYS)  # per-task values are not kept
    assert rec["curves"][1][2]["val_mean_acc"] == pytest.approx(0.3)
    for t in TASK_NAMES:  # the oracle scores exactly the ceiling
        assert rec["gap_to_ceiling"][t] == pytest.approx(0.0, abs=1e-12)
    assert [m["epochs_run"] for m in rec["models"]] == [3, 3]
    assert "3, 3 epochs" in (tmp_path / "convergence_ci.md").read_text()


def test_experiment_errors_and_mean_std(tmp_path):
    from spinenet_lite.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown experiment"):
        X.run_experiment("table3", "ci", out_dir=tmp_path, data=_dataset(3), train_fn=_fake_train([]))
    from spinenet_lite.config import get_tier

    runner = X.Runner(get_tier("ci", device="cpu"), data=_dataset(2), train_fn=_fake_train([]),
                      log=lambda s: None)
    with pytest.raises(ConfigError, match="too few"):
        runner.splits()
    assert X.mean_std([0.5, 0.7]) == pytest.approx({"mean": 0.6, "std": 0.1})
    assert np.isnan(X.mean_std([float("nan")])["mean"])


def test_cli_experiment(tmp_path, monkeypatch, fake_tta):
    calls: list = []
    monkeypatch.setattr(X, "_default_data", lambda config: _dataset(10))
    monkeypatch.setattr(X, "_default_train", _fake_train(calls))
    rc = main(["experiment", "lootus", "--tier", "ci", "--device", "cpu", "--out-dir", str(tmp_path),
               "--max-epochs", "1"])
    assert rc == 0 and len(calls) == 2
    rec = json.loads((tmp_path / "lootus_ci.json").read_text())
    assert rec["config"]["max_epochs"] == 1
    assert (tmp_path / "lootus_ci.md").exists()


def test_cli_evaluate(tmp_path):
    from spinenet_lite.datasets.cache import write_cache
    from spinenet_lite.engine.checkpoint import save_checkpoint
    from spinenet_lite.nn.model import SpineNet

    ds = _dataset(4, size=(112, 224))
    cache = write_cache(tmp_path / "cache", ds.volumes, ds.labels, true_labels=ds.true_labels,
                        reread_labels=ds.reread_labels, patients=ds.patients, levels=ds.levels)
    torch.manual_seed(0)
    kwargs = {"branch_point": "conv5", "width": 0.0625}
    model = SpineNet(**kwargs)
    weights = save_checkpoint({"model": model.state_dict(), "model_kwargs": kwargs}, tmp_path / "w.pt")
    out = tmp_path / "res" / "results.json"
    rc = main(["evaluate", "--weights", str(weights), "--data", str(cache), "--split", "all",
               "--out", str(out), "--no-tta", "--device", "cpu"])
    assert rc == 0
    rec = json.loads(out.read_text())
    assert rec["results"]["n_discs"] == 24 and rec["results"]["tta"] is False
    assert set(rec["results"]["per_class_accuracy"]) == set(TASK_NAMES)
    assert out.with_suffix(".md").exists()
    rc = main(["evaluate", "--weights", str(tmp_path / "nope.pt"), "--data", str(cache)])
    assert rc == 2


# ------------------------------------------------------------------ sizing, data, chapter, CLI
@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """A fake-trained `all` sweep written at tier label "teaching"."""
    out = tmp_path_factory.mktemp("committed")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(E, "_tta_views", lambda device: (RollViews(torch.tensor([-2, 0, 2])), roll_apply))
        X.run_experiment("all", "teaching", device="cpu", seed=0, out_dir=out, data=_dataset(),
                         train_fn=_fake_train([]), log=lambda s: None)
    return out


def test_experiment_config_applies_the_sizing():
    from spinenet_lite.config import get_tier
    from spinenet_lite.errors import ConfigError

    cfg = X.experiment_config("teaching")
    sizing = X.EXPERIMENT_TIERS["teaching"]
    assert cfg.tier == "teaching" and cfg.width == sizing["width"] and cfg.n_patients == sizing["n_patients"]
    assert cfg.max_epochs == sizing["max_epochs"] < get_tier("teaching").max_epochs
    assert X.experiment_config("teaching", max_epochs=2, width=None).max_epochs == 2
    assert X.experiment_config("teaching", width=None).width == sizing["width"]
    ci = X.experiment_config("ci")
    assert ci.n_patients == 3 and not hasattr(ci, "max_eval_discs")
    paper = X.experiment_config("paper")
    assert paper.width == get_tier("paper").width == 1.0  # the paper's network, sized for a short GPU run
    assert paper == get_tier("paper").replace(**X.EXPERIMENT_TIERS["paper"])
    with pytest.raises(ConfigError, match="unknown tier"):
        X.experiment_config("huge")


def test_experiment_data_cuts_from_a_bigger_cache(tmp_path, monkeypatch):
    from spinenet_lite.datasets.cache import write_cache

    ds = _dataset(4, size=(112, 224))
    write_cache(tmp_path / "cache" / "syn_s0_n4", ds.volumes, ds.labels, true_labels=ds.true_labels,
                reread_labels=ds.reread_labels, patients=ds.patients, levels=ds.levels)

    def no_synthesis(*a, **k):
        raise AssertionError("should not synthesise")

    monkeypatch.setattr(X, "synthetic_dataset", no_synthesis)  # the name experiment_data calls
    sub = X.experiment_data(2, 0, root=tmp_path)
    assert len(sub.labels) == 12 and sorted(set(sub.patients)) == ["P00000", "P00001"]
    np.testing.assert_array_equal(sub.labels, ds.labels[:12])
    np.testing.assert_array_equal(np.asarray(sub.volumes), ds.volumes[:12])
    calls = []
    monkeypatch.setattr(X, "synthetic_dataset", lambda n, seed, **k: calls.append((n, seed)) or "made")
    assert X.experiment_data(5, 0, root=tmp_path) == "made" and calls == [(5, 0)]  # none bigger
    assert X.experiment_data(2, 1, root=tmp_path) == "made" and calls[-1] == (2, 1)  # other seed


def test_max_eval_discs_and_sizing_recorded(tmp_path, fake_tta):
    from spinenet_lite.config import get_tier

    runner = X.Runner(get_tier("ci", device="cpu"), data=_dataset(), train_fn=_fake_train([]),
                      log=lambda s: None, max_eval_discs=2)
    assert runner.score("conv5", {}, 0, True).n_discs == 2
    monkey = {"n_patients": None, "max_epochs": 1}
    X.run_experiment("lootus", "ci", device="cpu", out_dir=tmp_path, data=_dataset(),
                     train_fn=_fake_train([]), log=lambda s: None, **monkey)
    rec = json.loads((tmp_path / "lootus_ci.json").read_text())
    assert rec["results"]["sizing"] == {"tier_overrides": X.EXPERIMENT_TIERS["ci"],
                                        "overrides": {"max_epochs": 1}}
    assert rec["config"]["width"] == X.EXPERIMENT_TIERS["ci"]["width"]
    assert all(f["n_discs"] == 2 for f in rec["results"]["folds"])


def test_chapter_results(tmp_path, sweep_dir, monkeypatch, fake_tta):
    calls: list = []
    monkeypatch.setattr(X, "_default_data", lambda config: _dataset(3))
    monkeypatch.setattr(X, "_default_train", _fake_train(calls))
    quiet = {"log": lambda s: None, "device": "cpu"}
    # teaching committed: read, nothing trained
    cr = X.chapter_results("teaching", out_dir=sweep_dir, work_dir=tmp_path / "w0", **quiet)
    assert cr.main_tier == "teaching" and cr.computed is None and list(cr.records) == ["teaching"]
    assert not calls and "tier 'teaching'" in cr.note.lower()
    assert set(cr.results("table2")["branch_points"]) == set(BRANCH_POINTS)
    # ci requested: computed in the work dir, teaching stays the main tier
    cr = X.chapter_results("ci", out_dir=sweep_dir, work_dir=tmp_path / "w1", **quiet)
    assert cr.computed == "ci" and cr.main_tier == "teaching" and set(cr.records) == {"teaching", "ci"}
    assert (tmp_path / "w1" / "table2_ci.json").exists() and not (sweep_dir / "table2_ci.json").exists()
    assert calls and "computed in this session" in cr.note
    # nothing committed, teaching requested: the ci fallback, with a note
    calls.clear()
    cr = X.chapter_results("teaching", out_dir=tmp_path / "empty", work_dir=tmp_path / "w2", **quiet)
    assert cr.computed == "ci" and cr.main_tier == "ci" and calls
    assert "spinenet-lite experiment all --tier teaching" in cr.note and "stand-in" in cr.note
    with pytest.raises(Exception, match="no results at tier"):
        cr.results("table2", "paper")
    # paper files committed beside teaching (with a convergence run): the paper tier is discussed
    import shutil

    both = tmp_path / "both"
    shutil.copytree(sweep_dir, both)
    for name in X.EXPERIMENTS:
        text = (sweep_dir / f"{name}_teaching.json").read_text()
        (both / f"{name}_paper.json").write_text(text.replace('"tier": "teaching"', '"tier": "paper"'))
    cr = X.chapter_results("teaching", out_dir=both, **quiet)
    assert cr.main_tier == "paper" and set(cr.records) == {"teaching", "paper"} and not cr.has("convergence")
    with pytest.raises(Exception, match="experiment convergence --tier paper"):
        cr.results("convergence")
    X.run_experiment("convergence", "paper", device="cpu", out_dir=both, data=_dataset(),
                     train_fn=_fake_train([]), log=lambda s: None)
    cr = X.chapter_results("teaching", out_dir=both, **quiet)
    assert cr.has("convergence") and not cr.has("convergence", "teaching")
    assert set(cr.results("convergence")["gap_to_ceiling"]) == set(TASK_NAMES)


def test_viz_eval_on_results_files(sweep_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spinenet_lite.errors import InputError
    from spinenet_lite.results import read_results
    from spinenet_lite.tasks import TASKS
    from spinenet_lite.viz import evaluate as V

    t2 = read_results("table2", "teaching", sweep_dir)["results"]
    ab = read_results("ablations", "teaching", sweep_dir)["results"]
    lo = read_results("lootus", "teaching", sweep_dir)["results"]
    conf = V.summed_confusions(t2["folds"]["conv5"])
    n_test = sum(f["n_discs"] for f in t2["folds"]["conv5"])
    for t in TASK_NAMES:
        m = conf["tasks"][t]["confusion"]
        assert m.shape == (N_CLASSES[t], N_CLASSES[t]) and m.sum() <= n_test
    fig = V.plot_confusions(conf)
    assert len([a for a in fig.axes if a.images]) == T
    with pytest.raises(InputError):
        V.summed_confusions([])
    frame = V.ablation_frame(ab)
    assert list(frame.columns) == ["Label-noise ceiling", "baseline", "no_train_aug", "no_tta",
                                   "no_class_balance", "Paper (conv5)"]
    assert frame.loc[TASKS[0].title, "Paper (conv5)"] == "71.2 ± 0.4"
    lf = V.lootus_frame(lo)
    assert lf.loc["pfirrmann_within_1", "paper_previous"] == pytest.approx(87.4)
    assert lf.loc["narrowing_binary", "paper_spinenet"] == pytest.approx(87.8)
    assert lf.loc["narrowing_binary", "ours"] == pytest.approx(100 * lo["lootus"]["narrowing_binary"]["mean"])
    gap = V.gap_frame(t2["branch_points"]["conv5"], t2["references"])
    # the stand-in oracle predicts the true labels: it sits on the ceiling
    np.testing.assert_allclose(gap["gap_to_ceiling"], 0, atol=1e-9)
    assert gap.loc[TASKS[0].title, "paper_intra_rater"] == pytest.approx(70.4)
    assert len(V.plot_branch_points(t2["branch_points"], t2["references"]["ceiling"]).axes) == 6
    curve = [{"epoch": e, "lr": 0.01 if e < 3 else 0.001, "val_loss": 3.0 / e, "val_mean_acc": 0.2 * e}
             for e in (1, 2, 3, 4)]
    fig = V.plot_learning_curves([curve, curve[:2]])
    loss_ax, acc_ax = fig.axes
    assert [len(line.get_xdata()) for line in loss_ax.lines] == [4, 2]
    assert acc_ax.lines[0].get_ydata()[-1] == pytest.approx(80.0)
    drops = [line for line in acc_ax.lines if line.get_linestyle() == ":"]
    assert len(drops) == 1 and list(drops[0].get_xdata()) == [3, 3]  # the learning-rate drop is marked
    with pytest.raises(InputError):
        V.plot_learning_curves([[]])
    fd = V.findings_frame(t2, ab)
    assert len(fd) == 6 and fd["paper"].iloc[0] == pytest.approx(100 * np.mean(
        [PAPER_TABLE2["conv5"][t][0] - PAPER_TABLE2["none"][t][0] for t in TASK_NAMES]))
    by = dict(zip(fd.index.str.split(" \\(").str[0], fd.itertuples()))
    assert by["sharing layers up to conv5 beats no sharing"].ours == pytest.approx(0)  # same oracle
    assert not by["sharing layers up to conv5 beats no sharing"].reproduced
    assert by["training augmentation helps"].ours > 0 and by["training augmentation helps"].reproduced
    assert not by["test-time augmentation helps"].reproduced  # the roll views change nothing
    assert len(V.findings_frame(t2)) == 3
    fig = V.plot_ablations(ab)
    assert len(fig.axes[0].patches) == 3 * T
    with pytest.raises(InputError):
        V.plot_ablations({"variants": {}})
    plt.close("all")


def test_cli_experiment_hotspot_quality(tmp_path, monkeypatch):
    from spinenet_lite.experiments import hotspot_quality as HQ

    seen = []
    monkeypatch.setattr(HQ, "run_hotspot_quality", lambda *a, **k: seen.append((a, k)) or {})
    rc = main(["experiment", "hotspot_quality", "--tier", "ci", "--device", "cpu", "--seed", "2",
               "--max-discs", "3", "--out-dir", str(tmp_path)])
    assert rc == 0
    assert seen == [(("ci",), {"seed": 2, "device": "cpu", "max_discs": 3, "out_dir": tmp_path,
                               "model": None, "eval_data": None})]
    assert main(["experiment", "hotspot_quality", "--patients", "4"]) == 2
    assert main(["experiment", "table2", "--max-discs", "4"]) == 2
    assert main(["experiment", "table2", "--eval-patients", "4"]) == 2
    assert len(seen) == 1
