"""``spinenet-lite evaluate``: score trained weights on a disc cache split."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..errors import InputError

SPLITS = ("train", "val", "test", "all")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` sub-command."""
    p = subparsers.add_parser(
        "evaluate",
        help="score trained weights on a disc cache (per-class accuracy, confusion, Lootus)",
        description=(
            "Average per-class accuracy, confusion matrices and Lootus's protocol of a trained "
            "model on one patient-level split of a disc cache, with the 54-view test-time "
            "augmentation of the paper, the label-noise ceiling and intra-rater references "
            "(synthetic cohorts) and the paper's numbers beside them."
        ),
    )
    p.add_argument("--weights", required=True, type=Path, help="checkpoint (.pt) written by `train`")
    p.add_argument("--data", required=True, type=Path, help="disc cache folder (`extract-cohort`)")
    p.add_argument("--split", default="test", choices=SPLITS,
                   help="patient-level 80:10:10 split to score (default: test)")
    p.add_argument("--split-seed", "--seed", dest="seed", type=int, default=0,
                   help="seed of the patient split, as `train --split-seed` (default 0)")
    p.add_argument("--out", type=Path, default=None,
                   help="results JSON to write (a Markdown table is written beside it)")
    p.add_argument("--no-tta", action="store_true", help="score the centre view only")
    p.add_argument("--device", default="auto", help='"auto" (default), "cpu" or "cuda"')
    p.add_argument("--batch-size", type=int, default=128, help="inputs per forward pass")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``spinenet-lite evaluate``."""
    from ..config import resolve_device
    from ..datasets.cache import load_cache, patient_split
    from ..engine.checkpoint import load_model
    from ..engine.evaluation import evaluate
    from ..results import git_commit, machine_description, to_jsonable

    if not args.weights.exists():
        raise InputError(f"weights file {args.weights} not found; train one with `spinenet-lite train`")
    start = time.perf_counter()
    device = resolve_device(args.device)
    data = load_cache(args.data)
    model = load_model(args.weights, map_location=device)
    if args.split == "all":
        idx = None
    else:
        idx = dict(zip(("train", "val", "test"), patient_split(data.patients, args.seed)))[args.split]
        if len(idx) == 0:
            raise InputError(f"the {args.split} split of {args.data} is empty (too few patients); "
                             "use --split all")
    result = evaluate(model, data, idx=idx, tta=not args.no_tta, batch_size=args.batch_size,
                      device=device, progress=None)
    md = result.to_markdown()
    print(md, end="")
    if args.out is not None:
        record = {
            "experiment": "evaluate",
            "weights": str(args.weights),
            "data": str(args.data),
            "split": args.split,
            "seed": args.seed,
            "commit": git_commit(),
            "device": str(device),
            "machine": machine_description(),
            "wall_time_s": round(time.perf_counter() - start, 2),
            "results": result.to_dict(),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(to_jsonable(record), indent=2) + "\n")
        args.out.with_suffix(".md").write_text(md)
        print(f"wrote {args.out}")
    return 0
