"""The ``blender`` command line: rank, demo, eval, train-ranker, train-fuser, serve, calibrate.

Each sub-command lives in its own module and registers itself on :data:`app`; heavy imports
happen inside the commands.
"""

from __future__ import annotations

import importlib

import typer

__all__ = ["app", "main"]

app = typer.Typer(
    name="blender",
    help="LLM-Blender: rank and fuse the answers of several LLMs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """LLM-Blender: rank and fuse the answers of several LLMs."""
    # A callback keeps typer in multi-command mode even if only one command is registered.
    # The process is ours: reuse big tensor blocks instead of mmap/munmap per forward.
    from blender_core.allocator import tune_malloc

    tune_malloc()


_COMMAND_MODULES = ("rank", "demo", "evaluate", "train", "serve", "calibrate")


def _register_commands() -> None:
    for name in _COMMAND_MODULES:
        try:
            importlib.import_module(f"blender_core.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"blender_core.cli.{name}":
                raise


def main() -> None:
    """Entry point of the ``blender`` script."""
    _register_commands()
    app()
