"""The paper tier of the experiments on one GPU, inside a fixed wall-clock budget.

A GPU lease is short, so one command does the whole device job:

1. synthesise the cohort on every CPU core but one (a child process), while
2. the GPU measures full training steps of every branch point at the paper's width
   (``train_throughput.run``: samples/s, TFLOP/s, fraction of the measured bf16 peak);
3. the number of epochs that fits what is left of the budget is chosen from those
   measurements (every model of the sweep trains the same number of epochs);
4. ``experiment all`` runs at tier ``paper`` (Table 2, ablations, Lootus: 16 models,
   54-view test-time augmentation) and writes the results files.

A model that is still training when its share of the budget (twice the estimate) or the
whole budget is spent stops after the epoch in progress; ``epochs_run`` in each results
file's ``models`` says how many epochs every model ran. A model whose loss diverges is
retrained once with a ten times smaller learning rate (recorded in the session file).

Usage (the command that made the committed ``*_paper`` results is in
``data/results/README.md``)::

    python benchmarks/paper_tier_gpu.py --out DIR [--patients 1200] [--budget-s 470]

Writes to ``DIR``: ``{table2,ablations,lootus}_paper.{json,md}``,
``train_throughput_cuda.json`` and ``paper_tier_session.json`` (timings, chosen epochs,
estimated against measured seconds, the run of every model). ``--device cpu`` with a tiny
``--width`` and a few ``--patients`` checks the whole script on a laptop.

``benchmarks/converged_sweep_gpu.py`` is the same job with the training loop's fast path
(device-resident data, fused SGD, batch 256, scaled learning rate and warm-up), planned for at
least 18 epochs per model; it reuses :func:`start_cohort`, :func:`model_overhead_s`,
:func:`capped_train_fn`, :func:`plan_epochs` and :func:`sweep_models`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from train_throughput import run as throughput_run  # benchmarks/ is on sys.path as the script's folder

from spinenet_lite.config import resolve_device
from spinenet_lite.datasets.cache import load_cache, patient_split
from spinenet_lite.datasets.synthetic import DATA_DIR_ENV, dataset_name
from spinenet_lite.errors import ConfigError
from spinenet_lite.experiments.paper import (
    ABLATIONS,
    BASELINE_BRANCH_POINT,
    N_FOLDS,
    Runner,
    experiment_config,
    run_experiment,
)
from spinenet_lite.results import git_commit, machine_description
from spinenet_lite.tasks import BRANCH_POINTS

N_VIEWS = 54
FORWARD_SHARE = 1 / 3  # a forward pass costs about a third of a training step


def sweep_models(experiment: str) -> list[str]:
    """Branch point of every model ``experiment`` trains (``all``: 16, Table 2 and two
    ablations; ``convergence`` or ``lootus``: the two conv5 baselines)."""
    baseline = [BASELINE_BRANCH_POINT] * N_FOLDS
    if experiment in ("convergence", "lootus"):
        return baseline
    trained_ablations = [v for v, (over, _) in ABLATIONS.items() if over]  # no_tta re-scores the baseline
    ablation_models = baseline * len(trained_ablations)
    if experiment == "ablations":
        return baseline + ablation_models
    return [bp for bp in BRANCH_POINTS for _ in range(N_FOLDS)] + (
        ablation_models if experiment == "all" else []
    )


def plan_epochs(
    models: list[str],
    rates: dict[str, float],
    n_train: int,
    n_val: int,
    n_test: int,
    seconds: float,
    model_overhead_s: float,
    step_overhead: float,
    min_epochs: int,
    max_epochs: int,
) -> tuple[int, dict[str, Any]]:
    """The epochs every model of the sweep can train within ``seconds``.

    Parameters
    ----------
    models : list of str
        Branch point of every model to train (:func:`sweep_models`).
    rates : dict
        Training samples per second per branch point (measured).
    n_train, n_val, n_test : int
        Discs of a fold's training, validation and test sets.
    seconds : float
        Wall-clock seconds left for training and scoring all models.
    model_overhead_s : float
        Seconds per model outside the epochs (building the network, copying the data).
    step_overhead : float
        Factor on the measured step time for what a real epoch adds (batch gathering,
        per-step metrics).
    min_epochs, max_epochs : int

    Returns
    -------
    epochs : int
    plan : dict
        ``epoch_s`` and ``score_s`` per branch point, totals.
    """
    epoch_s = {bp: step_overhead * n_train / r + n_val / (r / FORWARD_SHARE) for bp, r in rates.items()}
    score_s = {bp: n_test * N_VIEWS / (r / FORWARD_SHARE) for bp, r in rates.items()}
    fixed = sum(score_s[bp] + model_overhead_s for bp in models)
    per_epoch = sum(epoch_s[bp] for bp in models)
    epochs = int(max(min_epochs, min(max_epochs, math.floor((seconds - fixed) / per_epoch))))
    return epochs, {
        "epoch_s": epoch_s,
        "score_s": score_s,
        "fixed_s": fixed,
        "per_epoch_all_models_s": per_epoch,
        "estimated_sweep_s": fixed + epochs * per_epoch,
        "seconds_available": seconds,
    }


def start_cohort(patients: int, seed: int, workers: int, data_dir: Path) -> subprocess.Popen:
    """Synthesise the cohort of ``patients`` patients (``seed``) into ``data_dir`` in a child
    process of ``workers`` single-threaded processes (an existing cache is reused)."""
    env = dict(
        os.environ,
        **{
            DATA_DIR_ENV: str(data_dir),
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
        },
    )
    code = (
        "import sys; from spinenet_lite.datasets.synthetic import synthetic_dataset; "
        "synthetic_dataset(int(sys.argv[1]), int(sys.argv[2]), workers=int(sys.argv[3]), progress=False)"
    )
    return subprocess.Popen([sys.executable, "-c", code, str(patients), str(seed), str(workers)], env=env)


def wait_for_cohort(gen: subprocess.Popen, args: argparse.Namespace, session: dict[str, Any], save: Any,
                    log: Any, t0: float) -> Any:
    """Wait for :func:`start_cohort`'s process: the disc cache, or None (noted in ``session``) on failure."""
    rc = gen.wait()
    if rc != 0:
        session["notes"].append(f"cohort synthesis failed with exit status {rc}")
        save()
        log(f"cohort synthesis failed (exit status {rc})")
        return None
    data = load_cache(args.data_dir / "cache" / dataset_name(args.patients, args.seed))
    session["timings_s"]["cohort"] = round(time.perf_counter() - t0, 1)
    log(f"cohort ready: {len(data.labels)} discs")
    return data


def model_overhead_s(config: Any, branch_point: str, device: torch.device, n_train: int) -> float:
    """Seconds per model outside its epochs: twice the time to build ``branch_point``'s network
    on ``device``, plus copying ``n_train`` discs at ~1 GB/s."""
    from spinenet_lite.engine.training import build_model

    t_build = time.perf_counter()
    build_model(config.replace(branch_point=branch_point)).to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    return 2 * (time.perf_counter() - t_build) + n_train * 9 * 112 * 224 / 1e9


def capped_train_fn(session: dict[str, Any], epoch_s: dict[str, float], epochs: int, deadline: float) -> Any:
    """A ``Runner`` ``train_fn``: :func:`~spinenet_lite.engine.training.train` stopped after the
    epoch in progress once the model has used twice its planned share (``epochs`` x
    ``epoch_s[branch_point]`` seconds, + 10) or the budget ends (``deadline - 20``,
    ``time.perf_counter()`` seconds); a diverged model is retrained once at a tenth of the
    learning rate. Every stop and retraining goes to ``session["notes"]``."""
    from spinenet_lite.engine.training import train

    def train_fn(cfg: Any, train_data: Any, val_data: Any) -> Any:
        share = 2 * epochs * epoch_s[cfg.branch_point] + 10
        started = time.perf_counter()

        def cap(record: dict, model: Any) -> bool:
            now = time.perf_counter()
            if now - started > share or now > deadline - 20:
                why = "its time share" if now - started > share else "the whole budget"
                session["notes"].append(
                    f"{cfg.branch_point} seed {cfg.seed} (class_balance={cfg.class_balance}, "
                    f"train_augment={cfg.train_augment}) stopped "
                    f"after epoch {record['epoch']} of {cfg.max_epochs}: {why} was spent "
                    f"({now - started:.0f} s trained, share {share:.0f} s)"
                )
                return True
            return False

        try:
            return train(cfg, train_data, val_data, progress=False, callbacks=[cap])
        except ConfigError as exc:
            if "training loss became" not in str(exc):
                raise
            session["notes"].append(
                f"{cfg.branch_point} seed {cfg.seed}: {exc}; retrained with lr {cfg.lr / 10}"
            )
            return train(cfg.replace(lr=cfg.lr / 10), train_data, val_data, progress=False, callbacks=[cap])

    return train_fn


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder for every file written")
    p.add_argument(
        "--experiment",
        default="all",
        choices=("all", "table2", "ablations", "lootus", "convergence"),
        help="what to run (default all: table2, ablations, lootus)",
    )
    p.add_argument(
        "--extra-batches",
        type=int,
        nargs="*",
        default=[],
        help="also measure the throughput at these batch sizes (not used for planning)",
    )
    p.add_argument("--patients", type=int, default=1200, help="synthetic patients (default 1200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget-s", type=float, default=470.0, help="wall-clock seconds for everything")
    p.add_argument("--device", default="cuda")
    p.add_argument("--width", type=float, default=None, help="network width (default: the tier's, 1.0)")
    p.add_argument("--batch", type=int, default=None, help="training batch (default: the tier's)")
    p.add_argument(
        "--step-overhead",
        type=float,
        default=1.5,
        help="factor on the benchmark's step time for a real epoch (default 1.5; measured 1.2-1.6 "
        "on an H200)",
    )
    p.add_argument("--min-epochs", type=int, default=3)
    p.add_argument("--max-epochs", type=int, default=60)
    p.add_argument(
        "--workers",
        type=int,
        default=max(1, (os.cpu_count() or 2) - 1),
        help="processes synthesising the cohort (default: all cores but one)",
    )
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/spinenet_paper_data"))
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    deadline = t0 + args.budget_s
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    session: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "commit": git_commit(),
        "machine": machine_description(),
        "budget_s": args.budget_s,
        "timings_s": {},
        "notes": [],
    }

    def save() -> None:
        (out / "paper_tier_session.json").write_text(json.dumps(session, indent=2, default=str) + "\n")

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f} s] {msg}", flush=True)

    config = experiment_config(
        "paper",
        device=args.device,
        seed=args.seed,
        n_patients=args.patients,
        width=args.width,
        batch_size=args.batch,
    )
    device = resolve_device(config.device)

    # 1. the cohort, on the CPUs, in a child process
    gen = start_cohort(args.patients, args.seed, args.workers, args.data_dir)
    log(f"synthesising {args.patients} patients with {args.workers} processes")

    # 2. training throughput of every branch point, on the GPU meanwhile
    cuda = device.type == "cuda"
    models = sweep_models(args.experiment)
    needed = [bp for bp in BRANCH_POINTS if bp in models]
    bench = throughput_run(
        device, [config.width], needed, config.batch_size, iters=10 if cuda else 1, warmup=3 if cuda else 1
    )
    for batch in args.extra_batches:
        more = throughput_run(
            device, [config.width], needed, batch, iters=10 if cuda else 1, warmup=3 if cuda else 1
        )
        bench["results"] += more["results"]
    bench["note"] = f"measured while {args.workers} processes synthesised the cohort on the CPUs"
    (out / f"train_throughput_{device.type}.json").write_text(json.dumps(bench, indent=2) + "\n")
    rates = {
        r["branch_point"]: r["samples_per_s"] for r in bench["results"] if r["batch"] == config.batch_size
    }
    session["throughput_samples_per_s"] = rates
    session["timings_s"]["throughput"] = round(time.perf_counter() - t0, 1)
    log("throughput (samples/s): " + ", ".join(f"{bp} {r:.0f}" for bp, r in rates.items()))
    save()

    data = wait_for_cohort(gen, args, session, save, log, t0)
    if data is None:
        return 1

    # 3. epochs that fit
    tr, va, te = patient_split(data.patients, args.seed)
    overhead = model_overhead_s(config, models[0], device, len(tr))  # the first (for `all` the largest) model
    left = deadline - time.perf_counter() - 15  # writing, a margin
    epochs, plan = plan_epochs(
        models,
        rates,
        len(tr),
        len(va),
        len(te),
        left,
        overhead,
        step_overhead=args.step_overhead,
        min_epochs=args.min_epochs,
        max_epochs=args.max_epochs,
    )
    plan["model_overhead_s"] = overhead
    session["epochs"], session["plan"] = epochs, plan
    log(f"{epochs} epochs per model (estimated sweep {plan['estimated_sweep_s']:.0f} s of {left:.0f} s left)")
    save()

    # 4. the sweep
    train_fn = capped_train_fn(session, plan["epoch_s"], epochs, deadline)
    runner = Runner(config.replace(max_epochs=epochs), data=data, train_fn=train_fn, log=log)
    t_sweep = time.perf_counter()
    paths = run_experiment(
        args.experiment,
        "paper",
        device=args.device,
        seed=args.seed,
        out_dir=out,
        runner=runner,
        log=log,
        n_patients=args.patients,
        max_epochs=epochs,
        width=args.width,
        batch_size=args.batch,
    )
    session["timings_s"]["sweep"] = round(time.perf_counter() - t_sweep, 1)
    session["timings_s"]["total"] = round(time.perf_counter() - t0, 1)
    session["models"] = runner.run_records()
    session["results"] = {k: str(v) for k, v in paths.items()}
    save()
    log(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
