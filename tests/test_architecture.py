"""ARCHITECTURE.md follows the code: every module it names exists, and every module is named.

The layer contract itself is ``.importlinter``; ``lint-imports`` checks it, here and in CI.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import spinenet_lite

REPO = Path(__file__).resolve().parent.parent
TEXT = (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8")
# A backticked dotted name whose first part is a stage of the package: `engine.training`, `io/`.
NAMED = re.compile(r"`((?:io|metrics|phantom|extract|datasets|nn|localise|engine|explain|experiments|viz"
                   r"|app|cli|tasks|errors|seed|progress|paths|config|results)(?:\.[a-z_]+)*)/?`")


def all_modules() -> set[str]:
    """Every module and package of spinenet_lite, without the ``spinenet_lite.`` prefix."""
    found = set()
    for info in pkgutil.walk_packages(spinenet_lite.__path__, "spinenet_lite."):
        found.add(info.name.removeprefix("spinenet_lite."))
    return found


def test_every_named_module_exists():
    named = set(NAMED.findall(TEXT))
    assert len(named) > 20, "the pattern no longer finds ARCHITECTURE.md's module names"
    missing = sorted(n for n in named if n not in all_modules())
    assert not missing, f"ARCHITECTURE.md names modules that do not exist: {missing}"


def test_every_module_is_named():
    """A new module gets a line in ARCHITECTURE.md (private and ``__main__`` modules aside)."""
    named = set(NAMED.findall(TEXT))
    stages = {n.split(".")[0] for n in named}
    unnamed = sorted(m for m in all_modules()
                     if not any(part.startswith("_") for part in m.split("."))
                     and m not in named and m.split(".")[0] in stages
                     and m.split(".")[0] not in {"phantom", "cli"}   # named as packages
                     and not (m.count(".") == 0 and f"{m}/" in TEXT or f"`{m}`" in TEXT))
    assert not unnamed, f"modules missing from ARCHITECTURE.md: {unnamed}"


def test_public_names_of_every_stage_import():
    for pkg in ("io", "metrics", "extract", "datasets", "nn", "localise", "engine", "explain",
                "experiments", "app", "viz"):
        mod = importlib.import_module(f"spinenet_lite.{pkg}")
        for name in mod.__all__:
            assert hasattr(mod, name), f"spinenet_lite.{pkg}.__all__ lists {name!r}, which it lacks"


def test_layer_contract_is_kept():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "lint-imports is missing: install the test extra (pip install -e '.[test]')"
    proc = subprocess.run([exe, "--config", str(REPO / ".importlinter")], cwd=REPO,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
