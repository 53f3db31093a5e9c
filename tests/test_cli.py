"""The command line: help, version, and one-line errors."""

import subprocess
import sys

import pytest

from spinenet_lite.cli import build_parser, main


def test_help_lists_commands(capsys):
    assert main([]) == 1
    assert "usage: spinenet-lite" in capsys.readouterr().out


def test_every_registered_command_has_a_handler():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sub.choices, "no sub-commands registered"
    for name, p in sub.choices.items():
        assert p.get_default("func") is not None, name


def test_console_script_runs_as_module():
    out = subprocess.run([sys.executable, "-m", "spinenet_lite", "--version"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.startswith("spinenet-lite ")


def test_a_broken_command_module_fails_loudly(monkeypatch):
    """A command module that cannot be imported is an error, not a silently missing sub-command."""
    monkeypatch.setitem(sys.modules, "spinenet_lite.cli.train", None)  # its import now raises
    with pytest.raises(ImportError, match="spinenet_lite.cli.train"):
        build_parser()
    with pytest.raises(ImportError, match="spinenet_lite.cli.train"):
        main(["--help"])


def test_a_command_module_raising_on_import_propagates(monkeypatch):
    """An exception inside a command module's import reaches the caller unchanged."""
    import importlib

    real = importlib.import_module

    def broken(name, *args, **kwargs):
        if name == "spinenet_lite.cli.evaluate":
            raise RuntimeError("evaluate is broken")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(RuntimeError, match="evaluate is broken"):
        build_parser()
