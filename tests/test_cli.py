import subprocess
import sys

import pytest

from sporeprint.cli import COMMANDS, build_parser, main


def test_every_command_registers_and_has_help(capsys):
    text = build_parser().format_help()
    for name in COMMANDS:  # a command module that fails to import would be missing here
        assert f"    {name} " in text, name
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert "usage: sporeprint " + name in capsys.readouterr().out
    assert main([]) == 1  # no command: help, non-zero


def test_python_dash_m_entry_point_and_one_line_errors(tmp_path):
    out = subprocess.run([sys.executable, "-m", "sporeprint", "sql", "--store",
                          str(tmp_path / "missing.duckdb"), "SELECT 1"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr
