"""``spinenet-lite localise`` (vertebra corners of one study) and ``spinenet-lite train-localiser``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ..errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``localise`` and ``train-localiser`` sub-commands."""
    p = subparsers.add_parser(
        "localise", help="find the vertebrae T12..S1 (corners per slice) in one study",
        description="Run the vertebra localiser on a sagittal series (DICOM folder or file) or a 2D "
                    "image (PNG/JPEG/TIFF, with --spacing) and write the corners (7, S, 4, 2) and the "
                    "disc levels found to an .npz that `spinenet-lite extract --corners` reads.")
    p.add_argument("study", help="DICOM folder or file, or a 2D image file")
    p.add_argument("--spacing", type=float, metavar="MM", help="pixel spacing (mm) of a 2D image")
    p.add_argument("--weights", help="localiser weights (default data/weights/localiser.pt)")
    p.add_argument("--min-discs", type=int, default=1,
                   help="fail when fewer disc levels are found (default 1)")
    p.add_argument("--device", default="cpu", help='"cpu" (default) or "cuda"')
    p.add_argument("--out", required=True, help="output .npz (corners, levels, vertebrae)")
    p.set_defaults(func=run_localise)

    t = subparsers.add_parser(
        "train-localiser", help="train the vertebra localiser (SPIDER T2 SPACE + synthetic studies)",
        description="Train the localiser's small U-Net on SPIDER T2 SPACE body masks (patient split "
                    "20/4/6) and synthetic studies, save the weights, measure on the held-out patients "
                    "and synthetic studies, and write data/results/localiser_<tier>.json.")
    t.add_argument("--out", required=True, help="weights file to write (e.g. data/weights/localiser.pt)")
    t.add_argument("--epochs", type=int, default=None, help="epochs of 80 steps (default 5)")
    t.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    t.add_argument("--spider-dir", default=None, help="SPIDER subset folder (default: the shared one)")
    t.add_argument("--tier", default="teaching", help="results file name part (default teaching)")
    t.add_argument("--no-results", action="store_true", help="do not write the results file")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=run_train_localiser)

    c = subparsers.add_parser(
        "score-localiser", help="the localiser's level naming on every SPIDER split, under each naming rule",
        description="Score the localiser's disc levels against the SPIDER T2 SPACE masks (whose lowest "
                    "labelled body is L5) on its training, validation and test patients, with the lowest "
                    "body found named S1 (the rule before) and with lowest='auto' (L5 on a real scan), and "
                    "write data/results/localiser_levels_<tier>.json.")
    c.add_argument("--weights", default=None, help="localiser weights (default data/weights/localiser.pt)")
    c.add_argument("--spider-dir", default=None, help="SPIDER subset folder (default: the shared one)")
    c.add_argument("--tier", default="teaching", help="results file name part (default teaching)")
    c.add_argument("--no-results", action="store_true", help="do not write the results file")
    c.set_defaults(func=run_score_localiser)


def _load_study(path: str, spacing: float | None):
    from ..io.dicom import load_scan
    from ..io.image import load_image

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p} does not exist; give a DICOM folder or file, or an image with --spacing")
    if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
        if spacing is None:
            raise InputError(f"{p} is a 2D image: give its pixel spacing in mm with --spacing")
        return load_image(p, spacing)
    return load_scan(p)


def run_localise(args: argparse.Namespace) -> int:
    """Handler of ``localise``."""
    from ..localise.inference import localise
    from ..tasks import VERTEBRAE

    if args.spacing is not None and not args.spacing > 0:
        raise InputError(f"--spacing must be a positive number of mm; got {args.spacing}")
    scan = _load_study(args.study, args.spacing)
    loc = localise(scan, weights=args.weights, device=args.device, min_discs=args.min_discs)
    for msg in loc.warnings:
        print(f"warning: {msg}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, corners=loc.corners, levels=np.array(loc.levels), vertebrae=np.array(VERTEBRAE),
                        pixel_spacing=np.array(scan.pixel_spacing), n_bodies=loc.n_bodies)
    print(f"{len(loc.levels)} disc levels ({', '.join(loc.levels)}) on {scan.n_slices} slice(s) -> {out}")
    return 0


def run_train_localiser(args: argparse.Namespace) -> int:
    """Handler of ``train-localiser``."""
    import os

    import torch

    from ..localise.training import LocaliserTrainConfig, run_training

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
    cfg = LocaliserTrainConfig()
    if args.epochs is not None:
        if args.epochs < 1:
            raise InputError(f"--epochs must be at least 1; got {args.epochs}")
        cfg.epochs = args.epochs
    command = f"spinenet-lite train-localiser --out {args.out} --seed {args.seed}" + \
        (f" --epochs {args.epochs}" if args.epochs is not None else "")
    res = run_training(args.out, cfg, seed=args.seed, spider_dir=args.spider_dir, progress=not args.quiet,
                       results_tier=None if args.no_results else args.tier, command=command)
    for name, r in res["test"].items():
        m = r["mid_slice"]
        print(f"{name}: mid slice found {m['found']:.1%}, within 3 mm {m['found_within_3mm']:.1%}, "
              f"level accuracy {m['level_accuracy']:.1%}, median error {m['centre_error_mm_median']:.2f} mm")
    print(f"weights -> {args.out} (sha256 {res['sha256']})")
    return 0


def run_score_localiser(args: argparse.Namespace) -> int:
    """Handler of ``score-localiser``."""
    from ..localise.training import score_levels

    command = "spinenet-lite score-localiser" + (f" --weights {args.weights}" if args.weights else "")
    t0 = time.perf_counter()
    res = score_levels(args.weights, args.spider_dir, results_tier=None if args.no_results else args.tier,
                       command=command)
    for rule, per_split in res["spider"].items():
        print(f"{rule}: " + ", ".join(f"{part} {r['mid_slice']['level_accuracy']:.1%}"
                                      for part, r in per_split.items()) + " (level accuracy, middle slice)")
    if not args.no_results:
        _write_levels_section(res, args.tier, command, time.perf_counter() - t0)
    return 0


def _write_levels_section(res: dict, tier: str, command: str, wall_time_s: float) -> None:
    """The level naming of the rule in use (``lowest="auto"``) as ``results.levels`` of
    ``spider_recipes_<tier>.json``, beside the real-scan recipes: middle-slice level accuracy
    per SPIDER split (the rule was chosen on ``train`` only). No study is flagged or refused:
    no cross-check of the count from the lowest body exists yet, and ``flagging`` says so."""
    from ..experiments.spider_baseline import write_recipes_section

    auto = res["spider"]["auto"]
    numbers = {part: float(r["mid_slice"]["level_accuracy"]) for part, r in auto.items()}
    details = {"rule": "auto (the lowest body found on a real scan is L5)", "tuned_on": "train",
               "per_split": auto, "flagging": "none: no cross-check of the level count exists yet",
               "source": f"localiser_levels_{tier}.json",
               "command": command}
    write_recipes_section("levels", numbers, details, tier=tier, config={"rule": "auto", "command": command},
                          seed=0, wall_time_s=wall_time_s)
