"""Small fakes for the LlamaIndex tests: fixed-answer LLMs, a length ranker, a joining fuser."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from llama_index.core.base.llms.types import (
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.bridge.pydantic import Field
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.span import SimpleSpan
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.schema import Document

from blender_core.fusion.base import BaseFuser
from blender_core.ranking import BaseRanker, Ranking


class FixedLLM(CustomLLM):
    """Answers every prompt with ``answer`` (after ``delay`` seconds); records the prompts."""

    answer: str
    name: str = "fixed"
    delay: float = 0.0
    error: str | None = None
    context_window: int = 4096
    num_output: int = 256
    prompts: list[str] = Field(default_factory=list)
    on_call: Callable[[], None] | None = None

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            model_name=self.name, context_window=self.context_window, num_output=self.num_output
        )

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self.prompts = [*self.prompts, prompt]
        if self.on_call is not None:
            self.on_call()
        if self.delay:
            time.sleep(self.delay)
        if self.error is not None:
            raise RuntimeError(self.error)
        return CompletionResponse(text=self.answer)

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        response = self.complete(prompt, formatted=formatted, **kwargs)

        def gen() -> CompletionResponseGen:
            yield CompletionResponse(text=response.text, delta=response.text)

        return gen()


TOKEN_PIECES = ("fused ", "token ", "by ", "token")


class TokenLLM(FixedLLM):
    """Streams its answer in four pieces (a fuser that streams)."""

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        def gen() -> CompletionResponseGen:
            text = ""
            for piece in TOKEN_PIECES:
                text += piece
                yield CompletionResponse(text=text, delta=piece)

        return gen()


class LengthRanker(BaseRanker):
    """Longer candidates rank higher; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def rank_batch(
        self, instructions: Sequence[str], candidate_lists: Sequence[Sequence[str]]
    ) -> list[Ranking]:
        with self.lock:
            self.calls += 1
        return [Ranking.from_scores([len(c) for c in cands]) for cands in candidate_lists]


class JoinFuser(BaseFuser):
    """Joins the candidates it is given (best first) with ' | '."""

    def fuse(
        self, instruction: str, candidates: Sequence[str], *, input: str = "", **kw: Any
    ) -> str:
        return " | ".join(candidates)


class EventCollector(BaseEventHandler):
    events: list[BaseEvent] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "EventCollector"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)


class SpanCollector(BaseSpanHandler[SimpleSpan]):
    """Records every span's id and parent id (``spans``), and its parent, tags and bound
    arguments (``opened``)."""

    spans: dict[str, str | None] = Field(default_factory=dict)
    opened: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @classmethod
    def class_name(cls) -> str:
        return "SpanCollector"

    def new_span(
        self,
        id_: str,
        bound_args: Any,
        instance: Any | None = None,
        parent_span_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> SimpleSpan:
        self.spans[id_] = parent_span_id
        self.opened[id_] = {
            "parent": parent_span_id,
            "tags": dict(tags or {}),
            "args": dict(bound_args.arguments),
        }
        return SimpleSpan(id_=id_, parent_id=parent_span_id)

    def prepare_to_exit_span(
        self, id_: str, bound_args: Any, instance: Any = None, result: Any = None, **kwargs: Any
    ) -> SimpleSpan | None:
        return None

    def prepare_to_drop_span(
        self,
        id_: str,
        bound_args: Any,
        instance: Any = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> SimpleSpan | None:
        return None


@pytest.fixture
def events() -> Any:
    """Events seen by a handler on the root dispatcher during the test."""
    root = get_dispatcher()
    handler = EventCollector()
    root.add_event_handler(handler)
    yield handler.events
    root.event_handlers.remove(handler)


@pytest.fixture
def span_collector() -> Any:
    """A :class:`SpanCollector` on the root dispatcher during the test."""
    root = get_dispatcher()
    handler = SpanCollector()
    root.add_span_handler(handler)
    yield handler
    root.span_handlers.remove(handler)


@pytest.fixture
def spans(span_collector: SpanCollector) -> Any:
    """Span id -> parent span id, recorded on the root dispatcher during the test."""
    return span_collector.spans


DOCS = [
    "Paris is the capital of France. It is known for the Eiffel Tower.",
    "Berlin is the capital of Germany.",
    "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "Bananas are yellow and grow in tropical climates.",
    "France is a country in Western Europe with Paris as its largest city.",
    "Python is a programming language.",
]


@pytest.fixture
def documents() -> list[Document]:
    return [Document(text=text, doc_id=f"doc{i}") for i, text in enumerate(DOCS)]


@pytest.fixture
def embed_model() -> MockEmbedding:
    return MockEmbedding(embed_dim=8)
