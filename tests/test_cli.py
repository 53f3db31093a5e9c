"""The command line: help, version, and one-line errors."""

import subprocess
import sys

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
