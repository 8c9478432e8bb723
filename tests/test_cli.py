"""The chromosort dispatcher: help lists commands, user errors become one line + exit 2."""

import subprocess
import sys

from napari_chromosome_sort.cli import build_parser, main


def test_help_lists_available_commands():
    text = build_parser().format_help()
    assert "chromosort" in text
    assert "COMMAND" in text


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "napari_chromosome_sort.cli", "--version"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0
    assert "chromosort" in out.stdout


def test_unknown_command_fails(capsys):
    try:
        main(["no-such-command"])
    except SystemExit as stop:
        assert stop.code == 2
    else:  # pragma: no cover
        raise AssertionError("argparse accepted an unknown command")
