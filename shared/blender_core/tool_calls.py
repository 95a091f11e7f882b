"""Tool-call selection: the members propose tool calls (or answers), the ranker picks one.

One path for every front (the LangChain ensembles' ``bind_tools``, LlamaIndex
``chat_with_tools``, the gateway's ``tools``): each member's proposal becomes a
:class:`ToolProposal` (its text and its :class:`ToolCall` s), the ranker ranks their canonical
renderings (:meth:`ToolProposal.render`) and the best proposal is **selected**, never fused: a
fused tool call could name a tool no member chose or mix two members' arguments.

The policy, the same on every front:

* When at least one proposal calls tools, only the proposals that call tools are ranked (an
  agent step that acts beats one that only talks); the others stay in
  :attr:`~blender_core.blend.BlendResult.candidates`. With no tool calls at all, every answer is
  ranked and the best is selected.
* Identical renderings are merged (ranked once); the chosen member is the first that gave the
  best one.
* The result is a :class:`~blender_core.blend.BlendResult` with ``blend_mode="tool_calls"``,
  ``top_k`` of one and ``fuse_latency`` 0: the metadata every front reports.

Example:
    .. code-block:: python

        from blender_core.tool_calls import ToolCall, ToolProposal, select_tool_calls

        chosen = select_tool_calls(
            ranker,
            "What is 2 + 3?",
            {
                "a": ToolProposal(tool_calls=(ToolCall("add", {"a": 2, "b": 3}, id="call_1"),)),
                "b": ToolProposal(text="It is 5."),
            },
        )
        chosen.model, chosen.tool_calls, chosen.result.to_dict()["blend_mode"]
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from blender_core.blend import Blender, BlendResult, ModelFailure, RankTracer
from blender_core.bridge import run_sync
from blender_core.fusion.select import SelectFuser
from blender_core.ranking import Ranker
from blender_core.staging import CallReport

__all__ = [
    "ToolCall",
    "ToolCallSelection",
    "ToolProposal",
    "aselect_tool_calls",
    "render_tool_calls",
    "select_tool_calls",
]


@dataclass(frozen=True)
class ToolCall:
    """One tool call, framework-neutral.

    Attributes:
        name: The tool's name.
        arguments: The call's arguments (a JSON object).
        id: The call's id where the model gave one (OpenAI ``call_...``, LangChain ``id``).
    """

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a tool call needs a name (a non-empty string), got {self.name!r}")
        if not isinstance(self.arguments, Mapping):
            raise TypeError(
                f"tool call {self.name!r}: arguments must be a mapping (a JSON object), "
                f"got {type(self.arguments).__name__}"
            )
        if self.id is not None and not isinstance(self.id, str):
            raise TypeError(f"tool call {self.name!r}: id must be a string or None")
        object.__setattr__(self, "arguments", MappingProxyType(dict(self.arguments)))

    def render(self) -> str:
        """``name({"arg": value, ...})``: the arguments as JSON with sorted keys (so that two
        members' equal calls render equal), non-ASCII kept, non-JSON values as ``str``."""
        args = json.dumps(dict(self.arguments), sort_keys=True, ensure_ascii=False, default=str)
        return f"{self.name}({args})"

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "arguments", "id"}`` (JSON-serialisable when the arguments are)."""
        return {"name": self.name, "arguments": dict(self.arguments), "id": self.id}

    @classmethod
    def from_openai(cls, call: Mapping[str, Any]) -> ToolCall:
        """A call from an OpenAI chat-completions ``tool_calls`` item
        (``{"id", "type": "function", "function": {"name", "arguments": "<JSON>"}}``).

        Raises:
            ValueError: the item has no function name, or its arguments are not a JSON object.
        """
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping):
            raise ValueError(f"a tool call item needs a 'function' object, got {call!r}")
        name = function.get("name")
        raw = function.get("arguments") or "{}"
        if isinstance(raw, str):
            try:
                arguments = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"tool call {name!r}: arguments are not valid JSON ({exc.msg}): {raw[:200]!r}"
                ) from None
        else:
            arguments = raw
        if not isinstance(arguments, Mapping):
            raise ValueError(f"tool call {name!r}: arguments must be a JSON object, got {raw!r}")
        call_id = call.get("id")
        return cls(str(name or ""), arguments, call_id if isinstance(call_id, str) else None)

    def to_openai(self) -> dict[str, Any]:
        """The call as an OpenAI chat-completions ``tool_calls`` item (arguments as a JSON
        string)."""
        return {
            "id": self.id,
            "type": "function",
            "function": {
                "name": self.name,
                "arguments": json.dumps(dict(self.arguments), ensure_ascii=False, default=str),
            },
        }


def render_tool_calls(tool_calls: Sequence[ToolCall], text: str = "") -> str:
    """The canonical rendering a ranker reads: the stripped text (if any), then one
    :meth:`ToolCall.render` line per call, in the member's order."""
    lines = [text.strip()] if text.strip() else []
    lines.extend(call.render() for call in tool_calls)
    return "\n".join(lines)


@dataclass(frozen=True)
class ToolProposal:
    """One member's proposal: tool calls, an answer, or both.

    Attributes:
        text: The text the member gave (``""`` when it only called tools).
        tool_calls: Its tool calls, in order.
        raw: The framework's own object (an ``AIMessage``, a ``ChatResponse``), carried back to
            the front that made it; never read here.
    """

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    raw: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise TypeError(f"a proposal's text must be a string, got {type(self.text).__name__}")
        calls = tuple(self.tool_calls)
        for call in calls:
            if not isinstance(call, ToolCall):
                raise TypeError(f"tool_calls must be ToolCall objects, got {call!r}")
        object.__setattr__(self, "tool_calls", calls)

    @property
    def calls_tools(self) -> bool:
        """Whether the proposal calls at least one tool."""
        return bool(self.tool_calls)

    def render(self) -> str:
        """:func:`render_tool_calls` of this proposal: what the ranker compares."""
        return render_tool_calls(self.tool_calls, self.text)


@dataclass(frozen=True)
class ToolCallSelection:
    """The outcome of a tool-call selection.

    Attributes:
        model: The member whose proposal was chosen.
        proposal: That proposal (its ``raw`` object included).
        result: The blend record (``blend_mode="tool_calls"``): every rendering as a candidate,
            the ranking over the distinct renderings ranked, failures, latencies.
    """

    model: str
    proposal: ToolProposal
    result: BlendResult

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The chosen member's tool calls (empty when an answer without calls was chosen)."""
        return self.proposal.tool_calls

    @property
    def text(self) -> str:
        """The chosen member's text."""
        return self.proposal.text


def _proposals(proposals: Mapping[str, ToolProposal | str]) -> dict[str, ToolProposal]:
    if not isinstance(proposals, Mapping):
        raise TypeError(
            "proposals must be a mapping member name -> ToolProposal (or text), "
            f"got {type(proposals).__name__}"
        )
    out: dict[str, ToolProposal] = {}
    for name, proposal in proposals.items():
        if isinstance(proposal, str):
            proposal = ToolProposal(text=proposal)
        elif not isinstance(proposal, ToolProposal):
            raise TypeError(
                f"proposal of {name!r} must be a ToolProposal or a string, "
                f"got {type(proposal).__name__}"
            )
        out[name] = proposal
    return out


async def aselect_tool_calls(
    ranker: Ranker,
    instruction: str,
    proposals: Mapping[str, ToolProposal | str],
    *,
    input: str = "",
    strategy: str | None = None,
    min_candidates: int = 1,
    failures: Sequence[ModelFailure] = (),
    latencies: Mapping[str, float] | None = None,
    queueing: Mapping[str, float] | None = None,
    rank_timeout: float | None = None,
    rank_tracer: RankTracer | None = None,
    calls: CallReport | None = None,
) -> ToolCallSelection:
    """Rank the members' proposals and select the best (never fused); see the module docs.

    Args:
        ranker: A loaded :class:`~blender_core.ranking.Ranker` (the blend's own; a ranker that
            declares ``accepts_members``, such as a ``PriorRanker``, is told who proposed what).
        instruction: The instruction the ranker reads (the front's chat policy made it).
        proposals: Member name -> :class:`ToolProposal` (a string: an answer without calls).
        input: The input the ranker reads beside the instruction (e.g. the chat history).
        strategy: The ranking strategy (``None``: the ranker's default).
        min_candidates: Fewest distinct proposals ranked to go on with.
        failures, latencies, queueing: The members' run (failed members, seconds each took,
            seconds each waited), carried into the result.
        rank_timeout: Seconds the ranking may take (``None``: no limit).
        rank_tracer: The front's hook around the ranking call (a LangChain run, a span).
        calls: The policy's report of the member calls (:class:`~blender_core.staging.CallReport`).

    Returns:
        The chosen member, its proposal and the ``blend_mode="tool_calls"`` result.

    Raises:
        BlendError: fewer than ``min_candidates`` distinct proposals, or a ranking timeout.
    """
    members = _proposals(proposals)
    rendered = {name: proposal.render() for name, proposal in members.items()}
    ranked = rendered
    if any(proposal.calls_tools for proposal in members.values()):
        # Empty proposals stay in, to be recorded as failures.
        ranked = {n: r for n, r in rendered.items() if members[n].calls_tools or not r.strip()}
    selector = Blender(
        (),
        ranker,
        SelectFuser(),
        top_k=1,
        timeout=None,
        rank_timeout=rank_timeout,
        fuse_timeout=None,
        min_candidates=min_candidates,
        strategy=strategy,
        rank_tracer=rank_tracer,
    )
    result = await selector.ablend_candidates(
        instruction,
        ranked,
        input=input,
        failures=failures,
        latencies=latencies,
        queueing=queueing,
        calls=calls,
    )
    chosen = result.best_models[0]
    answered = {name: text for name, text in rendered.items() if text.strip()}
    result = dataclasses.replace(result, candidates=answered, blend_mode="tool_calls")
    return ToolCallSelection(model=chosen, proposal=members[chosen], result=result)


def select_tool_calls(
    ranker: Ranker,
    instruction: str,
    proposals: Mapping[str, ToolProposal | str],
    **options: Any,
) -> ToolCallSelection:
    """Sync :func:`aselect_tool_calls`, with the same keywords (``input``, ``strategy``,
    ``min_candidates``, ``failures``, ``latencies``, ``queueing``, ``rank_timeout``,
    ``rank_tracer``, ``calls``), through :func:`~blender_core.bridge.run_sync`: it works
    inside a running event loop too."""
    return run_sync(lambda: aselect_tool_calls(ranker, instruction, proposals, **options))
