from __future__ import annotations

import subprocess
import sys

import pytest

import blender_core
from blender_core.devices import resolve_device, resolve_dtype
from blender_core.types import prompt_to_text


def test_import_is_light() -> None:
    code = (
        "import sys, blender_core, blender_core.testing, langchain_blender, llamaindex_blender;"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_export_resolves() -> None:
    for name in blender_core.__all__:
        assert getattr(blender_core, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        blender_core.Nope  # noqa: B018


def test_resolve_dtype() -> None:
    import torch

    cpu = torch.device("cpu")
    assert resolve_device("cpu") == cpu
    assert resolve_dtype(None, cpu) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.float16
    assert resolve_dtype(None, torch.device("cuda"), gpu_default="bfloat16") == torch.bfloat16
    assert resolve_dtype("bf16", cpu) == torch.bfloat16
    assert resolve_dtype(torch.float16, cpu) == torch.float16
    with pytest.raises(ValueError, match="unsupported dtype 'int8'"):
        resolve_dtype("int8", cpu)


def test_prompt_to_text() -> None:
    assert prompt_to_text("hi") == "hi"
    chat = [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second"},
    ]
    assert prompt_to_text(chat) == "second"
    with pytest.raises(ValueError, match="user message"):
        prompt_to_text([{"role": "system", "content": "x"}])


def test_cli_lists_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from blender_core.cli import main; main()", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for command in ("rank", "demo", "eval", "train-ranker", "train-fuser"):
        assert command in result.stdout, command


def test_all_lists_every_export() -> None:
    from blender_core import _EXPORTS

    assert set(blender_core.__all__) == set(_EXPORTS) | {"__version__"}
