"""Shared fixtures: a headless matplotlib, the real SPIDER folder (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("SPINENET_TIER", "ci")

REPO = Path(__file__).resolve().parent.parent


def spider_path() -> Path:
    """``$SPINENET_SPIDER_DIR`` or ``../shared/data/spider`` beside the repository."""
    env = os.environ.get("SPINENET_SPIDER_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data" / "spider"


@pytest.fixture(scope="session")
def spider_dir() -> Path:
    """The real SPIDER subset; the test is skipped with a reason when it is absent."""
    path = spider_path()
    if not (path / "radiological_gradings.csv").exists():
        pytest.skip(f"real SPIDER data not found at {path} (set SPINENET_SPIDER_DIR to use it)")
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return REPO


TINY_GRADER_KW = {"branch_point": "conv5", "width": 0.0625, "dropout": 0.5}
"""A SpineNet small enough for tests (random weights)."""


@pytest.fixture(scope="session")
def tiny_grader(tmp_path_factory):
    """``(path, model)``: a randomly initialised tiny SpineNet saved as a checkpoint."""
    import torch

    from spinenet_lite.engine.checkpoint import save_checkpoint
    from spinenet_lite.nn.model import SpineNet

    torch.manual_seed(0)
    model = SpineNet(**TINY_GRADER_KW)
    path = tmp_path_factory.mktemp("tiny_grader") / "tiny.pt"
    save_checkpoint({"model": model.state_dict(), "model_kwargs": TINY_GRADER_KW}, path)
    return path, model
