"""The GPU-session scripts of issue 18, run at their --tiny sizes on a CPU: the training loop's
throughput with the fast-path options (benchmarks/train_throughput.py --loop) and the
converged Table 2 sweep (benchmarks/converged_sweep_gpu.py). Plumbing only: no timing is
checked (speed lives in benchmarks/)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from spinenet_lite.tasks import BRANCH_POINTS

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # the scripts import each other as their folder's modules
    import converged_sweep_gpu
    import train_throughput

    return train_throughput, converged_sweep_gpu


def test_loop_tiny_times_every_option_and_says_cpu_is_not_gpu(bench, tmp_path):
    train_throughput, _ = bench
    assert train_throughput.main(["--loop", "--tiny", "--device", "cpu", "--threads", "1",
                                  "--out", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / "train_loop_throughput_cpu.json").read_text())
    assert rec["benchmark"] == "train_loop_throughput" and rec["device"] == "cpu" and rec["commit"]
    assert "nothing about GPU throughput" in rec["note"] and rec["tiny"] is True
    rows = {r["setting"]: r for r in rec["results"]}
    assert list(rows) == ["baseline", "+device_data", "+fused_optimizer", "+big_batch"]  # compile: skipped
    assert "+compile" in rec["skipped"]
    assert rows["baseline"]["device_data"] is False and rows["+device_data"]["device_data"] is True
    assert rows["+fused_optimizer"]["fused_optimizer"] is True
    big, base = rows["+big_batch"], rows["baseline"]
    assert big["batch"] == 4 * base["batch"] and big["lr"] == pytest.approx(4 * base["lr"])
    assert all(r["samples_per_s"] > 0 and len(r["epoch_s"]) == 2 for r in rows.values())
    assert "fraction_of_bf16_peak" not in base and rec["config"]["width"] == 0.0625


def test_sweep_config_defaults_are_the_fast_path(bench):
    _, sweep = bench
    args = argparse.Namespace(tiny=False, batch=None, lr=None, device="cpu", seed=0, patients=1200,
                              warmup_epochs=2, compile=False, width=None)
    c = sweep.sweep_config(args)
    assert (c.batch_size, c.warmup_epochs, c.width) == (256, 2, 1.0)
    assert c.lr == pytest.approx(4e-2)  # the tier's 1e-2 at batch 64, scaled linearly
    assert c.device_data and c.fused_optimizer and not c.compile


@pytest.mark.slow  # ~30 s: a 3-patient cohort is synthesised, 16 tiny models trained and scored
def test_converged_sweep_tiny_writes_results_and_session(bench, tmp_path):
    _, sweep = bench
    out = tmp_path / "out"
    assert sweep.main(["--tiny", "--out", str(out), "--data-dir", str(tmp_path / "data"),
                       "--budget-s", "300"]) == 0
    for name in ("table2", "ablations", "lootus"):
        res = json.loads((out / f"{name}_paper.json").read_text())
        assert res["tier"] == "paper" and res["config"]["device_data"] is True
        assert res["config"]["width"] == 0.0625 and res["config"]["max_epochs"] == 1
    table2 = json.loads((out / "table2_paper.json").read_text())
    assert list(table2["results"]["branch_points"]) == list(BRANCH_POINTS)
    s = json.loads((out / sweep.SESSION_FILE).read_text())
    assert set(s["throughput_samples_per_s"]) == set(BRANCH_POINTS)
    assert all(v > 0 for v in s["throughput_samples_per_s"].values())
    assert s["epochs"] == 1 and s["plan"]["fits"] is True and s["min_epochs"] == 1
    for key in ("epoch_s", "score_s", "estimated_sweep_s", "epochs_that_fit", "model_overhead_s"):
        assert key in s["plan"], key
    models = s["estimated_vs_measured_s"]["models"]
    assert len(models) == len(s["models"]) == 2 * len(BRANCH_POINTS) + 4  # + no aug, no class balance
    assert all(m["epochs_run"] == 1 and m["estimated_train_s"] > 0 for m in models)
    assert {"estimated", "measured"} <= set(s["estimated_vs_measured_s"]["sweep"])
    assert "nothing about GPU throughput" in s["note"] and s["device"] == "cpu"
    assert set(s["results"]) == {"table2", "ablations", "lootus"}
