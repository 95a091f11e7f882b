"""CallableGenerator: sync and async functions, from sync and async code."""

from __future__ import annotations

import asyncio
import functools
import threading
from typing import Any

import pytest

from blender_core import CallableGenerator
from blender_core.generators.base import Generator


def echo(prompt: Any, **kwargs: Any) -> str:
    return f"{prompt}|{sorted(kwargs.items())}|{threading.current_thread().name}"


async def aecho(prompt: Any, suffix: str = "") -> str:
    await asyncio.sleep(0)
    return f"async {prompt}{suffix}"


def test_sync_function() -> None:
    gen = CallableGenerator(echo)
    assert isinstance(gen, Generator)
    assert gen.name == "echo"
    assert gen.generate("hi", t=1).startswith("hi|[('t', 1)]|")


async def test_sync_function_async_runs_in_worker_thread() -> None:
    gen = CallableGenerator(echo, name="e")
    out = await gen.agenerate("hi")
    assert out.startswith("hi|[]|") and "MainThread" not in out


def test_async_function_from_sync_code() -> None:
    gen = CallableGenerator(aecho)
    assert gen.is_async
    assert gen.generate("x", suffix="!") == "async x!"


async def test_async_function_awaited_natively() -> None:
    gen = CallableGenerator(aecho)
    assert await gen.agenerate("y") == "async y"


async def test_async_function_called_sync_inside_running_loop() -> None:
    # A sync call from inside a running loop must not deadlock or raise.
    assert CallableGenerator(aecho).generate("z") == "async z"


def test_partial_and_callable_objects() -> None:
    class Bot:
        async def __call__(self, prompt: Any, **kwargs: Any) -> str:
            return "bot"

    assert CallableGenerator(Bot()).is_async
    assert CallableGenerator(Bot()).name == "Bot"
    assert CallableGenerator(functools.partial(aecho, suffix="?")).generate("p") == "async p?"
    assert CallableGenerator(lambda p, **k: "l").name == "lambda"


def test_chat_prompt_passes_through() -> None:
    seen: list[Any] = []
    chat = [{"role": "user", "content": "hi"}]

    def record(prompt: Any, **kwargs: Any) -> str:
        seen.append(prompt)
        return "ok"

    CallableGenerator(record).generate(chat)
    assert seen == [chat]


async def test_bad_return_type() -> None:
    gen = CallableGenerator(lambda p, **k: 42, name="bad")
    with pytest.raises(TypeError, match=r"'bad'.*must return a str, got int"):
        gen.generate("x")
    with pytest.raises(TypeError, match="got int"):
        await gen.agenerate("x")

    async def none(prompt: Any) -> None:
        return None

    with pytest.raises(TypeError, match="NoneType"):
        await CallableGenerator(none).agenerate("x")


def test_bad_construction() -> None:
    with pytest.raises(TypeError, match="callable"):
        CallableGenerator("not callable")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty name"):
        CallableGenerator(echo, name="")


def test_exceptions_propagate() -> None:
    def boom(prompt: Any) -> str:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        CallableGenerator(boom).generate("x")
