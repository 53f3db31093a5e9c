"""A converged Table 2 sweep on one GPU in one 10-minute run (issue 18).

The structure of ``benchmarks/paper_tier_gpu.py`` (whose helpers it reuses) with the
training loop's fast path switched on: ``device_data`` (the uint8 disc cache on the GPU, no
host-to-device copy or host synchronisation per step), ``fused_optimizer``, a batch of 256
with the linearly scaled learning rate (:func:`spinenet_lite.config.scaled_lr`) and a linear
warm-up, ``compile`` on request. One command does the whole device job:

1. synthesise the cohort on every CPU core but one (a child process; an existing cache in
   ``--data-dir`` is reused), while
2. the GPU times the REAL training loop (``train_throughput.loop_rate``: the fast config on
   random discs, the last of two epochs) for every branch point: none, conv3, conv4, conv5,
   fc6, fc7;
3. the epochs are planned (``paper_tier_gpu.plan_epochs``) so that the sixteen models of
   ``experiment all`` (six branch points x two models, validation and test sets swapped, plus
   the ablations without class balancing and without training augmentation; the TTA ablation
   and Lootus re-score the conv5 models) each train at least ``--min-epochs`` (18) epochs
   within ``--budget-s`` seconds; ``plan["fits"]`` says whether they do;
4. ``experiment all`` runs at tier ``paper`` and writes ``{table2,ablations,lootus}_paper.{json,md}``
   into ``--out``, with ``converged_sweep_session.json``: the measured rates, the plan,
   estimated against measured seconds (per model and in total), the run of every model.

As in ``paper_tier_gpu.py`` a model still training after twice its planned share, or when
the budget is spent, stops after the epoch in progress (``epochs_run`` in each results file's
``models``), and a diverged model is retrained once at a tenth of the learning rate (both
recorded in the session's ``notes``).

The command a GPU session should run (a copy of the tree, pydicom carried as a wheel as in
``data/results/README.md``; the command limit is 600 s, so the budget leaves a margin for
start-up and writing)::

    python3 -m pip install --no-index --no-deps --target /tmp/site .whl/*.whl   # pydicom
    export PYTHONPATH=/tmp/site:$PWD SPINENET_GIT_COMMIT=<commit of the tree>
    python3 benchmarks/converged_sweep_gpu.py --out $OUT/sweep --budget-s 540

``--tiny`` runs the whole script on a CPU in well under a minute (3 patients, width 0.0625,
one epoch, two test discs scored per model): it checks the plumbing, its numbers mean
nothing, and its session file says so.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from paper_tier_gpu import (  # benchmarks/ is on sys.path as the script's folder
    capped_train_fn,
    model_overhead_s,
    plan_epochs,
    start_cohort,
    sweep_models,
    wait_for_cohort,
)
from train_throughput import CPU_NOTE, loop_rate, random_discs

from spinenet_lite.config import get_tier, resolve_device, scaled_lr
from spinenet_lite.datasets.cache import patient_split
from spinenet_lite.errors import ConfigError
from spinenet_lite.experiments.paper import EXPERIMENT_TIERS, Runner, experiment_config, run_experiment
from spinenet_lite.results import git_commit, machine_description
from spinenet_lite.tasks import BRANCH_POINTS

SESSION_FILE = "converged_sweep_session.json"
SIZE = (112, 224)  # rows, columns of a disc slice


def sweep_config(args: argparse.Namespace) -> Any:
    """The :class:`~spinenet_lite.config.TrainConfig` every model of the sweep starts from: the
    paper tier's experiments with the fast-path options (``--tiny``: a tiny network, one epoch)."""
    tier = get_tier("paper")
    base_batch = EXPERIMENT_TIERS["paper"].get("batch_size", tier.batch_size)
    base_lr = EXPERIMENT_TIERS["paper"].get("lr", tier.lr)
    batch = args.batch or (6 if args.tiny else 256)
    lr = args.lr if args.lr is not None else scaled_lr(base_lr, base_batch, batch)
    over: dict[str, Any] = {
        "device": args.device, "seed": args.seed, "n_patients": args.patients, "batch_size": batch, "lr": lr,
        "warmup_epochs": 0 if args.tiny else args.warmup_epochs, "device_data": True,
        "fused_optimizer": True, "compile": bool(args.compile), "width": args.width,
    }
    if args.tiny:
        over.update(width=args.width or 0.0625, eval_batch_size=108, num_threads=1)
    return experiment_config("paper", **over)


def measure_rates(config: Any, branch_points: list[str], n_discs: int, size: tuple[int, int] = SIZE,
                  ) -> dict[str, dict[str, Any]]:
    """Training discs per second of the real loop (``config``, two epochs on ``n_discs`` random
    discs, the last timed) for every branch point; ``{branch point: loop_rate record}``."""
    data = random_discs(n_discs, size, seed=config.seed)
    out = {}
    for bp in branch_points:
        cfg = config.replace(branch_point=bp, max_epochs=2, restore_best=False,
                             batch_size=min(config.batch_size, n_discs), warmup_epochs=0)
        out[bp] = loop_rate(cfg, data, size)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return out


def compare(plan: dict[str, Any], epochs: int, overhead: float, records: list[dict[str, Any]]
            ) -> list[dict[str, Any]]:
    """Estimated against measured training seconds of every trained model."""
    rows = []
    for r in records:
        bp = r["branch_point"]
        rows.append({"branch_point": bp, "overrides": r["overrides"], "fold": r["fold"],
                     "epochs_planned": epochs, "epochs_run": r.get("epochs_run"),
                     "estimated_train_s": round(overhead + epochs * plan["epoch_s"][bp], 2),
                     "measured_train_s": r.get("train_time_s")})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder for every file written")
    p.add_argument("--budget-s", type=float, default=540.0, help="wall-clock seconds for everything")
    p.add_argument("--tiny", action="store_true", help="the whole script on a CPU in seconds (plumbing)")
    p.add_argument("--patients", type=int, default=None, help="synthetic patients (default 1200; tiny 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="default cuda (tiny: cpu)")
    p.add_argument("--width", type=float, default=None, help="network width (default 1.0; tiny 0.0625)")
    p.add_argument("--batch", type=int, default=None, help="training batch (default 256; tiny 6)")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: scaled_lr of the tier's 1e-2 at batch 64 to --batch)")
    p.add_argument("--warmup-epochs", type=int, default=2, help="linear warm-up epochs (default 2)")
    p.add_argument("--compile", action="store_true", help="torch.compile every model (compiling costs "
                   "seconds per model; the measured rates include it only through the timed epoch)")
    p.add_argument("--min-epochs", type=int, default=None, help="default 18 (tiny 1)")
    p.add_argument("--max-epochs", type=int, default=None, help="default 60 (tiny 1)")
    p.add_argument("--step-overhead", type=float, default=1.1,
                   help="factor on the measured loop time for a real epoch (default 1.1: the rates "
                   "come from the real loop)")
    p.add_argument("--rate-discs", type=int, default=None,
                   help="random discs the rates are measured on (default 2048; tiny 6)")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                   help="processes synthesising the cohort (default: all cores but one; tiny 1)")
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/spinenet_paper_data"))
    args = p.parse_args(argv)
    tiny = args.tiny
    args.patients = args.patients or (3 if tiny else 1200)
    args.device = args.device or ("cpu" if tiny else "cuda")
    min_epochs = args.min_epochs or (1 if tiny else 18)
    max_epochs = args.max_epochs or (1 if tiny else 60)
    if min_epochs > max_epochs:
        raise ConfigError(f"--min-epochs {min_epochs} is more than --max-epochs {max_epochs}")
    workers = 1 if tiny else args.workers

    t0 = time.perf_counter()
    deadline = t0 + args.budget_s
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    config = sweep_config(args)
    device = resolve_device(config.device)
    session: dict[str, Any] = {
        "command": " ".join(sys.argv) if argv is None else "converged_sweep_gpu.py " + " ".join(argv),
        "commit": git_commit(), "machine": machine_description(), "device": device.type, "tiny": tiny,
        "budget_s": args.budget_s, "min_epochs": min_epochs, "config": config.to_dict(),
        "timings_s": {}, "notes": [],
    }
    if device.type != "cuda":
        session["note"] = CPU_NOTE + " (and the sweep's accuracies at this size mean nothing)"

    def save() -> None:
        (out / SESSION_FILE).write_text(json.dumps(session, indent=2, default=str) + "\n")

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f} s] {msg}", flush=True)

    # 1. the cohort on the CPUs, 2. the loop's rate of every branch point on the device meanwhile
    gen = start_cohort(args.patients, args.seed, workers, args.data_dir)
    log(f"synthesising {args.patients} patients with {workers} processes")
    models = sweep_models("all")
    needed = [bp for bp in BRANCH_POINTS if bp in models]
    measured = measure_rates(config, needed, args.rate_discs or (6 if tiny else 2048))
    rates = {bp: r["samples_per_s"] for bp, r in measured.items()}
    session["throughput"] = {"what": "the real training loop, sweep config, random discs, last of 2 epochs",
                             "per_branch_point": measured}
    session["throughput_samples_per_s"] = rates
    session["timings_s"]["throughput"] = round(time.perf_counter() - t0, 1)
    log("loop throughput (samples/s): " + ", ".join(f"{bp} {r:.0f}" for bp, r in rates.items()))
    save()
    data = wait_for_cohort(gen, args, session, save, log, t0)
    if data is None:
        return 1

    # 3. the epochs that fit
    tr, va, te = patient_split(data.patients, args.seed)
    overhead = model_overhead_s(config, models[0], device, len(tr))
    left = deadline - time.perf_counter() - 15  # writing, a margin
    epochs, plan = plan_epochs(models, rates, len(tr), len(va), len(te), left, overhead,
                               step_overhead=args.step_overhead, min_epochs=min_epochs, max_epochs=max_epochs)
    fit = math.floor((left - plan["fixed_s"]) / plan["per_epoch_all_models_s"])
    plan.update(model_overhead_s=overhead, epochs_that_fit=fit, fits=fit >= min_epochs)
    if not plan["fits"]:
        session["notes"].append(f"only {fit} epochs per model fit the budget, fewer than {min_epochs}: "
                                f"trained {epochs}; late models may stop early (see epochs_run)")
    session["epochs"], session["plan"] = epochs, plan
    log(f"{epochs} epochs per model ({fit} fit; estimated sweep {plan['estimated_sweep_s']:.0f} s "
        f"of {left:.0f} s left)")
    save()

    # 4. the sweep
    runner = Runner(config.replace(max_epochs=epochs), data=data, log=log, max_eval_discs=2 if tiny else None,
                    train_fn=capped_train_fn(session, plan["epoch_s"], epochs, deadline))
    t_sweep = time.perf_counter()
    fast = {k: config.to_dict()[k] for k in ("batch_size", "lr", "warmup_epochs", "device_data",
                                             "fused_optimizer", "compile", "width", "eval_batch_size")}
    paths = run_experiment("all", "paper", device=config.device, seed=args.seed, out_dir=out, runner=runner,
                           log=log, n_patients=args.patients, max_epochs=epochs, **fast)
    session["timings_s"]["sweep"] = round(time.perf_counter() - t_sweep, 1)
    session["timings_s"]["total"] = round(time.perf_counter() - t0, 1)
    session["estimated_vs_measured_s"] = {
        "sweep": {"estimated": round(plan["estimated_sweep_s"], 1),
                  "measured": session["timings_s"]["sweep"]},
        "models": compare(plan, epochs, overhead, runner.run_records())}
    session["models"] = runner.run_records()
    session["results"] = {k: str(v) for k, v in paths.items()}
    save()
    log(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
