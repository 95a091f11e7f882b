"""``blender serve``: an OpenAI-compatible gateway that blends (extra ``serve``).

Point any OpenAI client at it: ``model`` names an ensemble (its members answer, a ranker ranks,
a fuser fuses) or a single member (pass-through); ``tools`` are answered with the members'
tool calls, ranked and selected. Also ``/v1/completions``, ``/v1/models``, ``/v1/rerank``
(Cohere/Jina/TEI shape), ``/health``, ``/ready``, ``/metrics`` and the blend inspector page at
``/``. See ``docs/serve.md``.

Example:
    .. code-block:: python

        from blender_core.serve import create_app, load_config

        app = create_app(load_config("blend.toml"))
"""

from __future__ import annotations

from typing import Any

from blender_core.serve.config import (
    EXAMPLE_CONFIG,
    ConfigError,
    ServeConfig,
    load_config,
    parse_config,
)

__all__ = [
    "EXAMPLE_CONFIG",
    "ConfigError",
    "Gateway",
    "ServeConfig",
    "create_app",
    "load_config",
    "parse_config",
    "run",
]


def __getattr__(name: str) -> Any:
    # FastAPI and the models are imported only when the app is wanted.
    if name in ("create_app", "run"):
        from blender_core.serve import app

        return getattr(app, name)
    if name == "Gateway":
        from blender_core.serve.gateway import Gateway

        return Gateway
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
