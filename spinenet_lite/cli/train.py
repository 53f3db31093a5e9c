"""``spinenet-lite train``: train SpineNet at a tier on a disc cache or a synthetic cohort."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..tasks import BRANCH_POINTS, TASK_NAMES


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` and ``export-weights`` sub-commands."""
    from ..config import TIER_NAMES

    e = subparsers.add_parser(
        "export-weights",
        help="write a compact (float16, no optimiser state) copy of a checkpoint for shipping",
        description="Keep what inference needs from a training checkpoint (best.pt), store the weights "
                    "as float16, and print the sha256 to record in spinenet_lite/engine/weights.py.",
    )
    e.add_argument("checkpoint", type=Path, help="best.pt or last.pt written by `spinenet-lite train`")
    e.add_argument("out", type=Path, help="the file to write, e.g. data/weights/spinenet_synthetic.pt")
    e.add_argument("--float32", action="store_true", help="keep float32 weights (twice the size)")
    e.set_defaults(func=export)

    p = subparsers.add_parser(
        "train",
        help="train SpineNet (checkpoints, history, resume)",
        description="Train SpineNet at a tier. Without --data a synthetic cohort of the tier's size is "
                    "generated (cached under --data-dir) and split 80:10:10 by patient with --split-seed. "
                    "The run goes to --out (default data/runs/<tier>_<branch>_s<seed>/ in a checkout, "
                    "./runs/... elsewhere): last.pt, best.pt, history.csv/json, config.yaml and "
                    "summary.json (test per-class accuracy per task; the model and split seeds).",
    )
    p.add_argument("--tier", choices=TIER_NAMES, default="teaching",
                   help="size of the run (default teaching)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", type=Path, nargs="+", metavar="CACHE",
                     help="disc cache folder(s) written by `spinenet-lite extract-cohort`; several are "
                          "trained on together (patient ids prefixed by the folder name)")
    src.add_argument("--patients", type=int, metavar="N",
                     help="number of synthetic patients (default: the tier's)")
    p.add_argument("--out", type=Path, metavar="DIR", help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--max-epochs", type=int, metavar="E")
    p.add_argument("--width", type=float, metavar="W", help="channel multiplier (1.0 = paper)")
    p.add_argument("--branch-point", choices=BRANCH_POINTS, metavar="B",
                   help=f"one of {', '.join(BRANCH_POINTS)}")
    p.add_argument("--batch-size", type=int, metavar="B")
    p.add_argument("--lr", type=float, metavar="LR")
    p.add_argument("--device", metavar="D", help='"auto" (default), "cpu", "cuda"')
    p.add_argument("--seed", type=int, metavar="S",
                   help="model seed: initial weights, batch order, augmentation, dropout "
                        "(default: the tier's)")
    p.add_argument("--split-seed", type=int, default=0, metavar="S",
                   help="seed of the 80:10:10 patient split (default 0; `evaluate --seed` takes the same)")
    p.add_argument("--cohort", nargs="+", default=["standard"], metavar="PRESET",
                   help="synthetic cohort preset(s) without --data: standard (default), decorrelated "
                        "(endplate and marrow findings independent of degeneration, chapter 07); "
                        "several are trained on together, --patients of each")
    p.add_argument("--cohort-seed", type=int, nargs="+", default=[0], metavar="S",
                   help="seed of the synthetic cohort, or one per --cohort (default 0)")
    p.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                   help="where the synthetic cohort and its disc cache are made (default: data/ of a "
                        "checkout, else the user cache; $SPINENET_DATA_DIR)")
    p.add_argument("--no-class-balance", action="store_true", help="plain (unweighted) loss")
    p.add_argument("--no-augment", action="store_true", help="no training augmentation")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def default_run_dir(tier: str, branch_point: str, seed: int, split_seed: int = 0) -> Path:
    """``<runs>/<tier>_<branch>_s<seed>`` (``..._split<k>`` for split seed ``k != 0``).

    ``<runs>`` is :func:`spinenet_lite.paths.runs_dir`: ``data/runs`` of a checkout, else ``./runs``.
    """
    from ..paths import runs_dir

    suffix = f"_split{split_seed}" if split_seed else ""
    return runs_dir() / f"{tier}_{branch_point}_s{seed}{suffix}"


def _training_data(args: argparse.Namespace, n_patients: int) -> tuple[Any, str]:
    """The disc dataset ``train`` fits (one cache or cohort, or several concatenated) and its name."""
    from ..datasets.cache import concat_datasets, load_cache
    from ..datasets.synthetic import dataset_name, synthetic_dataset
    from ..phantom import COHORT_PRESETS

    if args.data is not None:
        parts = [load_cache(d) for d in args.data]
        names = [Path(d).name for d in args.data]
        if len(set(names)) != len(names):
            raise InputError(f"--data folders need distinct names; got {names}")
    else:
        seeds = list(args.cohort_seed)
        if len(seeds) == 1:
            seeds = seeds * len(args.cohort)
        if len(seeds) != len(args.cohort):
            raise InputError(f"give one --cohort-seed, or one per --cohort ({len(args.cohort)}); "
                             f"got {len(seeds)}")
        for preset in args.cohort:
            if preset not in COHORT_PRESETS:
                raise InputError(f"unknown --cohort {preset!r}; use one of {', '.join(COHORT_PRESETS)}")
        names = [dataset_name(n_patients, s, c) for c, s in zip(args.cohort, seeds)]
        if len(set(names)) != len(names):
            raise InputError(f"--cohort / --cohort-seed name the same cohort twice: {names}")
        parts = [synthetic_dataset(n_patients, seed=s, root=args.data_dir, preset=c)
                 for c, s in zip(args.cohort, seeds)]
        names = [f"synthetic:{n}" for n in names]
    if len(parts) == 1:
        return parts[0], (str(args.data[0]) if args.data is not None else
                          f"synthetic:{n_patients}:seed{args.cohort_seed[0]}")
    return concat_datasets(parts, names), " + ".join(names)


def run(args: argparse.Namespace) -> int:
    """Handler of ``spinenet-lite train``; returns the exit code."""
    import numpy as np

    from ..config import get_tier
    from ..datasets.cache import patient_split
    from ..engine.training import evaluate_loss_accuracy, train
    from ..results import git_commit, machine_description, to_jsonable

    if args.patients is not None and args.patients < 1:
        raise InputError(f"--patients must be a positive number of patients, got {args.patients}")
    if args.split_seed < 0:
        raise InputError(f"--split-seed must be a non-negative integer, got {args.split_seed}")
    overrides: dict[str, Any] = {
        "n_patients": args.patients, "max_epochs": args.max_epochs, "width": args.width,
        "branch_point": args.branch_point, "batch_size": args.batch_size, "lr": args.lr,
        "device": args.device, "seed": args.seed,
    }
    if args.no_class_balance:
        overrides["class_balance"] = False
    if args.no_augment:
        overrides["train_augment"] = False
    config = get_tier(args.tier, **overrides)

    data, source = _training_data(args, config.n_patients)
    tr_idx, va_idx, te_idx = patient_split(np.asarray(data.patients), seed=args.split_seed)
    if len(tr_idx) == 0:
        raise InputError(f"{source} has too few patients for a train split; give more (--patients)")
    train_ds = data.subset(tr_idx)
    val_ds = data.subset(va_idx) if len(va_idx) else None
    test_ds = data.subset(te_idx) if len(te_idx) else None

    out = args.out if args.out is not None else default_run_dir(config.tier, config.branch_point, config.seed,
                                                                args.split_seed)
    meta = {"split_seed": args.split_seed}
    result = train(config, train_ds, val_ds, out_dir=out, resume=args.resume, progress=not args.quiet,
                   meta=meta)

    summary: dict[str, Any] = {
        "tier": config.tier, "data": source, "seed": config.seed, "split_seed": args.split_seed,
        "commit": git_commit(), "device": result.device,
        "machine": machine_description(), "wall_time_s": round(result.wall_time_s, 2),
        "best_epoch": result.best_epoch, "epochs": len(result.history),
        "n_discs": {"train": len(tr_idx), "val": len(va_idx), "test": len(te_idx)},
        "config": config.to_dict(),
    }
    if result.best_epoch and result.history:
        best = next((r for r in result.history if r["epoch"] == result.best_epoch), result.history[-1])
        summary["val_per_class_accuracy"] = {t: best.get(f"val_acc_{t}") for t in TASK_NAMES}
    if test_ds is not None:
        ev = evaluate_loss_accuracy(result.model, test_ds, batch_size=config.eval_batch_size)
        summary["test_per_class_accuracy"] = {t: ev[f"acc_{t}"] for t in TASK_NAMES}
        summary["test_mean_per_class_accuracy"] = ev["mean_acc"]
    path = Path(out) / "summary.json"
    tmp = path.with_name(".summary.json.tmp")
    tmp.write_text(json.dumps(to_jsonable(summary), indent=2) + "\n")
    os.replace(tmp, path)

    print(f"trained {config.tier} / {config.branch_point} / width {config.width} on {result.device} "
          f"in {result.wall_time_s:.1f} s ({len(result.history)} epochs, best {result.best_epoch}); "
          f"run in {out}")
    if "test_per_class_accuracy" in summary:
        print("test per-class accuracy (no test-time augmentation):")
        for t, a in summary["test_per_class_accuracy"].items():
            print(f"  {t:<16} {a:.3f}")
    return 0


def export(args: argparse.Namespace) -> int:
    """Handler of ``spinenet-lite export-weights``."""
    from ..engine.checkpoint import export_weights
    from ..engine.weights import sha256_file

    path = export_weights(args.checkpoint, args.out, half=not args.float32)
    size = path.stat().st_size / 2**20
    print(f"wrote {path} ({size:.1f} MiB), sha256 {sha256_file(path)}")
    return 0
