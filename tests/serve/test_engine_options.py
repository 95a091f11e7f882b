"""The gateway's side of the one engine: rerank reads declared ranker abilities, a member's
failure kind is its cause on every path, and ``[ensembles.NAME]`` takes the fronts' options
(names and defaults of ``blender_core.engine.DEFAULT_OPTIONS``), wired to the engine.

In-process :class:`Gateway` objects over ``static`` members, plain Python members and the fake
OpenAI-compatible upstream; the random ranker (seeded), so nothing loads a model.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from serve_helpers import FakeUpstream
from toml_tables import ensemble, openai_member, static_member, static_members

from blender_core.engine import DEFAULT_OPTIONS
from blender_core.generators.callable import CallableGenerator
from blender_core.generators.errors import GeneratorTimeoutError
from blender_core.priors import MemberPriors
from blender_core.ranking import Ranking
from blender_core.serve.config import ConfigError, EnsembleConfig, parse_config
from blender_core.serve.errors import ApiError
from blender_core.serve.gateway import Gateway, ToolRequest

SERVE = Path(__file__).resolve().parents[2] / "shared" / "blender_core" / "serve"
CHAT = [{"role": "user", "content": "What is the capital of France?"}]
TOOLS = {
    "tools": [
        {
            "type": "function",
            "function": {"name": "capital", "parameters": {"type": "object", "properties": {}}},
        }
    ]
}


def _gateway(text: str) -> Gateway:
    gateway = Gateway(parse_config(text))
    gateway.load()
    assert gateway.load_error is None
    return gateway


# -- 1. rerank reads declared abilities ---------------------------------------------------------


class _Recording:
    """A ranker that records the options each arank call gets (score: the document length)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def rank(self, instruction: str, candidates: Sequence[str], **options: Any) -> Ranking:
        self.calls.append(options)
        return Ranking.from_scores([float(len(c)) for c in candidates])

    def rank_batch(self, instructions: Sequence[str], lists: Sequence[Sequence[str]]) -> Any:
        return [self.rank(i, c) for i, c in zip(instructions, lists, strict=True)]

    async def arank(self, instruction: str, candidates: Sequence[str], **options: Any) -> Ranking:
        return self.rank(instruction, candidates, **options)


class _SelectsTopK(_Recording):
    """Declares (``RankerAbilities.selects_top_k``) that it selects the best K itself."""

    strategies: ClassVar[tuple[str, ...]] = ("max_logits",)

    def selects_top_k(self, strategy: str | None) -> bool:
        return True


def test_rerank_passes_top_k_only_to_a_ranker_that_declares_it_selects() -> None:
    gateway = _gateway(static_members(a="x"))
    documents = ["a", "bbb", "cc", "dddd"]
    plain, selecting = _Recording(), _SelectsTopK()
    assert asyncio.run(gateway.rerank(plain, "q", documents, 2)) == [(3, 4.0), (1, 3.0)]
    assert plain.calls == [{}]  # no ability declared: every document ranked
    asyncio.run(gateway.rerank(selecting, "q", documents, 2))
    assert selecting.calls == [{"top_k": 2}]  # declared: it selects the best 2 itself
    asyncio.run(gateway.rerank(selecting, "q", documents, None))
    asyncio.run(gateway.rerank(selecting, "q", documents, 4))  # all of them: no selection
    assert selecting.calls[1:] == [{}, {}]


def test_serve_tests_no_concrete_ranker_classes() -> None:
    concrete = re.compile(r"isinstance\([^)]*,\s*\(?[\w., ]*Ranker\b")
    found = [
        f"{path.name}:{n}"
        for path in sorted(SERVE.glob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if concrete.search(line)
    ]
    assert found == []


# -- 3. the failure kind is the cause, on every path --------------------------------------------


def _timeouts_config(upstream: FakeUpstream) -> str:
    return (
        static_members(alpha="Paris.")
        + openai_member("slowup", upstream.base_url("hang"), timeout=0.5)
        + static_member("late", "Too late.", delay=5)
        + ensemble("own", ["alpha", "slowup"], timeout=30)
        + ensemble("deadline", ["alpha", "late"], timeout=0.5)
    )


def _own_timeout(failure: dict[str, Any]) -> None:
    assert failure["model"] == "slowup"
    assert failure["kind"] == "timeout"
    # The member's own error, named (a long clause of it stays in the server log).
    assert failure["message"].startswith("GeneratorTimeoutError: slowup")
    assert "no answer within 30 s" not in failure["message"]  # not the ensemble's deadline


def test_a_members_own_timeout_is_a_timeout_naming_it_on_every_path(
    upstream: FakeUpstream,
) -> None:
    gateway = _gateway(_timeouts_config(upstream))
    # A text blend.
    answer = asyncio.run(gateway.blend("own", CHAT, {}))
    assert answer.blend is not None
    _own_timeout(*answer.blend["failures"])
    # A blend with tools.
    answer = asyncio.run(gateway.blend_tools("own", ToolRequest(CHAT, CHAT, TOOLS, {})))
    assert answer.blend is not None
    _own_timeout(*answer.blend["failures"])

    # The inspector's events.
    async def events() -> list[dict[str, Any]]:
        return [e async for e in gateway.inspect("own", CHAT, {})]

    errors = [e for e in asyncio.run(events()) if e["type"] == "member_error"]
    assert len(errors) == 1
    _own_timeout({"model": errors[0]["member"], **errors[0]})
    # A pass-through: a 502 naming the member, not the request's 504.
    with pytest.raises(ApiError) as info:
        asyncio.run(gateway.passthrough("slowup", CHAT, {}))
    assert info.value.status == 502
    _own_timeout(*info.value.body()["error"]["failures"])
    assert "'slowup' failed (timeout)" in info.value.message


def test_the_ensembles_deadline_is_a_bare_timeout_on_every_path(upstream: FakeUpstream) -> None:
    gateway = _gateway(_timeouts_config(upstream))
    expected = {"model": "late", "kind": "timeout", "message": "no answer within 0.5 s"}
    answer = asyncio.run(gateway.blend("deadline", CHAT, {}))
    assert answer.blend is not None and answer.blend["failures"] == [expected]
    answer = asyncio.run(gateway.blend_tools("deadline", ToolRequest(CHAT, CHAT, TOOLS, {})))
    assert answer.blend is not None and answer.blend["failures"] == [expected]

    async def events() -> list[dict[str, Any]]:
        return [e async for e in gateway.inspect("deadline", CHAT, {})]

    errors = [e for e in asyncio.run(events()) if e["type"] == "member_error"]
    assert [(e["member"], e["kind"], e["message"]) for e in errors] == [
        ("late", "timeout", "no answer within 0.5 s")
    ]


# -- 5. the fronts' options in [ensembles.NAME] -------------------------------------------------


def test_ensemble_defaults_are_the_fronts_defaults() -> None:
    fields = EnsembleConfig.model_fields
    shared = ("top_k", "strategy", "timeout", "min_candidates", "max_retries", "device", "priors")
    assert {k: fields[k].default for k in shared} == {k: DEFAULT_OPTIONS[k] for k in shared}


class _Flaky:
    """A member that fails its first ``failures`` calls, then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self, prompt: Any, **kwargs: Any) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError(f"flaky call {self.calls}")
        return "Paris, after a retry."


def _retry_config(retries: int, timeout: float = 30) -> str:
    return static_members(alpha="Paris.", flaky="placeholder") + ensemble(
        "e", ["alpha", "flaky"], max_retries=retries, timeout=timeout
    )


@pytest.mark.parametrize("path", ["blend", "tools", "inspect"])
def test_max_retries_calls_a_failing_member_again(path: str) -> None:
    async def run(gateway: Gateway) -> dict[str, Any]:
        if path == "blend":
            answer = await gateway.blend("e", CHAT, {})
        elif path == "tools":
            answer = await gateway.blend_tools("e", ToolRequest(CHAT, CHAT, TOOLS, {}))
        else:
            events = [e async for e in gateway.inspect("e", CHAT, {})]
            return next(e["blend"] for e in events if e["type"] == "result")
        assert answer.blend is not None
        return answer.blend

    for retries, answered in ((0, False), (1, True)):
        gateway = _gateway(_retry_config(retries))
        flaky = _Flaky(failures=1)
        gateway.members["flaky"] = CallableGenerator(flaky, name="flaky")
        blend = asyncio.run(run(gateway))
        assert ("flaky" in blend["candidates"]) is answered, (retries, blend)
        assert flaky.calls == 1 + retries
        if not answered:
            assert blend["failures"][0]["message"] == "RuntimeError: flaky call 1"
            assert blend["failures"][0]["kind"] == "error"


def test_a_member_retrying_at_the_deadline_fails_with_its_error() -> None:
    gateway = _gateway(_retry_config(retries=1000, timeout=0.5))

    async def failing(prompt: Any, **kwargs: Any) -> str:
        await asyncio.sleep(0.05)
        raise RuntimeError("upstream is down")

    gateway.members["flaky"] = CallableGenerator(failing, name="flaky")
    answer = asyncio.run(gateway.blend("e", CHAT, {}))
    assert answer.blend is not None
    (failure,) = answer.blend["failures"]
    assert failure["kind"] == "error"  # the cause, not a bare timeout
    assert failure["message"].startswith("RuntimeError: upstream is down")


def test_ensemble_device_fills_the_ranker_and_fuser_specs_without_their_own() -> None:
    config = parse_config(
        static_members(a="x")
        + """
[ensembles.one]
members = ["a"]
ranker = { type = "consensus" }
fuser = { type = "genfuser" }
device = "cpu"

[ensembles.own]
members = ["a"]
ranker = { type = "pairrm", device = "cuda" }
device = "cpu"

[ensembles.none]
members = ["a"]
ranker = { type = "random" }
device = "cpu"
"""
    )
    one = config.ensembles["one"]
    assert one.ranker_spec().device == "cpu" and one.fuser_spec().device == "cpu"  # type: ignore[union-attr]
    assert one.ranker.device is None  # type: ignore[union-attr]  # the spec as written
    assert config.ensembles["own"].ranker_spec().device == "cuda"  # type: ignore[union-attr]
    random = config.ensembles["none"].ranker_spec()
    assert random.type == "random" and "device" not in random.model_dump()


def test_ensemble_priors_rank_by_member(tmp_path: Path) -> None:
    # scale 0: the ranker's scores count for nothing, the priors decide.
    path = MemberPriors({"alpha": -1.0, "beta": 2.0, "gamma": 0.5}, scale=0.0).save(
        tmp_path / "priors.json"
    )
    text = static_members(alpha="Paris.", beta="It is Paris.", gamma="Lyon.") + (
        '[ensembles.e]\nmembers = ["alpha", "beta", "gamma"]\n'
        f'ranker = {{ type = "random", seed = 0 }}\npriors = "{path}"\n'
    )
    gateway = _gateway(text)
    answer = asyncio.run(gateway.blend("e", CHAT, {}))
    assert answer.blend is not None
    assert answer.blend["best_models"] == ["beta"]
    assert answer.text == "It is Paris."
    order = [answer.blend["models_by_text"][i] for i in answer.blend["ranking"]["order"]]
    assert order == [["beta"], ["gamma"], ["alpha"]]


def test_bad_ensemble_options_are_config_errors(tmp_path: Path) -> None:
    unscaled = MemberPriors({"a": 1.0}).save(tmp_path / "unscaled.json")
    text = static_members(a="x") + (
        f'[ensembles.missing]\nmembers = ["a"]\npriors = "{tmp_path / "nope.json"}"\n\n'
        f'[ensembles.unscaled]\nmembers = ["a"]\npriors = "{unscaled}"\n\n'
        '[ensembles.negative]\nmembers = ["a"]\nmax_retries = -1\n'
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, path="blend.toml")
    messages = "\n".join(info.value.messages())
    assert "ensembles.negative.max_retries: Input should be greater than or equal to 0" in messages
    with pytest.raises(ConfigError) as info2:
        parse_config(text.split("[ensembles.negative]")[0], path="blend.toml")
    lines = info2.value.messages()
    assert any("ensembles.missing.priors: cannot read the priors file" in m for m in lines)
    assert any("ensembles.unscaled.priors:" in m and "no scale" in m for m in lines)


# -- 3, the HTTP stream: a pass-through member's own timeout mid-stream -------------------------


class _Drip(CallableGenerator):
    """Streams one word, then fails as ``exc`` says (or hangs when it is ``None``)."""

    def __init__(self, exc: BaseException | None) -> None:
        super().__init__(lambda prompt, **kw: "Hello", name="drip")
        self.exc = exc

    async def astream(self, prompt: Any, **kwargs: Any) -> AsyncIterator[str]:
        yield "Hello"
        if self.exc is None:
            await asyncio.sleep(60)
        else:
            raise self.exc


def _sse_error(member: _Drip, request_timeout: float) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from blender_core.serve import create_app

    config = parse_config(
        f'[server]\nrequest_timeout = {request_timeout}\n\n[members.drip]\ntype = "static"\n'
        'text = "unused"\n'
    )
    gateway = Gateway(config)
    gateway.members["drip"] = member
    with TestClient(create_app(config, gateway=gateway), base_url="http://localhost") as client:
        deadline = time.monotonic() + 30
        while client.get("/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        response = client.post(
            "/v1/chat/completions", json={"model": "drip", "messages": CHAT, "stream": True}
        )
    events = [
        json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")
    ]
    assert events[1]["choices"][0]["delta"]["content"] == "Hello"  # the stream had started
    (error,) = [e["error"] for e in events if "error" in e]
    return dict(error)


def test_a_pass_through_members_own_timeout_mid_stream_names_it() -> None:
    own = GeneratorTimeoutError("drip: no answer within the timeout of 0.5 s")
    error = _sse_error(_Drip(own), request_timeout=30)
    assert error["code"] == "member_failed"  # not the request's "timeout"
    assert "'drip' failed (timeout)" in error["message"]
    assert [(f["model"], f["kind"]) for f in error["failures"]] == [("drip", "timeout")]
    # The request's own deadline is still the request's.
    error = _sse_error(_Drip(None), request_timeout=1)
    assert error["code"] == "timeout"
    assert "request_timeout=1 s" in error["message"]
