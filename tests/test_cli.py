import subprocess
import sys

from sporeprint.cli import COMMANDS, build_parser, main


def test_help_lists_every_available_command(capsys):
    parser = build_parser()
    text = parser.format_help()
    assert "sporeprint" in text
    assert main([]) == 1  # no command: help, non-zero


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "sporeprint", "--help"], capture_output=True,
                         text=True, check=True)
    assert "COMMAND" in out.stdout
    assert len(COMMANDS) == len(set(COMMANDS))
