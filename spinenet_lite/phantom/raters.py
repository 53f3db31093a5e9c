"""The rater: noisy readings of the true labels, with missing labels.

One reading passes every true label through a per-task confusion: ordinal tasks
(more than two classes) move one grade up or down with probability
``PhantomConfig.rater_adjacent[task]`` (half each way, clipped at the ends); binary
tasks flip a true normal with probability ``rater_flip[task][0]`` and a true abnormal
with ``rater_flip[task][1]``. Then a label goes missing with ``missing_rate[task]``.
Two independent readings (``observed`` and ``reread``) then agree, in average per-class
accuracy, about as well as the paper's intra-rater figures (checked in the tests).
"""

from __future__ import annotations

import numpy as np

from ..metrics.classification import intra_rater_agreement
from ..tasks import MISSING, N_CLASSES, TASK_NAMES
from .config import PhantomConfig


def read_labels(rng: np.random.Generator, true: np.ndarray, config: PhantomConfig,
                missing: bool = True) -> np.ndarray:
    """One noisy reading of ``true``.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    true : ndarray, shape (N, T), int
        True class indices (no missing values). Not modified.
    config : PhantomConfig
        ``rater_adjacent``, ``rater_flip`` and ``missing_rate``.
    missing : bool
        Drop labels at ``missing_rate`` (set to ``MISSING``).

    Returns
    -------
    ndarray, shape (N, T), int64
    """
    true = np.asarray(true, dtype=np.int64)
    out = true.copy()
    n = true.shape[0]
    for t, name in enumerate(TASK_NAMES):
        u = rng.random(n)
        if N_CLASSES[name] > 2:
            p = float(config.rater_adjacent.get(name, 0.0))
            step = np.where(u < p / 2, -1, np.where(u < p, 1, 0))
            out[:, t] = np.clip(true[:, t] + step, 0, N_CLASSES[name] - 1)
        else:
            q0, q1 = config.rater_flip.get(name, (0.0, 0.0))
            flip = np.where(true[:, t] == 1, u < q1, u < q0)
            out[:, t] = np.where(flip, 1 - true[:, t], true[:, t])
    if missing:
        rates = np.array([config.missing_rate.get(name, 0.0) for name in TASK_NAMES])
        out[rng.random(out.shape) < rates] = MISSING
    return out


def reading_agreement(first: np.ndarray, second: np.ndarray) -> dict[str, float]:
    """Average per-class accuracy of ``second`` against ``first``, per task.

    Parameters
    ----------
    first, second : ndarray, shape (N, T), int
        Two readings of the same discs; pairs with a ``MISSING`` label are skipped.

    Returns
    -------
    dict of str to float
        ``sklearn.metrics.balanced_accuracy_score(first, second)`` per task name
        (:func:`spinenet_lite.metrics.classification.intra_rater_agreement`).
    """
    return intra_rater_agreement(first, second)
