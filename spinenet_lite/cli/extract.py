"""``spinenet-lite extract`` (one study) and ``spinenet-lite extract-cohort`` (a phantom cohort)."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

from ..errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``extract`` and ``extract-cohort`` sub-commands."""
    p = subparsers.add_parser(
        "extract", help="cut the six 9x112x224 disc volumes out of one study",
        description="Cut one normalised (9, 112, 224) volume per disc out of a sagittal series "
                    "(DICOM folder or file), given its vertebra corners.")
    p.add_argument("study", help="DICOM folder or file of one sagittal series")
    p.add_argument("--corners", required=True,
                   help="NPZ with an array 'corners' (7, S, 4, 2) in voxel (row, col), NaN if absent")
    p.add_argument("--out", required=True, help="output .npz (volumes, levels, geometry arrays)")
    p.add_argument("--resample-slice-mm", type=float, default=None,
                   help="for thin-slice series: volume slices this many mm apart")
    p.set_defaults(func=run_extract)

    c = subparsers.add_parser(
        "extract-cohort", help="extract every disc of a synthetic cohort into a disc cache",
        description="Extract all disc volumes, labels and lesion masks of a cohort written by "
                    "`spinenet-lite synth` into a memory-mappable disc cache.")
    c.add_argument("cohort_dir", help="folder written by `spinenet-lite synth`")
    c.add_argument("--out", required=True, help="cache folder to write")
    c.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    c.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    c.set_defaults(func=run_extract_cohort)


def run_extract(args: argparse.Namespace) -> int:
    """Handler of ``extract``."""
    from ..datasets.cache import geometries_to_arrays
    from ..extract.discs import extract_discs
    from ..io.dicom import load_scan

    path = Path(args.corners)
    if not path.is_file():
        raise InputError(f"corners file {path} not found")
    try:
        with np.load(path) as z:
            corners = z["corners"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{path} is not an .npz with an array 'corners' (7, S, 4, 2): {exc}") from None
    scan = load_scan(args.study)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        discs = extract_discs(scan, corners, resample_slice_mm=args.resample_slice_mm)
    for w in caught:
        print(f"warning: {w.message}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, volumes=discs.volumes, levels=np.array(discs.levels),
                        **{f"geometry_{k}": v for k, v in geometries_to_arrays(discs.geometries).items()})
    print(f"{len(discs)} disc volumes ({', '.join(discs.levels)}) -> {out}")
    return 0


def run_extract_cohort(args: argparse.Namespace) -> int:
    """Handler of ``extract-cohort``."""
    from ..datasets.cache import extract_cohort, load_cache

    if args.workers < 1:
        raise InputError(f"--workers must be at least 1; got {args.workers}")
    out = extract_cohort(args.cohort_dir, args.out, workers=args.workers, progress=not args.no_progress)
    ds = load_cache(out)
    print(f"{len(ds)} discs of {len(set(ds.patients.tolist()))} patients -> {out}")
    return 0
