"""Policies in the gateway: ``[ensembles.NAME] policy``, ``policy_options`` and ``costs``.

A real ``blender serve`` subprocess with fake OpenAI-compatible upstreams (one path per member,
so the requests each member got are counted) is driven by the openai SDK and httpx: a cascade
calls only its first stage when confident and stops at ``max_members`` otherwise, a router calls
the member it routes to, ``policy = "all"`` calls everyone; the ``blend`` object's ``calls``
says so, the OpenAI ``usage`` counts only the members called, the members not called get no
request, and ``/metrics`` counts calls made and saved. Streaming, the inspector's event stream
and tool-call selection carry the calls too. Configuration errors name the key and line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest
from serve_helpers import CAPITAL_TOOL, FakeUpstream, Server, running, serve_cli, streamed_chunks
from toml_tables import ensemble, openai_member, static_member, table

from blender_core.serve.config import ConfigError, parse_config

if TYPE_CHECKING:
    import openai
else:
    openai = pytest.importorskip("openai")

QUESTION: Any = [{"role": "user", "content": "What is the capital of France?"}]
TOOLS: Any = [CAPITAL_TOOL]


def _router_file(tmp_path: Path) -> Path:
    """A router over r1, r2, r3 that always routes to r2 (MiniLM embeddings, zero weights)."""
    from blender_core.routing import RouterModel

    model = RouterModel(
        "softmax",
        ("r1", "r2", "r3"),
        {"W": np.zeros((384, 3)), "b": np.log(np.array([0.1, 0.7, 0.2]))},
    )
    return model.save(tmp_path / "router.json")


def _config(upstream: FakeUpstream, router: Path) -> str:
    names = ("c1", "c2", "c3", "m1", "m2", "m3", "a1", "a2", "s1", "s2", "r1", "r2", "r3")
    return (
        table("server", request_timeout=60)
        + "".join(openai_member(name, upstream.base_url(f"pol-{name}")) for name in names)
        + openai_member("ta", upstream.base_url("toolsA"))
        + openai_member("tb", upstream.base_url("toolsB"))
        + static_member("fixed", "Paris.")
        + ensemble("statics", ["fixed", "a1"])
        # threshold 0: confident after the first stage, whatever the ranking
        + ensemble("cascade", ["c1", "c2", "c3"], policy="cascade")
        + table("ensembles.cascade.policy_options", threshold=0.0, order=["c2", "c1", "c3"])
        + table(
            "ensembles.cascade.costs",
            c1=0.01,
            c2={"input_per_1k": 1.0, "output_per_1k": 2.0},
            c3=0.5,
        )
        # threshold 1: never confident; two members at most, one per stage
        + ensemble(
            "capped",
            ["m1", "m2", "m3"],
            policy="cascade",
            policy_options={"threshold": 1.0, "max_members": 2},
        )
        + ensemble("everyone", ["a1", "a2"])
        + ensemble(
            "streamed",
            ["s1", "s2"],
            policy="cascade",
            policy_options={"threshold": 0.0},
            costs={"s1": 0.25, "s2": 0.75},
        )
        + ensemble(
            "routed",
            ["r1", "r2", "r3"],
            policy="router",
            policy_options={"model": router, "top_m": 1},
        )
        + ensemble(
            "agents",
            ["ta", "tb"],
            policy="cascade",
            policy_options={"threshold": 0.0, "order": ["tb", "ta"]},
        )
    )


@pytest.fixture(scope="module")
def server(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("policies")
    with running(_config(upstream, _router_file(tmp)), tmp) as srv:
        yield srv


@pytest.fixture
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60)


def _asked(upstream: FakeUpstream, *members: str) -> dict[str, int]:
    """How many requests each member's upstream path got."""
    return {m: sum(1 for r in upstream.requests if r["mode"] == f"pol-{m}") for m in members}


def _blend(response: Any) -> dict[str, Any]:
    """The ``blend`` object of a response or chunk (an extra field of the SDK's models)."""
    extra = response.model_extra
    assert extra is not None
    return dict(extra["blend"])


def _metric(server: Server, line_start: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    found = [line for line in text.splitlines() if line.startswith(line_start + " ")]
    return float(found[0].rsplit(" ", 1)[1]) if found else 0.0


# -- a cascade ----------------------------------------------------------------------------------


def test_cascade_calls_its_first_stage_and_reports_the_calls_saved(
    client: openai.OpenAI, upstream: FakeUpstream, server: Server
) -> None:
    before = _asked(upstream, "c1", "c2", "c3")
    saved = 'blender_member_calls_saved_total{ensemble="cascade",policy="cascade"}'
    saved_before = _metric(server, saved)
    response = client.chat.completions.create(model="cascade", messages=QUESTION)
    after = _asked(upstream, "c1", "c2", "c3")
    assert {m: after[m] - before[m] for m in after} == {"c1": 0, "c2": 1, "c3": 0}
    calls = _blend(response)["calls"]
    assert calls["policy"] == "cascade"
    assert calls["members"] == ["c1", "c2", "c3"]
    assert calls["called"] == ["c2"] and calls["stages"] == [["c2"]]
    assert calls["skipped"] == {"c1": "confident", "c3": "confident"}
    assert calls["stop_reason"] == "confident"
    assert (calls["calls_made"], calls["calls_saved"]) == (1, 2)
    # The upstream's own usage (7 prompt, 5 completion tokens), priced by the costs table.
    assert calls["usage"] == {"c2": {"input_tokens": 7, "output_tokens": 5, "estimated": False}}
    assert calls["cost"] == pytest.approx({"c2": 7 * 1.0 / 1000 + 5 * 2.0 / 1000})
    assert calls["total_cost"] == pytest.approx(0.017)
    # The OpenAI usage counts the one member called (random ranker, select fuser: no tokens).
    assert response.usage is not None
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (7, 5)
    assert (
        response.choices[0].message.content == "upstream answer to: What is the capital of France?"
    )
    assert _metric(server, saved) - saved_before == 2


def test_metrics_count_calls_made_saved_skipped_stops_and_cost(
    client: openai.OpenAI, server: Server
) -> None:
    def read() -> dict[str, float]:
        return {
            "made_c2": _metric(
                server, 'blender_ensemble_member_calls_total{ensemble="cascade",member="c2"}'
            ),
            "made_c1": _metric(
                server, 'blender_ensemble_member_calls_total{ensemble="cascade",member="c1"}'
            ),
            "calls_c2": _metric(server, 'blender_member_calls_total{member="c2"}'),
            "saved": _metric(
                server, 'blender_member_calls_saved_total{ensemble="cascade",policy="cascade"}'
            ),
            "skips": _metric(
                server,
                'blender_member_skips_total{ensemble="cascade",member="c3",reason="confident"}',
            ),
            "stops": _metric(
                server,
                'blender_policy_stops_total{ensemble="cascade",policy="cascade",reason="confident"}',
            ),
            "cost": _metric(server, 'blender_member_cost_total{ensemble="cascade",member="c2"}'),
            "tokens": _metric(server, 'blender_tokens_total{kind="prompt"}'),
        }

    before = read()
    for _ in range(2):
        client.chat.completions.create(model="cascade", messages=QUESTION)
    after = read()
    delta = {k: after[k] - before[k] for k in after}
    assert delta["made_c2"] == 2 and delta["calls_c2"] == 2
    assert delta["made_c1"] == 0
    assert delta["saved"] == 4
    assert delta["skips"] == 2 and delta["stops"] == 2
    assert delta["cost"] == pytest.approx(2 * 0.017)
    assert delta["tokens"] == 2 * 7  # only the members called
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    assert 'blender_ensemble_member_calls_total{ensemble="cascade",member="c1"}' not in text


def test_cascade_stops_at_max_members_stage_by_stage(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    before = _asked(upstream, "m1", "m2", "m3")
    response = client.chat.completions.create(model="capped", messages=QUESTION)
    after = _asked(upstream, "m1", "m2", "m3")
    assert {m: after[m] - before[m] for m in after} == {"m1": 1, "m2": 1, "m3": 0}
    calls = _blend(response)["calls"]
    assert calls["stages"] == [["m1"], ["m2"]]
    assert calls["skipped"] == {"m3": "max_members"}
    assert calls["stop_reason"] == "max_members"
    # measured after the first stage (below threshold 1); max_members stops before the second's
    assert len(calls["confidences"]) == 1 and calls["confidences"][0] < 1
    assert (calls["calls_made"], calls["calls_saved"]) == (2, 1)
    assert calls["cost"] == {} and calls["total_cost"] == 0  # no costs declared
    assert response.usage is not None and response.usage.prompt_tokens == 14


def test_router_calls_the_routed_member_only(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    before = _asked(upstream, "r1", "r2", "r3")
    response = client.chat.completions.create(model="routed", messages=QUESTION)
    after = _asked(upstream, "r1", "r2", "r3")
    assert {m: after[m] - before[m] for m in after} == {"r1": 0, "r2": 1, "r3": 0}
    calls = _blend(response)["calls"]
    assert calls["policy"] == "router" and calls["called"] == ["r2"]
    assert calls["skipped"] == {"r1": "not_routed", "r3": "not_routed"}
    assert calls["stop_reason"] == "routed"


def test_policy_all_calls_everyone_in_one_stage(
    client: openai.OpenAI, upstream: FakeUpstream, server: Server
) -> None:
    before = _asked(upstream, "a1", "a2")
    response = client.chat.completions.create(model="everyone", messages=QUESTION)
    after = _asked(upstream, "a1", "a2")
    assert {m: after[m] - before[m] for m in after} == {"a1": 1, "a2": 1}
    blend = _blend(response)
    assert set(blend["candidates"]) == {"a1", "a2"}
    calls = blend["calls"]
    assert calls["policy"] == "all" and calls["stages"] == [["a1", "a2"]]
    assert calls["skipped"] == {} and calls["stop_reason"] == "all_called"
    assert (calls["calls_made"], calls["calls_saved"]) == (2, 0)
    assert response.usage is not None
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (14, 10)
    assert (
        _metric(server, 'blender_member_calls_saved_total{ensemble="everyone",policy="all"}') == 0
    )
    assert (
        _metric(
            server,
            'blender_policy_stops_total{ensemble="everyone",policy="all",reason="all_called"}',
        )
        >= 1
    )


def test_members_without_reported_usage_are_estimated(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(model="statics", messages=QUESTION)
    usage = _blend(response)["calls"]["usage"]
    assert usage["a1"] == {"input_tokens": 7, "output_tokens": 5, "estimated": False}
    assert usage["fixed"]["estimated"] is True  # a static member reports no tokens
    assert usage["fixed"]["output_tokens"] == 2  # "Paris." at 4 characters a token
    assert response.usage is not None and response.usage.prompt_tokens == 7


# -- streaming and tool calls -------------------------------------------------------------------


def test_streamed_chat_carries_the_calls(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    before = _asked(upstream, "s1", "s2")
    chunks = streamed_chunks(client, "streamed", QUESTION)
    after = _asked(upstream, "s1", "s2")
    assert {m: after[m] - before[m] for m in after} == {"s1": 1, "s2": 0}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "upstream answer to: What is the capital of France?"
    finish = next(c for c in chunks if c.choices and c.choices[0].finish_reason == "stop")
    calls = _blend(finish)["calls"]
    assert calls["called"] == ["s1"] and calls["skipped"] == {"s2": "confident"}
    assert calls["cost"] == {"s1": 0.25} and calls["total_cost"] == 0.25
    usage = [c.usage for c in chunks if c.usage is not None]
    assert usage and (usage[-1].prompt_tokens, usage[-1].completion_tokens) == (7, 5)


def test_inspector_stream_shows_stages_skips_and_calls(
    server: Server, upstream: FakeUpstream
) -> None:
    before = _asked(upstream, "c1", "c2", "c3")
    events: list[dict[str, Any]] = []
    with httpx.stream(
        "POST",
        f"{server.base_url}/blend/stream",
        json={"model": "cascade", "messages": QUESTION},
        timeout=60,
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: {"):
                events.append(json.loads(line[6:]))
    after = _asked(upstream, "c1", "c2", "c3")
    assert {m: after[m] - before[m] for m in after} == {"c1": 0, "c2": 1, "c3": 0}
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "result"
    stages = [e for e in events if e["type"] == "stage"]
    assert [(s["stage"], s["members"], s["policy"]) for s in stages] == [(0, ["c2"], "cascade")]
    assert {e["member"] for e in events if e["type"] == "member_delta"} == {"c2"}
    assert {e["member"] for e in events if e["type"] == "member_done"} == {"c2"}
    skipped = {e["member"]: e["reason"] for e in events if e["type"] == "member_skipped"}
    assert skipped == {"c1": "confident", "c3": "confident"}
    result = events[-1]
    assert result["blend"]["calls"]["calls_saved"] == 2
    assert result["usage"]["prompt_tokens"] == 7


def test_tool_call_selection_calls_as_the_policy_decides(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    def count(mode: str) -> int:
        return sum(1 for r in upstream.requests if r["mode"] == mode)

    before = (count("toolsA"), count("toolsB"))
    response = client.chat.completions.create(
        model="agents",
        messages=[{"role": "user", "content": "Capital of France?"}],
        tools=TOOLS,
    )
    assert (count("toolsA") - before[0], count("toolsB") - before[1]) == (0, 1)
    tool_calls = response.choices[0].message.tool_calls
    assert tool_calls is not None and tool_calls[0].id == "call_toolsB_0_0"
    blend = _blend(response)
    assert blend["selected"] == "tb"
    assert blend["calls"]["called"] == ["tb"]
    assert blend["calls"]["skipped"] == {"ta": "confident"}
    assert response.usage is not None and response.usage.prompt_tokens == 11


# -- configuration errors -----------------------------------------------------------------------

BASE = """\
[members.a]
type = "static"
text = "x"

[members.b]
type = "static"
text = "y"

[ensembles.e]
members = ["a", "b"]
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, path="blend.toml")
    return info.value.messages()


def test_policy_keys_parse_into_a_policy() -> None:
    config = parse_config(
        BASE + 'policy = "cascade"\n'
        "[ensembles.e.policy_options]\nthreshold = 0.5\nstage_sizes = [1, 2]\nbudget = 1.5\n"
        "[ensembles.e.costs]\na = 0.5\nb = { input_per_1k = 1.0, latency_s = 2 }\n"
    )
    policy = config.ensembles["e"].build_policy()
    assert policy.name == "cascade"
    assert policy.stage_sizes == (1, 2) and policy.budget == 1.5  # type: ignore[attr-defined]
    costs = config.ensembles["e"].member_costs()
    assert costs["a"].per_call == 0.5 and costs["b"].input_per_1k == 1.0
    assert parse_config(BASE).ensembles["e"].build_policy().name == "all"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            'policy = "greedy"\n',
            ["blend.toml:11: ensembles.e.policy: Input should be 'all', 'cascade' or 'router'"],
        ),
        (
            'policy = "cascade"\n[ensembles.e.policy_options]\nthreshold = 0.5\ntreshold = 1\n',
            [
                "blend.toml:14: ensembles.e.policy_options.treshold: unknown option for policy "
                "'cascade' (it takes threshold, calibration, stage_sizes, max_members, budget, "
                "latency_budget, hedge_after, order)"
            ],
        ),
        (
            "[ensembles.e.policy_options]\nthreshold = 0.5\n",
            [
                "blend.toml:12: ensembles.e.policy_options.threshold: unknown option for "
                "policy 'all' (it takes none)"
            ],
        ),
        (
            "[ensembles.e.costs]\na = 1\nzz = 2\nb = { per_call = -1 }\nc = { price = 1 }\n",
            [
                "blend.toml:13: ensembles.e.costs.zz: not a member of this ensemble (a, b)",
                "blend.toml:14: ensembles.e.costs.b: MemberCost.per_call must be a finite "
                "number >= 0, got -1",
                "blend.toml:15: ensembles.e.costs.c: not a member of this ensemble (a, b)",
            ],
        ),
        (
            'policy = "cascade"\npolicy_options = { threshold = 2 }\n',
            [
                "blend.toml:12: ensembles.e.policy_options: cascade threshold must be in "
                "[0, 1], got 2"
            ],
        ),
        (
            'policy = "cascade"\npolicy_options = { order = ["b", "zz"] }\n',
            [
                "blend.toml:12: ensembles.e.policy_options.order[1]: 'zz' is not a member of "
                "this ensemble (a, b)"
            ],
        ),
        (
            'policy = "router"\n',
            [
                "blend.toml:9: ensembles.e.policy_options: policy 'router' needs model= "
                "(a RouterModel or its file)"
            ],
        ),
    ],
)
def test_policy_config_errors_name_the_key(extra: str, expected: list[str]) -> None:
    assert _problems(BASE + extra) == expected


def test_unreadable_calibration_and_router_files_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    problems = _problems(
        BASE + f'policy = "cascade"\n[ensembles.e.policy_options]\ncalibration = "{missing}"\n'
    )
    assert len(problems) == 1
    assert problems[0].startswith(
        "blend.toml:13: ensembles.e.policy_options.calibration: cannot read the stop "
        f"calibration file '{missing}'"
    )
    broken = tmp_path / "router.json"
    broken.write_text("{not json")
    problems = _problems(BASE + f'policy = "router"\npolicy_options = {{ model = "{broken}" }}\n')
    assert len(problems) == 1
    assert problems[0].startswith(
        f"blend.toml:12: ensembles.e.policy_options.model: cannot read the router model file "
        f"'{broken}'"
    )


def test_cli_refuses_a_bad_policy_config(tmp_path: Path) -> None:
    path, result = serve_cli(BASE + "[ensembles.e.costs]\nzz = 1\n", tmp_path)
    assert result.exit_code == 2
    assert f"{path}:12: ensembles.e.costs.zz: not a member of this ensemble (a, b)" in result.output


def test_a_router_that_knows_none_of_the_members_is_named(tmp_path: Path) -> None:
    from blender_core.routing import RouterModel

    path = tmp_path / "router.json"
    RouterModel("softmax", ("x", "y"), {"W": np.zeros((2, 2)), "b": np.zeros(2)}).save(path)
    problems = _problems(BASE + f'policy = "router"\npolicy_options = {{ model = "{path}" }}\n')
    assert problems == [
        "blend.toml:12: ensembles.e.policy_options: the router knows none of the ensemble's "
        "members ['a', 'b'] (it was fitted on ['x', 'y'])"
    ]
