"""The real SPIDER subset (van der Graaf et al., Sci Data 2024, CC BY 4.0).

The folder layout is described in its README (``radiological_gradings.csv``,
``overview.csv``, ``t2_midsag/<patient>_t2.png``, ``t2_space/images`` and
``t2_space/masks``). This module only reads it; nothing is written there.

Mapping of SPIDER's gradings to the six tasks of :mod:`spinenet_lite.tasks`:

- ``Pfirrman grade`` 1-5 -> ``pfirrmann`` class 0-4;
- ``UP endplate`` / ``LOW endplate`` 0/1 -> ``upper_endplate`` / ``lower_endplate``;
- ``Modic`` 0-3 is one value per disc, not split by endplate: ``Modic > 0`` is used for
  **both** ``upper_marrow`` and ``lower_marrow``;
- ``Disc narrowing`` is binary, while the paper grades narrowing in four classes: the
  four-class ``narrowing`` task is left missing, and the binary label is kept separately
  (:func:`narrowing_binary`) for Lootus's protocol.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..io.scan import Scan
from ..results import repo_root
from ..tasks import LEVELS, MISSING, TASK_NAMES

SPIDER_ENV = "SPINENET_SPIDER_DIR"

# SPIDER counts discs from the bottom: IVD label 1 = L5-S1 ... 6 = T12-L1.
_IVD_TO_LEVEL = {k: len(LEVELS) - k for k in range(1, len(LEVELS) + 1)}


def default_spider_dir() -> Path:
    """``$SPINENET_SPIDER_DIR``, else ``../shared/data/spider`` beside the repository."""
    env = os.environ.get(SPIDER_ENV)
    return Path(env) if env else repo_root().parent / "shared" / "data" / "spider"


def spider_available(path: str | os.PathLike | None = None) -> bool:
    """True when ``path`` (default :func:`default_spider_dir`) holds the SPIDER layout."""
    p = Path(path) if path is not None else default_spider_dir()
    return (p / "radiological_gradings.csv").is_file() and (p / "overview.csv").is_file()


def _check(path: str | os.PathLike | None) -> Path:
    p = Path(path) if path is not None else default_spider_dir()
    if not spider_available(p):
        raise InputError(
            f"{p} is not a SPIDER folder (radiological_gradings.csv and overview.csv are needed); "
            f"pass the folder or set {SPIDER_ENV}"
        )
    return p


def read_gradings(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """SPIDER's per-disc gradings with a ``level`` column (rows with an unknown level dropped).

    Returns
    -------
    pandas.DataFrame
        One row per lumbar disc: the original columns plus ``patient`` (str) and
        ``level`` (index into :data:`~spinenet_lite.tasks.LEVELS`).
    """
    p = _check(path)
    df = pd.read_csv(p / "radiological_gradings.csv")
    df = df[df["IVD label"].isin(list(_IVD_TO_LEVEL))].copy()
    df["patient"] = df["Patient"].astype(str)
    df["level"] = df["IVD label"].map(_IVD_TO_LEVEL).astype(int)
    return df.reset_index(drop=True)


def labels_from_gradings(df: pd.DataFrame) -> np.ndarray:
    """Map SPIDER grading rows to our six tasks (see the module docstring).

    Returns
    -------
    ndarray, shape (N, T), int16
        Class indices, :data:`~spinenet_lite.tasks.MISSING` where SPIDER has no such label.
    """
    out = np.full((len(df), len(TASK_NAMES)), MISSING, dtype=np.int16)
    col = TASK_NAMES.index

    def valid(series: pd.Series, lo: int, hi: int) -> np.ndarray:
        v = pd.to_numeric(series, errors="coerce").to_numpy()
        return np.where(np.isfinite(v) & (v >= lo) & (v <= hi), v, np.nan)

    pf = valid(df["Pfirrman grade"], 1, 5)
    out[:, col("pfirrmann")] = np.where(np.isnan(pf), MISSING, pf - 1)
    for task, column in (("upper_endplate", "UP endplate"), ("lower_endplate", "LOW endplate")):
        v = valid(df[column], 0, 1)
        out[:, col(task)] = np.where(np.isnan(v), MISSING, v)
    modic = valid(df["Modic"], 0, 3)
    marrow = np.where(np.isnan(modic), MISSING, (modic > 0).astype(float))
    out[:, col("upper_marrow")] = marrow
    out[:, col("lower_marrow")] = marrow
    return out


def narrowing_binary(df: pd.DataFrame) -> np.ndarray:
    """SPIDER's binary ``Disc narrowing`` (0 normal, 1 narrowed, MISSING otherwise), shape (N,)."""
    v = pd.to_numeric(df["Disc narrowing"], errors="coerce").to_numpy()
    return np.where(np.isin(v, (0, 1)), v, MISSING).astype(np.int16)


def read_overview(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """``overview.csv`` indexed by series name (``<patient>_t2``, ``<patient>_t2_SPACE``)."""
    p = _check(path)
    return pd.read_csv(p / "overview.csv").set_index("new_file_name")


def midsag_patients(path: str | os.PathLike | None = None) -> list[str]:
    """Patients with a mid-sagittal T2 PNG, sorted numerically."""
    p = _check(path)
    names = [f.name.split("_")[0] for f in (p / "t2_midsag").glob("*_t2.png")]
    return sorted(names, key=lambda s: (len(s), s))


def _pixel_spacing(overview: pd.DataFrame, series: str) -> tuple[float, float]:
    if series not in overview.index:
        raise InputError(f"series {series!r} is not in overview.csv; its pixel spacing is unknown")
    raw = overview.loc[series, "PixelSpacing"]
    try:
        row, col = (float(v) for v in ast.literal_eval(str(raw)))
    except (ValueError, SyntaxError, TypeError) as exc:
        raise InputError(f"overview.csv has no usable PixelSpacing for {series!r}: {raw!r}") from exc
    return row, col


def read_midsag(patient: str, path: str | os.PathLike | None = None) -> Scan:
    """One patient's mid-sagittal T2 slice as a single-slice :class:`~spinenet_lite.io.scan.Scan`.

    Intensities are the PNG's 8-bit values scaled to [0, 1] (min-max scaled per image by
    SPIDER's mirror, so only relative contrast is meaningful). Pixel spacing is the
    series' ``PixelSpacing``; the slice spacing is its ``SpacingBetweenSlices`` (or
    ``SliceThickness``).
    """
    from PIL import Image

    p = _check(path)
    file = p / "t2_midsag" / f"{patient}_t2.png"
    if not file.is_file():
        raise InputError(f"no mid-sagittal image for patient {patient!r} in {p / 't2_midsag'}")
    overview = read_overview(p)
    series = f"{patient}_t2"
    spacing = _pixel_spacing(overview, series)
    thick = pd.to_numeric(overview.loc[series, ["SpacingBetweenSlices", "SliceThickness"]],
                          errors="coerce").dropna()
    image = np.asarray(Image.open(file).convert("L"), dtype=np.float32) / 255.0
    return Scan(
        volume=image[None],
        pixel_spacing=spacing,
        slice_spacing=float(thick.iloc[0]) if len(thick) else 4.0,
        slice_thickness=float(thick.iloc[-1]) if len(thick) else None,
        patient_id=f"SPIDER-{patient}",
        series_description="SPIDER T2 mid-sagittal (PNG)",
        source=str(file),
    )
