"""``spinenet-lite experiment NAME --tier T``: the paper's experiments reproduced."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..experiments import EXPERIMENTS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``experiment`` sub-command."""
    p = subparsers.add_parser(
        "experiment",
        help="reproduce Table 2, the ablations or Lootus's protocol on the synthetic cohort",
        description=(
            "Train two models per setting (validation and test sets swapped), score them with "
            "54-view test-time augmentation and write data/results/<name>_<tier>.json and a "
            "Markdown table. `all` runs every experiment, training the conv5 models once."
        ),
    )
    p.add_argument("name", choices=(*EXPERIMENTS, "all"), help="experiment to run")
    p.add_argument("--tier", default="ci", choices=("ci", "teaching", "paper"),
                   help="size of the run (default ci: seconds on a CPU)")
    p.add_argument("--device", default="auto", help='"auto" (default), "cpu" or "cuda"')
    p.add_argument("--seed", type=int, default=0, help="seed of cohort, split and models (default 0)")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="results folder (default data/results or $SPINENET_RESULTS_DIR)")
    p.add_argument("--patients", type=int, default=None, help="override the tier's number of patients")
    p.add_argument("--max-epochs", type=int, default=None, help="override the tier's number of epochs")
    p.add_argument("--width", type=float, default=None, help="override the tier's network width")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``spinenet-lite experiment``."""
    from ..experiments import run_experiment

    run_experiment(args.name, args.tier, device=args.device, seed=args.seed, out_dir=args.out_dir,
                   n_patients=args.patients, max_epochs=args.max_epochs, width=args.width)
    return 0
