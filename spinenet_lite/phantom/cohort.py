"""A synthetic cohort on disk: :func:`write_cohort`, :func:`read_cohort`, :func:`load_patient`.

Layout (ARCHITECTURE.md, "Cohort on disk")::

    DIR/cohort.json             config, seed, n_patients, version, patient ids
    DIR/labels.csv              patient, level, <task>, <task>_true, <task>_reread
    DIR/<pid>/dicom/IM0000.dcm  one sagittal MR series per patient
    DIR/<pid>/truth.npz         corners, lesions, labels (true/observed/reread), meta

Patient ``i`` depends only on ``(seed, i)``, so a cohort is identical whatever ``N`` or
the number of worker processes.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from ..io.dicom import load_scan, write_dicom_series
from ..progress import tqdm
from ..tasks import LEVELS, MISSING, TASK_NAMES
from .config import PhantomConfig
from .study import VERSION, PhantomStudy, patient_id, synth_patient

COHORT_FILE = "cohort.json"
LABELS_FILE = "labels.csv"
TRUTH_FILE = "truth.npz"
LABEL_COLUMNS: tuple[str, ...] = (
    *TASK_NAMES, *(f"{t}_true" for t in TASK_NAMES), *(f"{t}_reread" for t in TASK_NAMES))
"""Label columns of ``labels.csv`` after ``patient`` and ``level``."""


@dataclass
class Cohort:
    """A cohort read from disk.

    Attributes
    ----------
    path : Path
        The cohort folder.
    labels : pandas.DataFrame
        One row per disc: ``patient``, ``level`` and :data:`LABEL_COLUMNS` (int,
        ``MISSING`` = -1 for a missing reading).
    patient_ids : list of str
        ``P00000`` ...
    seed : int
    config : dict
        The :class:`PhantomConfig` used, as a dict.
    version : int
        Generator version.
    """

    path: Path
    labels: pd.DataFrame
    patient_ids: list[str]
    seed: int
    config: dict[str, Any] = field(default_factory=dict)
    version: int = VERSION

    def __len__(self) -> int:
        return len(self.patient_ids)

    def label_array(self, kind: str = "observed") -> np.ndarray:
        """Labels ``(N_discs, T)`` int64 in table order; ``kind`` is observed, true or reread."""
        suffix = {"observed": "", "true": "_true", "reread": "_reread"}
        if kind not in suffix:
            raise InputError(f"kind must be one of {sorted(suffix)}; got {kind!r}")
        return self.labels[[t + suffix[kind] for t in TASK_NAMES]].to_numpy(np.int64)

    def load(self, patient: str | int) -> PhantomStudy:
        """The study of one patient (see :func:`load_patient`)."""
        return load_patient(self.path, patient)


def _rows(study: PhantomStudy) -> list[dict[str, Any]]:
    rows = []
    for i, level in enumerate(LEVELS):
        row: dict[str, Any] = {"patient": study.patient_id, "level": level}
        for t, name in enumerate(TASK_NAMES):
            row[name] = int(study.labels["observed"][i, t])
        for t, name in enumerate(TASK_NAMES):
            row[f"{name}_true"] = int(study.labels["true"][i, t])
        for t, name in enumerate(TASK_NAMES):
            row[f"{name}_reread"] = int(study.labels["reread"][i, t])
        rows.append(row)
    return rows


def save_truth(study: PhantomStudy, path: str | os.PathLike) -> None:
    """Write a study's ground truth to ``path`` (``np.savez_compressed``)."""
    np.savez_compressed(
        path, corners=study.corners, lesions=study.lesions, labels_true=study.labels["true"],
        labels_observed=study.labels["observed"], labels_reread=study.labels["reread"],
        meta=np.array(json.dumps(study.meta)))


def _write_one(args: tuple[str, int, int, dict[str, Any]]) -> list[dict[str, Any]]:
    out, index, seed, config_dict = args

    study = synth_patient(index, seed, PhantomConfig.from_dict(config_dict))
    folder = Path(out) / study.patient_id
    folder.mkdir(parents=True, exist_ok=True)
    write_dicom_series(study.scan, folder / "dicom", overwrite=True)
    save_truth(study, folder / TRUTH_FILE)
    return _rows(study)


def write_cohort(out_dir: str | os.PathLike, n_patients: int, seed: int, workers: int = 1,
                 config: PhantomConfig | None = None, progress: bool = True, *,
                 overwrite: bool = False) -> Cohort:
    """Generate ``n_patients`` synthetic studies and write them to ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Cohort folder (created). See the module docstring for the layout.
    n_patients : int
        Number of patients (>= 1); ids ``P00000`` ... ``P{n-1:05d}``.
    seed : int
        Cohort seed (>= 0).
    workers : int
        Processes (``concurrent.futures.ProcessPoolExecutor`` when > 1).
    config : PhantomConfig, optional
        Defaults to ``PhantomConfig()``.
    progress : bool
        Show a tqdm progress bar.
    overwrite : bool
        Replace an existing cohort in ``out_dir`` (its patient folders are removed).

    Returns
    -------
    Cohort
        The cohort as :func:`read_cohort` would read it back.
    """
    if isinstance(n_patients, bool) or not isinstance(n_patients, (int, np.integer)) or n_patients < 1:
        raise InputError(f"n_patients must be a positive integer; got {n_patients!r}")
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise InputError(f"workers must be a positive integer; got {workers!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer; got {seed!r}")
    config = config or PhantomConfig()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder; choose another --out")
    if (out / COHORT_FILE).exists() or (out.is_dir() and any(out.glob("P[0-9]*/" + TRUTH_FILE))):
        if not overwrite:
            raise InputError(f"{out} already holds a cohort; choose another folder or pass overwrite=True "
                             "(--overwrite on the command line)")
        for old in out.glob("P[0-9]*"):
            if (old / TRUTH_FILE).exists() or (old / "dicom").is_dir():
                shutil.rmtree(old)
        (out / COHORT_FILE).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(str(out), i, int(seed), config.to_dict()) for i in range(int(n_patients))]
    bar = tqdm(total=len(jobs), desc="synth", unit="patient", disable=not progress)
    rows: list[dict[str, Any]] = []
    try:
        if workers == 1:
            for job in jobs:
                rows.extend(_write_one(job))
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=int(workers)) as pool:
                for result in pool.map(_write_one, jobs):
                    rows.extend(result)
                    bar.update()
    finally:
        bar.close()
    table = pd.DataFrame(rows, columns=["patient", "level", *LABEL_COLUMNS])
    table.to_csv(out / LABELS_FILE, index=False)
    ids = [patient_id(i) for i in range(int(n_patients))]
    record = {"generator": "spinenet_lite.phantom", "version": VERSION, "seed": int(seed),
              "n_patients": int(n_patients), "patient_ids": ids, "config": config.to_dict()}
    (out / COHORT_FILE).write_text(json.dumps(record, indent=1) + "\n")
    return read_cohort(out)


def read_cohort(path: str | os.PathLike) -> Cohort:
    """Read a cohort written by :func:`write_cohort` (labels table and ids; no images).

    Raises
    ------
    InputError
        The folder or its ``cohort.json`` / ``labels.csv`` is missing or malformed.
    """
    root = Path(path)
    meta_file = root / COHORT_FILE
    if not meta_file.is_file():
        raise InputError(f"{root} holds no {COHORT_FILE}; write a cohort first with "
                         f"`spinenet-lite synth --patients N --out {root}`")
    try:
        record = json.loads(meta_file.read_text())
        ids = [str(p) for p in record["patient_ids"]]
        table = pd.read_csv(root / LABELS_FILE)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{root} is not a readable cohort ({exc}); regenerate it with "
                         "`spinenet-lite synth`") from exc
    missing = {"patient", "level", *LABEL_COLUMNS} - set(table.columns)
    if missing:
        raise InputError(f"{root / LABELS_FILE} lacks the columns {sorted(missing)}; regenerate the cohort")
    table[list(LABEL_COLUMNS)] = table[list(LABEL_COLUMNS)].fillna(MISSING).astype(np.int64)
    return Cohort(path=root, labels=table, patient_ids=ids, seed=int(record.get("seed", 0)),
                  config=dict(record.get("config", {})), version=int(record.get("version", 0)))


def load_patient(path: str | os.PathLike, patient: str | int) -> PhantomStudy:
    """Read one patient of a cohort back: the DICOM series (``load_scan``) and ``truth.npz``.

    Parameters
    ----------
    path : path
        Cohort folder.
    patient : str or int
        Patient id (``"P00003"``) or index (3).

    Returns
    -------
    PhantomStudy
    """

    pid = patient_id(patient) if isinstance(patient, (int, np.integer)) else str(patient)
    folder = Path(path) / pid
    truth_file = folder / TRUTH_FILE
    if not truth_file.is_file():
        known = sorted(p.name for p in Path(path).glob("P[0-9]*") if p.is_dir())[:5]
        raise InputError(f"no patient {pid} in {path} (no {truth_file.name}); "
                         f"patients there include {known or 'none'}")
    scan = load_scan(folder / "dicom")
    with np.load(truth_file, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        study = PhantomStudy(scan=scan, corners=z["corners"], lesions=z["lesions"],
                             labels={"true": z["labels_true"], "observed": z["labels_observed"],
                                     "reread": z["labels_reread"]}, meta=meta)
    return study
