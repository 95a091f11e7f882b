"""One place that turns input errors of any ``blender`` command into ``error: ...`` and exit 2.

Users get one line naming the file (and line, where the reader knows it) and the problem, never a
traceback; programming errors (anything not listed in :data:`INPUT_ERRORS`) still propagate.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer

__all__ = ["INPUT_ERRORS", "cli_errors", "error_line"]

INPUT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # missing, unreadable or unwritable files and folders
    ValueError,  # MixInstructError, OutputPathError, CheckpointError, UnicodeDecodeError, ...
    KeyError,  # a missing metric or field named by the data
    RecursionError,  # pathologically nested input
)
"""The exception types that mean "bad input or environment", reported without a traceback."""

F = TypeVar("F", bound=Callable[..., Any])


def error_line(exc: BaseException) -> str:
    """``exc`` as the one-line message ``error: ...`` (``KeyError`` without its quotes)."""
    if isinstance(exc, KeyError) and exc.args:
        message = str(exc.args[0])
    elif isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        message = f"{exc.filename}: {exc.strerror}"
    elif isinstance(exc, UnicodeDecodeError):
        message = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
    elif isinstance(exc, RecursionError):
        message = "input nested too deeply"
    else:
        message = str(exc) or type(exc).__name__
    return "error: " + " ".join(message.split())


def cli_errors(command: F) -> F:
    """Decorate a typer command: input errors -> one ``error:`` line on stderr and exit code 2.

    Example:
        .. code-block:: python

            @app.command("eval")
            @cli_errors
            def evaluate_command(...): ...
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except INPUT_ERRORS as exc:
            typer.echo(error_line(exc), err=True)
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]
