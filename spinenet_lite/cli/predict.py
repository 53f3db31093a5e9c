"""``spinenet-lite predict`` (grade one study) and ``spinenet-lite demo`` (a synthetic study, graded).

Both end with exit code 0 on success; on failure they print one line saying why
(:class:`~spinenet_lite.errors.SpineNetError` through the CLI frame: exit 2; a file-system
error: exit 2 too; anything unexpected: exit 3, traceback only with ``SPINENET_DEBUG=1``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from ..errors import InputError, SpineNetError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``predict`` and ``demo`` sub-commands."""
    p = subparsers.add_parser(
        "predict", help="grade one study: six grades per disc, hotspots, a self-contained HTML report",
        description="Localise the vertebrae, cut the disc volumes, grade them with 54-view test-time "
                    "augmentation and explain every finding with an evidence hotspot. Writes grades.csv, "
                    "grades.json, report.html and PNG figures into --out. The input is only read.")
    p.add_argument("path", metavar="PATH",
                   help="a DICOM series folder, a DICOM file, a 3D image file (.mha, .mhd, .nii, .nii.gz, "
                        ".nrrd), or a 2D image (PNG/JPEG/TIFF, with --spacing)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (outside PATH)")
    p.add_argument("--weights", default=None, metavar="W",
                   help="grader: a shipped name (spinenet_synthetic, spinenet_real, spinenet_real_2d) or a "
                        "checkpoint path (default: spinenet_synthetic for a synthetic study, spinenet_real "
                        "for a real one, spinenet_real_2d for a single slice)")
    p.add_argument("--localiser", default=None, metavar="L", help="localiser weights (default: shipped)")
    p.add_argument("--device", default="auto", metavar="D", help='"auto" (default), "cpu" or "cuda"')
    p.add_argument("--spacing", type=float, nargs="+", default=None, metavar="MM",
                   help="pixel spacing of a 2D image in mm (one value, or row and column)")
    p.add_argument("--series", default=None, metavar="UID", help="SeriesInstanceUID when PATH holds several")
    p.add_argument("--no-hotspots", action="store_true", help="skip the hotspot maps (faster)")
    p.add_argument("--pad", choices=("zero", "replicate"), default=None,
                   help="disc-volume slices the scan does not cover: empty as the paper does (default), or "
                        "copies of the nearest slice (the default for a one-slice study such as a 2D image; "
                        "benchmarks/spider_single_slice.py)")
    p.add_argument("--slab-mm", type=float, default=None, metavar="MM",
                   help="average the slices into slabs this thick before grading (0: never; default: 4 mm "
                        "slabs for a thin-slice series, slices under 2 mm apart, else none)")
    p.add_argument("--hotspot-aug", type=int, default=32, metavar="N",
                   help="augmentations averaged per hotspot map (default 32; fewer is faster and noisier)")
    p.add_argument("--save-maps", action="store_true",
                   help="also write every finding's hotspot as a float32 volume in the input series' "
                        "geometry (same grid, spacing, origin, direction; opens as an overlay in 3D "
                        "Slicer or ITK-SNAP): DIR/hotspots/<level>_<task>.nii.gz, listed in grades.json "
                        "(off by default: it costs time)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=_guard(run_predict))

    d = subparsers.add_parser(
        "demo", help="synthesise a study with known pathology, grade it, print grades beside the truth",
        description="Generate one synthetic sagittal T2 study with known grades, write it as DICOM, run "
                    "`predict` on it and print the predicted grades beside the ground truth.")
    d.add_argument("--out", default="spinenet_demo", metavar="DIR",
                   help="output folder (default ./spinenet_demo): DIR/dicom and DIR/report")
    d.add_argument("--weights", default=None, metavar="W", help="grader (default spinenet_synthetic)")
    d.add_argument("--device", default="auto", metavar="D", help='"auto" (default), "cpu" or "cuda"')
    d.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the synthetic study (default 0)")
    d.add_argument("--corners", choices=("auto", "localise", "truth"), default="auto",
                   help="vertebra corners: the localiser, the phantom's exact ones, or auto (the localiser "
                        "when it is installed, else the truth)")
    d.add_argument("--no-hotspots", action="store_true", help="skip the hotspot maps (faster)")
    d.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    d.set_defaults(func=_guard(run_demo))


def _guard(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn file-system errors into one-line SpineNetErrors and anything unexpected into exit 3."""

    def wrapped(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (SpineNetError, KeyboardInterrupt):
            raise
        except OSError as exc:
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            raise InputError(f"cannot read or write a file{where}: {exc.strerror or exc}; check the paths "
                             f"and free disk space") from None
        except MemoryError:
            raise InputError("out of memory; close other programs, or use a smaller series") from None
        except Exception as exc:  # a bug: still one line, the traceback on request
            if os.environ.get("SPINENET_DEBUG"):
                raise
            first = str(exc).splitlines()[0][:200] if str(exc) else ""
            print(f"spinenet-lite {args.command}: internal error ({type(exc).__name__}: {first}); "
                  f"rerun with SPINENET_DEBUG=1 for the traceback and report it", file=sys.stderr)
            return 3

    return wrapped


def _print_summary(pred, out: Path) -> None:
    from ..tasks import TASK_NAMES, get_task

    print(f"graded {len(pred.levels)} discs ({', '.join(pred.levels)}) of {pred.source}")
    print(f"weights {pred.weights.get('name')} (sha256 {pred.weights.get('sha256', '')[:12]}...)")
    for note in pred.notes:
        print(f"note: {note}")
    header = f"{'level':<8}" + "".join(f"{get_task(t).title[:14]:<16}" for t in TASK_NAMES)
    print(header)
    for row in pred.rows():
        cells = [f"{row[t]} ({row[t + '_prob']:.2f})" if row["graded"] else "-" for t in TASK_NAMES]
        print(f"{row['level']:<8}" + "".join(f"{c:<16}" for c in cells))
    t = pred.timings
    print("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in t.items()))
    print(f"report: {out / 'report.html'} (self-contained; opens in a browser without network)")
    if pred.saved_maps:
        from ..app import HOTSPOT_DIR

        print(f"hotspot volumes: {len(pred.saved_maps)} in {out / HOTSPOT_DIR} (.nii.gz in the scan's "
              "geometry, listed in grades.json)")


def run_predict(args: argparse.Namespace) -> int:
    """Handler of ``spinenet-lite predict``."""
    from ..app import predict

    spacing = None
    if args.spacing is not None:
        if len(args.spacing) not in (1, 2):
            raise InputError(f"--spacing takes one or two values in mm; got {len(args.spacing)}")
        spacing = args.spacing[0] if len(args.spacing) == 1 else tuple(args.spacing)
    pred = predict(args.path, args.out, weights=args.weights, localiser=args.localiser, device=args.device,
                   hotspots=not args.no_hotspots, spacing_mm=spacing, series_uid=args.series,
                   progress=not args.no_progress, n_aug=args.hotspot_aug, pad=args.pad,
                   slab_mm=args.slab_mm, save_maps=args.save_maps)
    _print_summary(pred, Path(args.out))
    return 0


def _localiser_ready() -> str | None:
    """None when the localiser can run, else why not (one line)."""
    import importlib.util

    from ..engine.weights import verify_weights

    if importlib.util.find_spec(f"{__package__.rsplit('.', 1)[0]}.localise") is None:
        return "this version has no localiser module"
    try:
        verify_weights(None, kind="localiser")
    except SpineNetError as exc:
        return str(exc)
    return None


def run_demo(args: argparse.Namespace) -> int:
    """Handler of ``spinenet-lite demo``."""
    from ..app import compare_table, demo_study, predict
    from ..io.dicom import write_dicom_series

    if args.seed < 0:
        raise InputError(f"--seed must be a non-negative integer; got {args.seed}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder; choose a folder")
    dicom, report = out / "dicom", out / "report"
    if dicom.exists():
        stale = [p for p in dicom.iterdir() if not (p.name.startswith("IM") and p.suffix == ".dcm")]
        if stale:
            raise InputError(f"{dicom} holds files the demo did not write ({stale[0].name}); "
                             "choose another --out")
        for p in dicom.iterdir():
            p.unlink()
    corners_from = args.corners
    if corners_from == "auto":
        why = _localiser_ready()
        corners_from = "localise" if why is None else "truth"
        if why is not None:
            print(f"note: using the phantom's exact vertebra corners, the localiser is not available ({why})")
    print(f"synthesising a study with known grades (seed {args.seed}) ...")
    study = demo_study(args.seed)
    write_dicom_series(study.scan, dicom)
    print(f"wrote {study.scan.n_slices} DICOM slices to {dicom}")
    pred = predict(dicom, report, weights=args.weights, device=args.device, hotspots=not args.no_hotspots,
                   corners=study.corners if corners_from == "truth" else None,
                   progress=not args.no_progress)
    print(compare_table(pred, study.labels["true"]))
    print("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in pred.timings.items()))
    print(f"report: {report / 'report.html'} (self-contained; opens in a browser without network)")
    return 0
