"""Where spinenet_lite reads and writes: a checkout's folders, else the user's cache and the working folder.

Run from a checkout (the source tree, as with ``pip install -e .``), everything stays where the
book and the tests expect it::

    <checkout>/data/weights/                 shipped weights
    <checkout>/data/results/                 results files
    <checkout>/data/cohorts/, data/cache/    generated synthetic cohorts and disc caches (git-ignored)
    <checkout>/data/runs/                    training runs (git-ignored)

Installed from a wheel (``pip install .``), nothing is ever written inside the installed package::

    <user cache>/weights/                    weights downloaded by the registry
    <user cache>/data/cohorts/, data/cache/  generated synthetic cohorts and disc caches
    ./results/                               results files, in the working folder
    ./runs/                                  training runs, in the working folder

``<user cache>`` is ``$SPINENET_CACHE_DIR``, else the platform's user cache folder for
``spinenet_lite`` (:func:`platformdirs.user_cache_path`: ``~/.cache/spinenet_lite`` on Linux).
An environment variable wins over both layouts: ``SPINENET_WEIGHTS_DIR`` (the only folder the
weights are looked for in, and downloaded to), ``SPINENET_DATA_DIR`` (generated data; also the
``--data-dir`` option of ``train`` and ``experiment``) and ``SPINENET_RESULTS_DIR``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import platformdirs

__all__ = [
    "CACHE_DIR_ENV",
    "DATA_DIR_ENV",
    "PACKAGE_DIR",
    "RESULTS_DIR_ENV",
    "WEIGHTS_DIR_ENV",
    "checkout_root",
    "data_root",
    "is_checkout",
    "results_dir",
    "runs_dir",
    "use_data_dir",
    "user_cache_dir",
    "weights_cache_dir",
    "weights_dirs",
]

APP_NAME = "spinenet_lite"
CACHE_DIR_ENV = "SPINENET_CACHE_DIR"
"""Environment variable: root of the user cache (downloads, generated data outside a checkout)."""
DATA_DIR_ENV = "SPINENET_DATA_DIR"
"""Environment variable: root of generated data (``cohorts/``, ``cache/``)."""
RESULTS_DIR_ENV = "SPINENET_RESULTS_DIR"
"""Environment variable: folder of results files."""
WEIGHTS_DIR_ENV = "SPINENET_WEIGHTS_DIR"
"""Environment variable: the folder of weights files (looked in alone, and downloaded to)."""

PACKAGE_DIR: Path = Path(__file__).resolve().parent
"""The folder of the imported ``spinenet_lite`` package (its parent is a checkout or site-packages)."""


def is_checkout(root: str | os.PathLike) -> bool:
    """True when ``root`` is a source tree of spinenet_lite (a ``pyproject.toml`` naming it)."""
    pyproject = Path(root) / "pyproject.toml"
    try:
        text = pyproject.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return 'name = "spinenet_lite"' in text


def checkout_root() -> Path | None:
    """The source tree the package runs from, or None for an installed copy (site-packages)."""
    root = PACKAGE_DIR.parent
    return root if is_checkout(root) else None


def user_cache_dir() -> Path:
    """``$SPINENET_CACHE_DIR``, else the platform's user cache folder for ``spinenet_lite``."""
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env).expanduser() if env else platformdirs.user_cache_path(APP_NAME)


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Root of generated data: ``root``, ``$SPINENET_DATA_DIR``, ``<checkout>/data``, else user cache/data."""
    if root is not None:
        return Path(root)
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    checkout = checkout_root()
    return checkout / "data" if checkout is not None else user_cache_dir() / "data"


@contextlib.contextmanager
def use_data_dir(root: str | os.PathLike | None) -> Iterator[None]:
    """Within the block, :func:`data_root` is ``root`` (sets ``$SPINENET_DATA_DIR``; None: no change).

    For commands whose generated data is made deep inside library calls (``--data-dir``);
    the previous value is restored on exit.
    """
    if root is None:
        yield
        return
    old = os.environ.get(DATA_DIR_ENV)
    os.environ[DATA_DIR_ENV] = str(Path(root).expanduser().resolve())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(DATA_DIR_ENV, None)
        else:
            os.environ[DATA_DIR_ENV] = old


def results_dir() -> Path:
    """``$SPINENET_RESULTS_DIR``, ``<checkout>/data/results``, else ``./results`` of the working folder."""
    env = os.environ.get(RESULTS_DIR_ENV)
    if env:
        return Path(env).expanduser()
    checkout = checkout_root()
    return checkout / "data" / "results" if checkout is not None else Path.cwd() / "results"


def runs_dir() -> Path:
    """Training runs: ``<checkout>/data/runs``, else ``./runs`` of the working folder."""
    checkout = checkout_root()
    return checkout / "data" / "runs" if checkout is not None else Path.cwd() / "runs"


def weights_cache_dir() -> Path:
    """Where the registry downloads weights: ``$SPINENET_WEIGHTS_DIR``, else ``<user cache>/weights``."""
    env = os.environ.get(WEIGHTS_DIR_ENV)
    return Path(env).expanduser() if env else user_cache_dir() / "weights"


def weights_dirs() -> list[Path]:
    """Folders looked in for a shipped weights file, in order.

    ``[$SPINENET_WEIGHTS_DIR]`` when it is set (an explicit folder is never shadowed by
    another copy); else ``<checkout>/data/weights`` (when running from a checkout), then
    ``<user cache>/weights``.
    """
    if os.environ.get(WEIGHTS_DIR_ENV):
        return [weights_cache_dir()]
    checkout = checkout_root()
    local = [checkout / "data" / "weights"] if checkout is not None else []
    return [*local, weights_cache_dir()]
