"""The ``sporeprint`` command.

Each subcommand lives in ``sporeprint/commands/<name>.py`` and defines
``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Command modules import heavy libraries (torch, faiss) inside ``run`` so that
``sporeprint --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import keyword
import logging
import sys

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
    "score",
    "evaluate",
    "report",
]


class CommandError(Exception):
    """A user-facing failure: printed as ``error: <message>`` with exit code 2."""


def _module_name(name: str) -> str:
    return name + "_" if keyword.iskeyword(name) else name  # `import` lives in import_.py


def _load(name: str):
    return importlib.import_module(f"sporeprint.commands.{_module_name(name)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sporeprint",
        description="Which fungus is in the photo, and could it poison someone? "
        "A DuckDB feature store of image embeddings, FAISS look-alike search and "
        "trained classifier heads. Start with `sporeprint demo`.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = _load(name)
        except ModuleNotFoundError as exc:  # a command still being built
            if exc.name != f"sporeprint.commands.{_module_name(name)}":
                raise
            continue
        p = sub.add_parser(name, help=module.HELP, description=module.__doc__)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
        print("interrupted: work committed so far is kept; run the command again to resume",
              file=sys.stderr)
        return 130
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # library errors carry user-facing messages
        if _is_user_error(exc):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


def _is_user_error(exc: Exception) -> bool:
    """Library errors (store.StoreError, retrieval.RetrievalError, heads.HeadsError)
    and bad-input errors are shown as one line, without a traceback."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"StoreError", "RetrievalError", "HeadsError", "ValueError",
                         "FileNotFoundError", "PermissionError"})
