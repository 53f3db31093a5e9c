"""``spinenet-lite synth``: write a synthetic cohort of sagittal T2 lumbar studies."""

from __future__ import annotations

import argparse
import time

import numpy as np

from ..errors import InputError
from ..tasks import MISSING, TASKS

TRUTH_HELP = """\
what DIR holds:
  cohort.json                config, seed, n_patients, version, patient ids
  labels.csv                 patient, level, <task>, <task>_true, <task>_reread (one row per disc;
                             -1 = a missing reading)
  <pid>/dicom/IM0000.dcm ... one sagittal MR series per patient (P00000, P00001, ...)
  <pid>/truth.npz            the patient's ground truth (numpy.load(path); no pickles)

truth.npz (S, H, W: the series' slices, rows, columns, the grid and order of
spinenet_lite.io.load_scan(<pid>/dicom).volume and of SimpleITK's ImageSeriesReader:
rows head to foot, columns anterior to posterior, slices along cross(row, column
direction), i.e. towards the patient's right; T = 6 tasks in the order pfirrmann,
narrowing, upper_endplate, lower_endplate, upper_marrow, lower_marrow; levels in the
order T12-L1, L1-L2, L2-L3, L3-L4, L4-L5, L5-S1):
  corners          (7, S, 4, 2) float32  vertebra corners T12 ... S1 per slice, in voxels
                                         (row, column); corners sup-ant, sup-post, inf-post,
                                         inf-ant; NaN where a body is absent from a slice
  lesions          (T, S, H, W) uint8    lesion masks: lesions[t, s, r, c] == i + 1 where
                                         task t's evidence for disc (level) i lies, 0
                                         elsewhere; for pfirrmann and narrowing the disc
                                         itself, for the endplate and marrow tasks the
                                         lesion; only discs truly abnormal on t have one
  labels_true      (6, T) int64          true class index per level and task (Pfirrmann
                                         grade g is class g - 1)
  labels_observed  (6, T) int64          the observed (noisy) reading, labels.csv's <task>
                                         columns (-1 missing)
  labels_reread    (6, T) int64          a second noisy reading, <task>_reread (-1 missing)
  meta             () str                JSON: patient_id, seed, age, sizes (mm), the
                                         acquisition (pixel_spacing, slice_spacing, ...)
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``synth`` sub-command."""
    p = subparsers.add_parser(
        "synth", help="write a synthetic cohort (DICOM series, labels.csv, lesion masks, corners)",
        description="Generate N synthetic sagittal T2 lumbar-spine studies with known lesions.\n"
                    "Patient i depends only on (seed, i).",
        epilog=TRUTH_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--patients", type=int, default=20, metavar="N", help="number of patients (default 20)")
    p.add_argument("--out", required=True, metavar="DIR", help="cohort folder to write")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="cohort seed (default 0)")
    p.add_argument("--cohort", default="standard", metavar="PRESET",
                   help="cohort preset: standard (default; endplate and marrow findings commoner on "
                        "degenerate discs) or decorrelated (independent of degeneration, chapter 07)")
    p.add_argument("--workers", type=int, default=1, metavar="K", help="worker processes (default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace a cohort already in DIR")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def prevalence_table(labels: np.ndarray, true: np.ndarray) -> str:
    """Text table: per task and class, the share of observed and of true labels (%).

    Parameters
    ----------
    labels, true : ndarray, shape (N, T), int
        Observed (with ``MISSING``) and true labels.
    """
    lines = [f"{'task':<16}{'class':<10}{'observed %':>11}{'true %':>9}"]
    for t, task in enumerate(TASKS):
        obs = labels[:, t][labels[:, t] != MISSING]
        for c, name in enumerate(task.classes):
            o = 100.0 * np.mean(obs == c) if len(obs) else float("nan")
            lines.append(f"{task.name if c == 0 else '':<16}{name:<10}{o:>11.1f}"
                         f"{100.0 * np.mean(true[:, t] == c):>9.1f}")
        lines.append(f"{'':<16}{'missing':<10}{100.0 * np.mean(labels[:, t] == MISSING):>11.1f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Handler of ``spinenet-lite synth``."""
    from ..phantom import COHORT_PRESETS, cohort_config, write_cohort

    if args.patients < 1:
        raise InputError(f"--patients must be at least 1; got {args.patients}")
    if args.workers < 1:
        raise InputError(f"--workers must be at least 1; got {args.workers}")
    if args.seed < 0:
        raise InputError(f"--seed must be a non-negative integer; got {args.seed}")
    if args.cohort not in COHORT_PRESETS:
        raise InputError(f"unknown --cohort {args.cohort!r}; use one of {', '.join(COHORT_PRESETS)}")
    start = time.perf_counter()
    cohort = write_cohort(args.out, args.patients, args.seed, workers=args.workers,
                          config=cohort_config(args.cohort), progress=not args.no_progress,
                          overwrite=args.overwrite)
    wall = time.perf_counter() - start
    n_discs = len(cohort.labels)
    print(f"wrote {len(cohort)} studies ({n_discs} discs) to {cohort.path} in {wall:.1f} s")
    print(f"  {cohort.path}/cohort.json, labels.csv, <patient>/dicom/IM*.dcm, <patient>/truth.npz")
    print(prevalence_table(cohort.label_array("observed"), cohort.label_array("true")))
    return 0
