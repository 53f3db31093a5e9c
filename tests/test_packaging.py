"""The install contract: pyproject, environment.yml, the lock file, README and CI agree."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
import yaml

REPO = Path(__file__).resolve().parent.parent


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_names() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in ("book", "test"):
        reqs += project["optional-dependencies"][extra]
    return {_name(r) for r in reqs}


def _environment_names() -> set[str]:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    names: set[str] = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            names |= {_name(p) for p in dep["pip"]}
        else:
            names.add(_name(dep.split("=")[0] if "=" in dep and ">" not in dep else dep))
    return names - {"python", "pip"}


def test_environment_yml_lists_the_same_packages_as_pyproject():
    assert _environment_names() == _pyproject_names()


def test_lock_file_pins_every_dependency_and_torch_cpu():
    lock = {}
    for line in (REPO / "requirements-lock.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            lock[_name(name)] = version
    assert lock["torch"] == "2.13.0"
    missing = _pyproject_names() - set(lock)
    assert not missing, f"not pinned in requirements-lock.txt: {sorted(missing)}"


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_readme_test_command_is_what_ci_runs():
    setup, tests = _readme_commands()[:2]
    ci = (REPO / ".ci" / "run").read_text()
    assert "pip install -c requirements-lock.txt" in setup
    for line in tests.strip().splitlines():
        assert line.strip() in ci, f"README test command not run by .ci/run: {line}"
