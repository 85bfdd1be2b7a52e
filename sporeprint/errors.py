"""Errors of the application and which exceptions count as a user's mistake.

A user error is printed by the CLI as one line, ``error: <message>``, with exit
code 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class SporeprintError(Exception):
    """A problem with the user's input or files; the message names the value and the fix."""


class CommandError(SporeprintError):
    """A bad combination of command-line options."""


def user_error_types() -> tuple[type[BaseException], ...]:
    """The error bases of the application and of each library it composes.

    Imported here, not at module import time, so ``sporeprint --help`` stays instant.
    """
    from heads.errors import HeadsError
    from retrieval.errors import RetrievalError
    from store.errors import StoreError

    types: list[type[BaseException]] = [SporeprintError, StoreError, RetrievalError, HeadsError,
                                        FileNotFoundError, PermissionError, IsADirectoryError]
    try:
        from embedder.errors import EmbedderError
    except ImportError:  # embedder not installed alongside
        pass
    else:
        types.append(EmbedderError)
    return tuple(types)
