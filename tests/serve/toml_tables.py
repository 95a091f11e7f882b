"""The TOML tables of a test's ``blend.toml``: :func:`table`, :func:`static_member`,
:func:`static_members`, :func:`openai_member` and :func:`ensemble`, each a string to join."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

RANDOM_RANKER = {"type": "random", "seed": 0}


def toml_value(value: object) -> str:
    """``value`` as a TOML value: a string, number, boolean, path, array or inline table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML value for {type(value).__name__}")


def table(name: str, **fields: object) -> str:
    """The TOML table ``[name]`` with ``fields``, a blank line before it."""
    return f"\n[{name}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in fields.items())


def static_member(name: str, text: str, **fields: object) -> str:
    """``[members.NAME]`` of a static member answering ``text`` (``delay``, ``word_delay``...)."""
    return table(f"members.{name}", type="static", text=text, **fields)


def static_members(**texts: str) -> str:
    """One static member a keyword: its name and the text it answers."""
    return "".join(static_member(name, text) for name, text in texts.items())


def openai_member(name: str, base_url: str, *, model: str = "m", **fields: object) -> str:
    """``[members.NAME]`` of an OpenAI-compatible member at ``base_url``."""
    return table(f"members.{name}", type="openai", base_url=base_url, model=model, **fields)


def ensemble(
    name: str,
    members: Sequence[str],
    *,
    ranker: Mapping[str, object] = RANDOM_RANKER,
    **fields: object,
) -> str:
    """``[ensembles.NAME]`` over ``members``, ranked by a seeded random ranker unless given."""
    return table(f"ensembles.{name}", members=list(members), ranker=ranker, **fields)
