import subprocess
import sys

import pytest

from sporeprint.cli import COMMANDS, build_parser, main


def test_every_command_registers_and_has_help(capsys):
    text = build_parser()[0].format_help()
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


def test_user_errors_are_one_line_but_bugs_keep_their_traceback(monkeypatch, capsys):
    import sporeprint.commands.evaluate as evaluate

    def buggy(args):
        raise ValueError("an internal bug")

    monkeypatch.setattr(evaluate, "run", buggy)
    with pytest.raises(ValueError, match="internal bug"):  # not swallowed into one line
        main(["evaluate", "--predictions", "p.csv", "--truth", "t.csv"])


def test_commands_do_not_import_the_cli_back():
    import pathlib

    for path in pathlib.Path(__file__).resolve().parents[1].glob("sporeprint/commands/*.py"):
        assert "sporeprint.cli" not in path.read_text(), path.name
