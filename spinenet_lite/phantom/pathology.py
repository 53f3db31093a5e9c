"""True labels of a synthetic patient: age, degeneration, and the six tasks per disc.

A latent Gaussian *degeneration score* per disc,

    z[l] = level_shift[l] + sqrt(a) * age_z + sqrt(p) * patient + sqrt(1 - a - p) * e[l],

is ``N(level_shift[l], 1)`` at level ``l``; each task ``t`` reads a latent
``y_t = c_t * z + sqrt(1 - c_t**2) * e_t`` (``c_t`` = ``PhantomConfig.task_loading``) and
cuts it at thresholds chosen so that the class marginals over the six levels equal
``PhantomConfig.prevalence`` exactly. So degeneration rises at L4-5 / L5-S1 and with age,
narrowing follows Pfirrmann, and marrow / endplate lesions are commoner on degenerate
discs, while the overall frequencies stay those of the paper's Table 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.optimize import brentq
from scipy.stats import norm

from ..tasks import LEVELS, TASK_NAMES
from .config import PhantomConfig


@lru_cache(maxsize=64)
def _thresholds(prevalence: tuple[float, ...], means: tuple[float, ...]) -> np.ndarray:
    """Cut points of a latent whose law is the equal mixture of ``N(means[l], 1)``."""
    m = np.asarray(means)
    cuts = []
    for p in np.cumsum(prevalence)[:-1]:
        if p <= 0:
            cuts.append(-np.inf)
        elif p >= 1:
            cuts.append(np.inf)
        else:
            cuts.append(brentq(lambda x, p=p: norm.cdf(x - m).mean() - p, -20.0, 20.0))
    return np.asarray(cuts)


def task_thresholds(config: PhantomConfig, task: str) -> np.ndarray:
    """Latent cut points of ``task``, shape ``(C - 1,)``, increasing."""
    c = float(config.task_loading[task])
    means = tuple(float(c * s) for s in config.level_shift)
    return _thresholds(tuple(float(v) for v in config.prevalence[task]), means)


def sample_age(rng: np.random.Generator, config: PhantomConfig) -> float:
    """Patient age in years: normal ``(age_mean, age_sd)`` clipped to ``age_range``."""
    age = config.age_mean + config.age_sd * rng.standard_normal()
    return float(np.clip(age, *config.age_range))


def sample_labels(rng: np.random.Generator, config: PhantomConfig, age: float) -> np.ndarray:
    """True labels of one patient's six discs (no rendering).

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    config : PhantomConfig
        Prevalences, level shifts, age and task loadings.
    age : float
        Patient age in years.

    Returns
    -------
    ndarray, shape (6, T), int64
        Class index per disc level (rows ``LEVELS``) and task (columns ``TASK_NAMES``).
    """
    n = len(LEVELS)
    wa, wp = config.age_weight, config.patient_weight
    age_z = (age - config.age_mean) / config.age_sd
    z = (np.asarray(config.level_shift, dtype=float) + np.sqrt(wa) * age_z
         + np.sqrt(wp) * rng.standard_normal() + np.sqrt(1.0 - wa - wp) * rng.standard_normal(n))
    labels = np.zeros((n, len(TASK_NAMES)), dtype=np.int64)
    for t, name in enumerate(TASK_NAMES):
        c = float(config.task_loading[name])
        y = c * z + np.sqrt(max(0.0, 1.0 - c * c)) * rng.standard_normal(n)
        labels[:, t] = np.searchsorted(task_thresholds(config, name), y)
    return labels


ENDPLATE_TASKS = ("upper_endplate", "lower_endplate")
MARROW_TASKS = ("upper_marrow", "lower_marrow")


@dataclass
class Lesion:
    """Shape of one endplate defect or marrow change (only drawn for a true abnormal label).

    Attributes
    ----------
    task : int
        Column in ``TASK_NAMES``.
    level : int
        Disc level (0 = T12-L1).
    body : int
        Index of the vertebra in ``VERTEBRAE`` (``level`` for upper, ``level + 1`` for lower).
    endplate : str
        ``"inferior"`` (the vertebra above the disc) or ``"superior"`` (the one below).
    u0, u1 : float
        Normalised AP range (0 anterior, 1 posterior); a defect is centred at ``(u0 + u1) / 2``.
    depth : float
        Extent into the body from the endplate (mm).
    radius : float
        Defect: AP half size (mm). Marrow band: unused.
    z0, z_radius : float
        Lateral centre and half extent (mm, + = patient right).
    signal : float
        Defect: fill intensity (CSF = 1). Marrow: factor on the marrow intensity.
    rim : float
        Defect rim intensity (dark sclerosis or bright oedema); marrow: edge irregularity.
    """

    task: int
    level: int
    body: int
    endplate: str
    u0: float
    u1: float
    depth: float
    radius: float
    z0: float
    z_radius: float
    signal: float
    rim: float


def sample_lesions(rng: np.random.Generator, config: PhantomConfig, true: np.ndarray,
                   slice_z: np.ndarray, half_width: np.ndarray) -> list[Lesion]:
    """Shapes of the endplate defects and marrow changes of the true abnormal labels.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    config : PhantomConfig
        ``endplate_depth``, ``endplate_radius``, ``marrow_thickness``.
    true : ndarray, shape (6, T), int
        True labels.
    slice_z : ndarray, shape (S,)
        Lateral slice positions (mm); every lesion is centred close to one of the slices
        within the middle half of the body, so it shows in at least one slice.
    half_width : ndarray, shape (7,)
        Half width (mm) of the vertebrae T12 ... S1.

    Returns
    -------
    list of Lesion
    """
    out: list[Lesion] = []
    spacing = float(np.median(np.diff(slice_z))) if len(slice_z) > 1 else 4.0
    for t, name in enumerate(TASK_NAMES):
        if name not in ENDPLATE_TASKS + MARROW_TASKS:
            continue
        upper = name.startswith("upper")
        for level in np.flatnonzero(true[:, t] == 1):
            body = int(level) if upper else int(level) + 1
            hw = float(half_width[body])
            near = slice_z[np.abs(slice_z) < 0.5 * hw]
            zc = float(rng.choice(near)) if len(near) else 0.0
            z0 = zc + float(rng.uniform(-0.25, 0.25)) * spacing
            endplate = "inferior" if upper else "superior"
            if name in ENDPLATE_TASKS:
                c = float(rng.uniform(0.25, 0.72))
                out.append(Lesion(t, int(level), body, endplate, c, c,
                                  depth=float(rng.uniform(*config.endplate_depth)),
                                  radius=float(rng.uniform(*config.endplate_radius)), z0=z0,
                                  z_radius=float(rng.uniform(4.5, 9.0)),
                                  signal=float(rng.uniform(0.55, 0.9)),
                                  rim=float(0.06 if rng.random() < 0.65 else 0.85)))
            else:
                width = float(rng.uniform(0.4, 0.9))
                start = float(rng.uniform(0.0, 1.0 - width))
                kind = rng.choice(3, p=(0.45, 0.3, 0.25))
                factor = (float(rng.uniform(1.55, 1.85)), float(rng.uniform(1.3, 1.45)),
                          float(rng.uniform(0.3, 0.45)))[kind]
                out.append(Lesion(t, int(level), body, endplate, start, start + width,
                                  depth=float(rng.uniform(*config.marrow_thickness)), radius=0.0, z0=z0,
                                  z_radius=float(rng.uniform(7.0, 16.0)), signal=factor,
                                  rim=float(rng.uniform(0.0, 1.0))))
    return out
