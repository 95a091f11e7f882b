"""``blender serve`` as a real subprocess, driven by real clients (one server for the module).

Members are deterministic: ``static`` members and a fake OpenAI-compatible upstream (ok, 500,
hanging, garbage, credentials in its URL). Rankers: random (seeded) and a tiny random PairRanker
checkpoint, which ``/v1/rerank`` shares.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serve_helpers import FakeUpstream, Server, running, streamed_chunks
from toml_tables import ensemble, openai_member, static_member, static_members, table

openai = pytest.importorskip("openai")

KEY = "test-server-key-0123456789"
UPSTREAM_KEY = "sk-upstream-secret-abcdef123456"
URL_PASSWORD = "hunter2-url-password"
FUSED = "Blended answer: Paris is the capital."


def _config(upstream: FakeUpstream, pairrm: Path, genfuser: Path) -> str:
    port = upstream.server.server_address[1]
    tiny_pairrm = {"type": "pairrm", "checkpoint": pairrm, "device": "cpu", "dtype": "float32"}
    select = {"type": "select"}
    return (
        table(
            "server",
            max_concurrency=32,
            max_body_bytes=20000,
            max_text_chars=2000,
            max_documents=20,
            max_tokens=512,
            request_timeout=30,
        )
        + static_members(
            alpha="Paris is the capital of France.",
            beta="The capital of France is Paris.",
            gamma="Lyon, I think.",
            writer=FUSED,
            echo="You said: {prompt}",
        )
        + openai_member("up", upstream.base_url("ok"), model="up-model", api_key_env="UPSTREAM_KEY")
        + openai_member("broken", upstream.base_url("error"), api_key_env="UPSTREAM_KEY")
        + openai_member("stuck", upstream.base_url("hang"), timeout=1.0)
        + openai_member("junk", upstream.base_url("garbage"))
        + openai_member("cred", f"http://user:{URL_PASSWORD}@127.0.0.1:{port}/badshape/v1")
        + ensemble(
            "default",
            ["alpha", "beta", "gamma"],
            fuser={"type": "llm", "member": "writer"},
            top_k=2,
            description="three static members, a static writer",
        )
        + ensemble("mixed", ["alpha", "up"], fuser=select)
        + ensemble("ranked", ["alpha", "beta", "gamma"], ranker=tiny_pairrm, fuser=select)
        + static_member("judge", "A is better")
        + ensemble(
            "judged",
            ["alpha", "beta", "gamma"],
            ranker={"type": "llm_judge", "member": "judge"},
            fuser={"type": "genfuser", "checkpoint": genfuser, "device": "cpu"},
        )
        + ensemble(
            "faulty",
            ["alpha", "up", "broken", "stuck", "junk", "cred"],
            fuser=select,
            timeout=5,
        )
        + ensemble("down", ["broken", "stuck", "junk", "cred"], timeout=5)
        + table("rerankers.tiny", **tiny_pairrm)
    )


@pytest.fixture(scope="module")
def server(
    upstream: FakeUpstream,
    tiny_pairrm_dir: Path,
    tiny_genfuser_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    with running(
        _config(upstream, tiny_pairrm_dir, tiny_genfuser_dir),
        tmp_path_factory.mktemp("serve"),
        args=("--api-key-env", "BLENDER_TEST_KEY"),
        env={"BLENDER_TEST_KEY": KEY, "UPSTREAM_KEY": UPSTREAM_KEY},
    ) as running_server:
        yield running_server


@pytest.fixture
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=30)


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30
    ) as c:
        yield c


QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def _no_secrets(text: str) -> None:
    for secret in (UPSTREAM_KEY, URL_PASSWORD, KEY):
        assert secret not in text


# -- the official openai SDK --------------------------------------------------------------------


def test_sync_sdk_gets_a_blended_answer(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(model="default", messages=QUESTION)
    assert response.choices[0].message.content == FUSED
    assert response.choices[0].finish_reason == "stop"
    assert response.object == "chat.completion"
    assert response.id.startswith("chatcmpl-")
    assert response.usage is not None
    blend = response.model_extra["blend"]
    assert blend["ensemble"] == "default"
    assert blend["candidates"] == {
        "alpha": "Paris is the capital of France.",
        "beta": "The capital of France is Paris.",
        "gamma": "Lyon, I think.",
    }
    assert sorted(blend["ranking"]["order"]) == [0, 1, 2]
    assert len(blend["top_k"]) == 2
    assert set(blend["latencies"]) == {"alpha", "beta", "gamma"}
    assert blend["failures"] == []


def test_async_sdk_concurrent_requests(server: Server) -> None:
    async def main() -> list[str]:
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY, max_retries=0) as c:
            responses = await asyncio.gather(
                *(
                    c.chat.completions.create(
                        model="default",
                        messages=[{"role": "user", "content": f"question {i}"}],
                    )
                    for i in range(8)
                )
            )
        return [r.choices[0].message.content or "" for r in responses]

    assert asyncio.run(main()) == [FUSED] * 8


def test_streaming_sdk_streams_the_fused_answer(client: openai.OpenAI) -> None:
    chunks = streamed_chunks(client, "default", QUESTION)
    deltas = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert "".join(deltas) == FUSED
    assert len(deltas) == len(FUSED.split(" "))  # the writer streams word by word
    assert chunks[0].choices[0].delta.role == "assistant"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    assert len(finals) == 1
    assert finals[0].model_extra["blend"]["candidates"]["alpha"].startswith("Paris")
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


def test_passthrough_member_and_upstream_usage(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    response = client.chat.completions.create(model="up", messages=QUESTION, max_tokens=32)
    assert response.choices[0].message.content == (
        "upstream answer to: What is the capital of France?"
    )
    assert response.usage is not None
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (7, 5)
    assert "blend" not in (response.model_extra or {})
    sent = [r for r in upstream.requests if r["mode"] == "ok"][-1]
    assert sent["auth"] == f"Bearer {UPSTREAM_KEY}"
    assert sent["body"]["model"] == "up-model"  # type: ignore[index]
    assert sent["body"]["max_tokens"] == 32  # type: ignore[index]


def test_streamed_passthrough_counts_the_upstream_usage(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    chunks = streamed_chunks(client, "up", QUESTION)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "upstream answer to: What is the capital of France?"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (7, 5)
    sent = [r for r in upstream.requests if r["mode"] == "ok"][-1]
    assert sent["body"]["stream_options"] == {"include_usage": True}  # type: ignore[index]


def test_usage_is_summed_over_members(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(model="mixed", messages=QUESTION)
    assert response.usage is not None and response.usage.total_tokens == 12
    assert response.model_extra["blend"]["usage_by_member"]["up"]["prompt_tokens"] == 7


def test_chat_history_reaches_members(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="echo",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "second"}]},
        ],
    )
    assert response.choices[0].message.content == "You said: second"


def test_passthrough_streaming(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="echo", messages=QUESTION, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "You said: What is the capital of France?"


def test_pairranker_ensemble(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(model="ranked", messages=QUESTION)
    blend = response.model_extra["blend"]
    assert blend["ranking"]["strategy"] in ("max_logits", "top_k")
    assert response.choices[0].message.content == blend["best"]


def test_llm_judge_ranker_and_genfuser(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(model="judged", messages=QUESTION, max_tokens=8)
    blend = response.model_extra["blend"]
    assert blend["failures"] == []
    assert len(blend["ranking"]["matrix"]) == 3  # judged pairwise: a full pair matrix
    assert isinstance(response.choices[0].message.content, str)  # a tiny random GenFuser


def test_models_lists_ensembles_members_and_rerankers(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids[:6] == ["default", "mixed", "ranked", "judged", "faulty", "down"]
    assert {"alpha", "up", "writer", "tiny"} <= set(ids)


# -- completions, rerank, health, metrics -------------------------------------------------------


def test_completions_endpoint(client: openai.OpenAI) -> None:
    response = client.completions.create(model="default", prompt="Capital of France?")
    assert response.choices[0].text == FUSED
    assert response.object == "text_completion"
    assert response.model_extra["blend"]["ensemble"] == "default"
    stream = client.completions.create(model="echo", prompt="hi there", stream=True)
    assert "".join(c.choices[0].text for c in stream if c.choices) == "You said: hi there"


def test_rerank_cohere_shape(http: httpx.Client) -> None:
    documents = ["Paris is in France.", "Bananas are yellow.", "The Eiffel tower is in Paris."]
    response = http.post(
        "/v1/rerank",
        json={
            "model": "tiny",
            "query": "Where is Paris?",
            "documents": documents,
            "top_n": 2,
            "return_documents": True,
        },
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 2
    assert results[0]["relevance_score"] >= results[1]["relevance_score"]
    for item in results:
        assert item["document"]["text"] == documents[item["index"]]
    every = http.post(
        "/v1/rerank",
        json={"query": "Where is Paris?", "documents": [{"text": d} for d in documents]},
    ).json()["results"]
    assert sorted(r["index"] for r in every) == [0, 1, 2]
    assert "document" not in every[0]
    scores = [r["relevance_score"] for r in every]
    assert scores == sorted(scores, reverse=True)


def test_health_ready_metrics(server: Server, http: httpx.Client, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="ranked", messages=QUESTION)
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/ready").json() == {"status": "ready"}
    assert httpx.get(f"{server.url}/metrics").status_code == 401  # the key guards metrics
    text = http.get("/metrics").text
    assert 'blender_requests_total{endpoint="chat",model="default",status="200"}' in text
    assert 'blender_stage_seconds_count{stage="ranking"}' in text
    assert 'blender_member_calls_total{member="alpha"}' in text
    assert 'blender_ranker_pairs_total{ranker="ensemble:ranked"}' in text
    assert "blender_ranker_batch_fill" in text
    assert "blender_in_flight_requests 0.0" in text
    _no_secrets(text)


# -- faults -------------------------------------------------------------------------------------


def test_failing_members_are_reported_and_the_answer_served(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(model="faulty", messages=QUESTION)
    blend = response.model_extra["blend"]
    assert set(blend["candidates"]) == {"alpha", "up"}
    failures = {f["model"]: f for f in blend["failures"]}
    assert set(failures) == {"broken", "stuck", "junk", "cred"}
    assert failures["stuck"]["kind"] in ("timeout", "error")
    assert "500" in failures["broken"]["message"]
    assert "not JSON" in failures["junk"]["message"]
    assert "choices" in failures["cred"]["message"]
    _no_secrets(json.dumps(blend))
    assert response.choices[0].message.content in blend["candidates"].values()


def test_all_members_down_is_502_naming_each(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json={"model": "down", "messages": QUESTION})
    assert response.status_code == 502
    error = response.json()["error"]
    for name in ("broken", "stuck", "junk", "cred"):
        assert name in error["message"]
    assert {f["model"] for f in error["failures"]} == {"broken", "stuck", "junk", "cred"}
    _no_secrets(response.text)
    stream = http.post(
        "/v1/chat/completions", json={"model": "down", "messages": QUESTION, "stream": True}
    )
    assert stream.status_code == 502


def test_passthrough_member_failure_is_502(client: openai.OpenAI, http: httpx.Client) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="broken", messages=QUESTION)
    assert info.value.status_code == 502
    response = http.post("/v1/chat/completions", json={"model": "cred", "messages": QUESTION})
    assert response.status_code == 502
    _no_secrets(response.text)


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        (b"[1, 2]", 400, None),
        (json.dumps({"model": "default"}).encode(), 422, "messages"),
        (json.dumps({"model": "default", "messages": "hi"}).encode(), 422, "messages"),
        (json.dumps({"model": 3, "messages": QUESTION}).encode(), 422, "model"),
        (
            json.dumps({"model": "default", "messages": [{"role": "user", "content": 5}]}).encode(),
            422,
            "messages[0].content",
        ),
        (
            json.dumps(
                {"model": "default", "messages": [{"role": "wizard", "content": "x"}]}
            ).encode(),
            422,
            "messages[0].role",
        ),
        (
            json.dumps({"model": "default", "messages": QUESTION, "temperature": "hot"}).encode(),
            422,
            "temperature",
        ),
        (
            json.dumps({"model": "default", "messages": QUESTION, "max_tokens": 100000}).encode(),
            422,
            "max_tokens",
        ),
        (json.dumps({"model": "default", "messages": QUESTION, "n": 3}).encode(), 422, "n"),
        (json.dumps({"model": "nope", "messages": QUESTION}).encode(), 404, "model"),
        (
            json.dumps(
                {"model": "default", "messages": [{"role": "user", "content": "x" * 3000}]}
            ).encode(),
            413,
            "messages[0].content",
        ),
        (
            json.dumps({"model": "default", "messages": QUESTION, "pad": "y" * 30000}).encode(),
            413,
            None,
        ),
    ],
)
def test_bad_requests_get_clear_4xx(
    http: httpx.Client, body: bytes, status: int, param: str | None
) -> None:
    response = http.post(
        "/v1/chat/completions", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if param is not None:
        assert error["param"] == param


def test_bad_rerank_requests(http: httpx.Client) -> None:
    assert http.post("/v1/rerank", json={"query": "q", "documents": []}).status_code == 422
    assert http.post("/v1/rerank", json={"query": "q", "documents": [1, 2]}).status_code == 422
    too_many = {"query": "q", "documents": ["d"] * 25}
    assert http.post("/v1/rerank", json=too_many).status_code == 422
    unknown = http.post("/v1/rerank", json={"model": "x", "query": "q", "documents": ["d"]})
    assert unknown.status_code == 404 and "tiny" in unknown.json()["error"]["message"]


def test_missing_or_wrong_key_is_401(server: Server) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        response = httpx.post(
            f"{server.base_url}/chat/completions",
            json={"model": "default", "messages": QUESTION},
            headers=headers,
        )
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
    wrong = openai.OpenAI(base_url=server.base_url, api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model="default", messages=QUESTION)
    assert httpx.get(f"{server.url}/health").status_code == 200  # liveness needs no key


def test_server_unaffected_by_bad_requests(client: openai.OpenAI, server: Server) -> None:
    assert server.process.poll() is None
    response = client.chat.completions.create(model="default", messages=QUESTION)
    assert response.choices[0].message.content == FUSED
    _no_secrets(server.output())


# -- other clients ------------------------------------------------------------------------------


def test_langchain_chat_openai(server: Server) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    chat = langchain_openai.ChatOpenAI(
        model="default", base_url=server.base_url, api_key=KEY, max_retries=0, timeout=30
    )
    assert chat.invoke("What is the capital of France?").content == FUSED
    assert "".join(str(c.content) for c in chat.stream("Capital?")) == FUSED
    assert asyncio.run(chat.ainvoke("Capital?")).content == FUSED


def test_llamaindex_openai_like(server: Server) -> None:
    openai_like = pytest.importorskip("llama_index.llms.openai_like")
    from llama_index.core.llms import ChatMessage

    llm = openai_like.OpenAILike(
        model="default",
        api_base=server.base_url,
        api_key=KEY,
        is_chat_model=True,
        context_window=4096,
        max_retries=0,
        timeout=30,
    )
    assert llm.chat([ChatMessage(role="user", content="Capital?")]).message.content == FUSED
    assert llm.complete("Capital?").text == FUSED
    streamed = "".join(r.delta or "" for r in llm.stream_complete("Capital?"))
    assert streamed == FUSED
