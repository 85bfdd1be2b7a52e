"""The ``sporeprint`` command.

Each subcommand lives in ``sporeprint/commands/<name>.py`` and defines
``HELP`` (one line), ``EXAMPLE`` (command lines that end its ``--help``),
``add_arguments(parser)`` and ``run(args) -> int``.
Command modules import heavy libraries (torch, faiss) inside ``run`` so that
``sporeprint --help`` stays instant. Errors a user can fix (see
:func:`sporeprint.errors.user_error_types`) print one line and exit 2; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import keyword
import logging
import re
import sys

from sporeprint import __version__
from sporeprint.errors import CommandError, user_error_types

# Order is the order shown by --help.
COMMANDS = [
    "demo",
    "simulate",
    "ingest",
    "sql",
    "export",
    "import",
    "embed",
    "index",
    "search",
    "train",
    "calibrate",
    "enroll",
    "score",
    "decide",
    "evaluate",
    "report",
    "serve",
]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the descriptions' and examples' line breaks and shows each option's default
    once: appended as ``(default: X)`` unless the option is required, is a flag, has no
    default, or its help already says what the default is."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (action.required or not action.option_strings or default in (None, False)
                or default is argparse.SUPPRESS or re.search(r"\bdefault\b", text)):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


def example_epilog(example: str) -> str:
    """The ``example:`` block that ends a command's help: one command line per line."""
    lines = [line.strip() for line in example.strip().splitlines()]
    return "example" + ("s" if len(lines) > 1 else "") + ":\n" + "\n".join(f"  {x}" for x in lines)


def _module_name(name: str) -> str:
    return name + "_" if keyword.iskeyword(name) else name  # `import` lives in import_.py


def _load(name: str):
    return importlib.import_module(f"sporeprint.commands.{_module_name(name)}")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and each subcommand's parser (for usage in error messages)."""
    parser = argparse.ArgumentParser(
        prog="sporeprint", allow_abbrev=False, formatter_class=HelpFormatter,
        description="Which fungus is in the photo, and could it poison someone? "
        "A DuckDB feature store of image embeddings, FAISS look-alike search and "
        "trained classifier heads. Start with `sporeprint demo`.",
        epilog=example_epilog("sporeprint demo --dir demo-run\nsporeprint search --help"),
    )
    parser.add_argument("--version", action="version", version=f"sporeprint {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers: dict[str, argparse.ArgumentParser] = {}
    for name in COMMANDS:
        try:
            module = _load(name)
        except ModuleNotFoundError as exc:  # an optional command whose module is absent
            if exc.name != f"sporeprint.commands.{_module_name(name)}":
                raise
            continue
        example = getattr(module, "EXAMPLE", None)
        p = sub.add_parser(name, help=module.HELP, description=module.__doc__,
                           epilog=example_epilog(example) if example else None,
                           allow_abbrev=False, formatter_class=HelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
        subparsers[name] = p
    return parser, subparsers


def main(argv: list[str] | None = None) -> int:
    parser, subparsers = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # name the subcommand's usage, not the top level's
        target = subparsers.get(getattr(args, "command", None) or "", parser)
        target.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which SIMD build loaded
    if not getattr(args, "_run", None):
        parser.print_help()
        return 1
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(getattr(args, "interrupt_message",
                      "interrupted: work committed so far is kept; run the command again to "
                      "continue"), file=sys.stderr)
        return 130
    except user_error_types() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


__all__ = ["COMMANDS", "CommandError", "HelpFormatter", "build_parser", "example_epilog", "main"]
