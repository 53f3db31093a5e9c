"""Writing results files: ``data/results/<experiment>_<tier>.json`` with provenance.

Every results file holds ``experiment``, ``tier``, ``config``, ``seed``,
``commit``, ``device``, ``machine``, ``wall_time_s``, ``created`` and the numbers
under ``results``. Metrics are fractions in [0, 1] keyed by the task names of
:mod:`spinenet_lite.tasks`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import platform
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .paths import RESULTS_DIR_ENV, checkout_root, is_checkout, results_dir

__all__ = [
    "COMMIT_ENV",
    "RESULTS_DIR_ENV",
    "git_commit",
    "machine_description",
    "read_results",
    "repo_root",
    "results_dir",
    "to_jsonable",
    "write_results",
]


def repo_root() -> Path:
    """The checkout the package runs from (the folder holding ``pyproject.toml``), else the cwd.

    :func:`spinenet_lite.paths.results_dir` says where results go (``./results`` outside a checkout).
    """
    root = checkout_root()
    return root if root is not None else Path.cwd()


COMMIT_ENV = "SPINENET_GIT_COMMIT"
"""Environment variable naming the commit of a copy of the repository (e.g. a working
tree sent to a GPU machine, whose ``.git`` may be missing or stale); overrides git."""


def git_commit() -> str:
    """The current git commit (with ``-dirty`` if the tree has changes).

    ``$SPINENET_GIT_COMMIT`` when set (a copy of the tree whose own ``.git``, if any, may
    be stale); else git's answer in the checkout; else ``"unknown"`` (no git, or an installed
    copy of the package, which is no checkout).
    """
    if os.environ.get(COMMIT_ENV):
        return os.environ[COMMIT_ENV]
    root = repo_root()
    if not is_checkout(root):  # an installed copy: the working folder's git (if any) is not ours
        return "unknown"
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return os.environ.get(COMMIT_ENV) or "unknown"


def machine_description() -> dict[str, Any]:
    """Processor, core count, Python and torch versions, and the GPU if any."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def to_jsonable(obj: Any) -> Any:
    """Convert dataclasses, numpy scalars/arrays, paths and tuples to JSON types."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def write_results(
    experiment: str,
    tier: str,
    results: dict[str, Any],
    *,
    config: Any,
    seed: int,
    device: str,
    wall_time_s: float,
    out_dir: str | os.PathLike | None = None,
    markdown: str | None = None,
    commit: str | None = None,
) -> Path:
    """Write ``<out_dir>/<experiment>_<tier>.json`` (and ``.md`` if given).

    Parameters
    ----------
    experiment, tier : str
        File name parts, e.g. ``"table2"`` and ``"teaching"``.
    results : dict
        The numbers (fractions in [0, 1] keyed by task name).
    config : dataclass or dict
        The full configuration that produced them.
    seed : int
        The run's seed.
    device : str
        ``"cpu"`` or ``"cuda"``...
    wall_time_s : float
        Wall-clock seconds of the run.
    out_dir : path, optional
        Defaults to :func:`results_dir`.
    markdown : str, optional
        A Markdown table written beside the JSON as ``<experiment>_<tier>.md``.
    commit : str, optional
        The commit of the code that ran, read when the run started (:func:`git_commit`);
        default: read now (a long run may end after a later commit).

    Returns
    -------
    Path
        The JSON file written.
    """
    out = Path(out_dir) if out_dir is not None else results_dir()
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "experiment": experiment,
        "tier": tier,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit if commit is not None else git_commit(),
        "seed": int(seed),
        "device": device,
        "machine": machine_description(),
        "wall_time_s": round(float(wall_time_s), 2),
        "config": to_jsonable(config),
        "results": to_jsonable(results),
    }
    path = out / f"{experiment}_{tier}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)
    if markdown is not None:
        path.with_suffix(".md").write_text(markdown)
    return path


def read_results(experiment: str, tier: str, out_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Read a results file written by :func:`write_results`."""
    out = Path(out_dir) if out_dir is not None else results_dir()
    path = out / f"{experiment}_{tier}.json"
    if not path.exists():
        from .errors import InputError

        raise InputError(
            f"no results file {path}; run `spinenet-lite experiment {experiment} --tier {tier}` first"
        )
    return json.loads(path.read_text())


_ALIGN = {"-": "---", "l": ":---", "r": "---:", "c": ":---:"}


def markdown_table(header: Sequence[Any], rows: Iterable[Sequence[Any]], align: str = "-") -> str:
    """The one Markdown (GitHub) table writer of the results files and chapters.

    Parameters
    ----------
    header : sequence
        Column titles.
    rows : iterable of sequences
        One sequence of cells per row, as many as ``header``; cells are written with ``str``
        (format numbers before), a ``|`` inside a cell is escaped.
    align : str
        One character per column, or one for every column: ``"-"`` default, ``"l"`` left,
        ``"r"`` right, ``"c"`` centred.

    Returns
    -------
    str
        ``| a | b |`` lines: header, alignment row, rows; ending with a newline.

    Raises
    ------
    ValueError
        A row or ``align`` whose length is not the number of columns, or an unknown alignment.
    """
    n = len(header)
    spec = align * n if len(align) == 1 else align
    if len(spec) != n or any(a not in _ALIGN for a in spec):
        raise ValueError(f"align must be one of {''.join(_ALIGN)!r} per column ({n}), got {align!r}")

    def line(cells: Sequence[Any]) -> str:
        if len(cells) != n:
            raise ValueError(f"a row of {len(cells)} cells in a table of {n} columns: {list(cells)!r}")
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line([_ALIGN[a] for a in spec]), *map(line, rows)]) + "\n"
