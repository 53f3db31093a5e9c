"""One function to make a run repeatable: :func:`seed_everything`."""

from __future__ import annotations

import os
import random

import numpy as np


def seed_everything(seed: int, deterministic: bool = True) -> np.random.Generator:
    """Seed Python, NumPy and PyTorch, and ask PyTorch for deterministic kernels.

    Parameters
    ----------
    seed : int
        The run's seed.
    deterministic : bool
        If true, ``torch.use_deterministic_algorithms(True, warn_only=True)`` and
        cuDNN benchmarking off, so the same seed on the same CPU gives the same
        numbers. If false, both switched the other way (cuDNN picks its fastest
        kernels: GPU runs that need speed more than bitwise repeatability).

    Returns
    -------
    numpy.random.Generator
        A generator seeded with ``seed`` for code that takes one explicitly.
    """
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002  (seeds legacy global-state users)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    try:
        import torch
    except ImportError:  # torch is a dependency, but seeding must not need it
        return np.random.default_rng(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    return np.random.default_rng(seed)
