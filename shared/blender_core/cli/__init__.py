"""The ``blender`` command line: rank, demo, eval, train-ranker, train-fuser, serve, calibrate,
train-router, eval-policies.

Each sub-command lives in its own module and registers itself on :data:`app`; heavy imports
happen inside the commands.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperGroup

__all__ = ["app", "main"]


class _CommandList(TyperGroup):
    """The command list with each command's first sentence in full, wrapped to the terminal.

    click cuts a short help to the width left beside the command names ("...") at 80 columns.
    """

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


app = typer.Typer(
    cls=_CommandList,
    name="blender",
    help="LLM-Blender: rank and fuse the answers of several LLMs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # click's plain help: it wraps to the terminal and never cuts an option's name; rich's
    # boxed tables cut names and squeeze the help text into a narrow column at 80 columns.
    rich_markup_mode=None,
)


@app.callback()
def _root() -> None:
    """LLM-Blender: rank and fuse the answers of several LLMs."""
    # A callback keeps typer in multi-command mode even if only one command is registered.
    # The process is ours: reuse big tensor blocks instead of mmap/munmap per forward.
    from blender_core.allocator import tune_malloc

    tune_malloc()


_COMMAND_MODULES = ("rank", "demo", "evaluate", "train", "serve", "calibrate", "policies")


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
