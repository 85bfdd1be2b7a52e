"""Every command's --help helps: each option says what it does, a default shows once
(never for a required option), and the help ends with an example that parses."""

from __future__ import annotations

import argparse
import shlex

import pytest

from sporeprint.cli import HelpFormatter, build_parser

# train and calibrate document their options in their own module; they are left out here
NOT_CHECKED: set[str] = set()


def _walk(parser: argparse.ArgumentParser, name: str):
    """(name, parser) of ``parser`` and every sub-parser below it."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _walk(sub, f"{name} {sub_name}".strip())


def _parsers():
    top, subparsers = build_parser()
    out = [("sporeprint", top)]
    for name, p in subparsers.items():
        if name not in NOT_CHECKED:
            out += [(f"sporeprint {n}", q) for n, q in _walk(p, name)]
    return out


PARSERS = _parsers()
IDS = [name for name, _ in PARSERS]


def _option_help(parser, action) -> str:
    formatter = parser._get_formatter()
    return formatter._expand_help(action) if action.help is not None else ""


@pytest.mark.parametrize(("name", "parser"), PARSERS, ids=IDS)
def test_every_option_has_help_and_one_default(name, parser):
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        flag = "/".join(action.option_strings) or action.dest
        text = _option_help(parser, action)
        assert text.strip(), f"{name} {flag} has no help line"
        assert text.count("(default") <= 1, f"{name} {flag}: {text!r}"
        assert "(default: None)" not in text, f"{name} {flag}: {text!r}"
        if action.required:
            assert "(default" not in text, f"{name} {flag} is required but shows a default"


@pytest.mark.parametrize(("name", "parser"), PARSERS, ids=IDS)
def test_help_ends_with_an_example_that_parses(name, parser):
    help_text = parser.format_help()
    assert parser.epilog and parser.epilog.startswith("example"), f"{name} has no example"
    assert help_text.rstrip().endswith(parser.epilog.splitlines()[-1].strip())
    top, _ = build_parser()
    for line in parser.epilog.splitlines()[1:]:
        argv = shlex.split(line)
        assert argv[0] == "sporeprint"
        if "--help" in argv:
            continue
        args = top.parse_args(argv[1:])  # exits (fails the test) on a wrong option
        assert f"sporeprint {args.command}" in name or name == "sporeprint"


def test_formatter_appends_defaults_only_where_useful():
    p = argparse.ArgumentParser(formatter_class=HelpFormatter)
    p.add_argument("--a", default=3, help="plain")
    p.add_argument("--b", default=3, help="says it (default: three)")
    p.add_argument("--c", required=True, default="x", help="required")
    p.add_argument("--d", default=None, help="no default")
    p.add_argument("--e", action="store_true", help="a flag")
    helps = {a.dest: _option_help(p, a) for a in p._actions if a.dest != "help"}
    assert helps == {"a": "plain (default: 3)", "b": "says it (default: three)",
                     "c": "required", "d": "no default", "e": "a flag"}
