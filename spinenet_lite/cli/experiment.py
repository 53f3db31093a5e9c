"""``spinenet-lite experiment NAME --tier T``: the paper's experiments reproduced.

``table2``, ``ablations``, ``lootus`` and ``all`` run through
:func:`spinenet_lite.experiments.paper.run_experiment` (sized per tier by
:data:`spinenet_lite.experiments.paper.EXPERIMENT_TIERS`); ``hotspot_quality`` through
:func:`spinenet_lite.experiments.hotspot_quality.run_hotspot_quality`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..experiments.paper import ALL_EXPERIMENTS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``experiment`` sub-command."""
    p = subparsers.add_parser(
        "experiment",
        help="reproduce Table 2, the ablations, Lootus's protocol or the hotspot quality study",
        description=(
            "Train two models per setting (validation and test sets swapped), score them with "
            "54-view test-time augmentation and write data/results/<name>_<tier>.json and a "
            "Markdown table. `all` runs table2, ablations and lootus, training the conv5 models "
            "once. `hotspot_quality` scores the evidence hotspots against the lesion masks."
        ),
    )
    p.add_argument("name", choices=(*ALL_EXPERIMENTS, "all"), help="experiment to run")
    p.add_argument("--tier", default="ci", choices=("ci", "teaching", "paper"),
                   help="size of the run (default ci: seconds on a CPU)")
    p.add_argument("--device", default="auto", help='"auto" (default), "cpu" or "cuda"')
    p.add_argument("--seed", type=int, default=0, help="seed of cohort, split and models (default 0)")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="results folder (default: $SPINENET_RESULTS_DIR, else data/results of a checkout, "
                        "else ./results)")
    p.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                   help="where synthetic cohorts and disc caches are made (default: data/ of a checkout, "
                        "else the user cache; $SPINENET_DATA_DIR)")
    p.add_argument("--patients", type=int, default=None,
                   help="override the tier's number of patients (not for hotspot_quality)")
    p.add_argument("--max-epochs", type=int, default=None,
                   help="override the tier's number of epochs (not for hotspot_quality)")
    p.add_argument("--width", type=float, default=None,
                   help="override the tier's network width (not for hotspot_quality)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--max-discs", type=int, default=None,
                   help="hotspot_quality only: discs scored per task (default: the tier's)")
    p.add_argument("--weights", type=Path, default=None,
                   help="hotspot_quality only: a trained checkpoint (e.g. data/runs/teaching_conv5_s0/"
                        "best.pt) instead of training one; it must come from the same cohort seed and "
                        "split seed")
    p.add_argument("--eval-patients", type=int, default=None,
                   help="hotspot_quality only: score discs of N new patients (cohort seed + 1) that "
                        "no model saw, instead of the test split")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``spinenet-lite experiment``: :func:`_run` with ``--data-dir`` as the data root."""
    from ..paths import use_data_dir

    with use_data_dir(args.data_dir):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError

    if args.name == "hotspot_quality":
        given = [f"--{k.replace('_', '-')}" for k in ("patients", "max_epochs", "width")
                 if getattr(args, k) is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} do not apply to hotspot_quality (its sizes come from "
                              "the tier); drop them or use --max-discs")
        if args.threads is not None:
            import torch

            torch.set_num_threads(args.threads)
        from ..experiments.hotspot_quality import run_hotspot_quality

        model = eval_data = None
        if args.weights is not None:
            from ..engine.checkpoint import load_model

            model = load_model(args.weights)
        if args.eval_patients is not None:
            from ..datasets.synthetic import synthetic_dataset

            eval_data = synthetic_dataset(args.eval_patients, args.seed + 1)
        run_hotspot_quality(args.tier, seed=args.seed, device=args.device, max_discs=args.max_discs,
                            out_dir=args.out_dir, model=model, eval_data=eval_data)
        return 0
    for flag in ("max_discs", "weights", "eval_patients"):
        if getattr(args, flag) is not None:
            raise ConfigError(f"--{flag.replace('_', '-')} applies to hotspot_quality only; drop it")
    from ..experiments.paper import run_experiment

    run_experiment(args.name, args.tier, device=args.device, seed=args.seed, out_dir=args.out_dir,
                   n_patients=args.patients, max_epochs=args.max_epochs, width=args.width,
                   num_threads=args.threads)
    return 0
