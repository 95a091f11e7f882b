"""LangChain's standard chat-model suites for ChatBlender over scripted tool-calling members."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.utils.function_calling import convert_to_json_schema
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.integration_tests.chat_models import (
    _get_joke_class,
    _TestCallbackHandler,
)
from langchain_tests.unit_tests import ChatModelUnitTests
from lc_fakes import LengthRanker, ScriptedChatModel

from langchain_blender import STAGE_TAG, ChatBlender

SchemaType = Literal["pydantic", "typeddict", "json_schema"]
"""How langchain-tests' structured-output tests give their joke schema."""

_EACH_SCHEMA_TYPE = pytest.mark.parametrize("schema_type", ["pydantic", "typeddict", "json_schema"])


def _params() -> dict[str, Any]:
    return {
        "models": {
            "alpha": ScriptedChatModel(model_name="alpha", prefix="Alpha says:"),
            "beta": ScriptedChatModel(model_name="beta", prefix="Beta, at more length, says:"),
        },
        "ranker": LengthRanker(),
    }


class _Declared:
    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatBlender

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return _params()

    # Declared rather than left to langchain-tests to infer, so that a lost capability fails
    # the suite instead of skipping its tests.
    has_tool_calling = True
    has_tool_choice = True
    has_structured_output = True
    returns_usage_metadata = True
    supports_json_mode = False
    # A per-call ``model`` has no single meaning for an ensemble of several models.
    supports_model_override = False


class TestChatBlenderUnit(_Declared, ChatModelUnitTests):
    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        # An ensemble has no API key of its own: the members carry theirs.
        params = super().standard_chat_model_params
        params.pop("api_key", None)
        return params


class TestChatBlenderIntegration(_Declared, ChatModelIntegrationTests):
    # The standard structured-output tests count every ``on_chat_model_start`` their handler
    # sees and expect exactly one. An ensemble's members are child runs that inherit the handler
    # (by design: they nest under the ensemble's run), so the handler sees 1 + len(models).
    # ``test_structured_output_root_run*`` below run the same checks counting the root run only.
    _XFAIL = (
        "members are child runs: the standard handler also sees their on_chat_model_start "
        "(checked on the root run in test_structured_output_root_run*)"
    )

    @pytest.mark.xfail(reason=_XFAIL, strict=True)
    @_EACH_SCHEMA_TYPE
    def test_structured_output(self, model: BaseChatModel, schema_type: SchemaType) -> None:
        super().test_structured_output(model, schema_type)

    @pytest.mark.xfail(reason=_XFAIL, strict=True)
    @_EACH_SCHEMA_TYPE
    async def test_structured_output_async(
        self, model: BaseChatModel, schema_type: SchemaType
    ) -> None:
        await super().test_structured_output_async(model, schema_type)

    def _joke_chat(self, model: BaseChatModel, schema_type: SchemaType) -> tuple[Any, Any, Any]:
        """The standard joke schema, its validator, and ``model`` bound to answer in it."""
        schema, validate = _get_joke_class(schema_type)
        chat = model.with_structured_output(schema, **self.structured_output_kwargs)
        return schema, validate, chat

    @_EACH_SCHEMA_TYPE
    def test_structured_output_root_run(
        self, model: BaseChatModel, schema_type: SchemaType
    ) -> None:
        schema, validate, chat = self._joke_chat(model, schema_type)
        handler = _RootCallbackHandler()
        validate(chat.invoke("Tell me a joke about cats.", config={"callbacks": [handler]}))
        _check_root_options(handler, schema)
        handler = _RootCallbackHandler()
        chunk = None
        for chunk in chat.stream("Tell me a joke about cats.", config={"callbacks": [handler]}):
            validate(chunk)
        assert chunk is not None
        _check_root_options(handler, schema, streamed=True)

    @_EACH_SCHEMA_TYPE
    async def test_structured_output_root_run_async(
        self, model: BaseChatModel, schema_type: SchemaType
    ) -> None:
        schema, validate, chat = self._joke_chat(model, schema_type)
        handler = _RootCallbackHandler()
        result = await chat.ainvoke("Tell me a joke about cats.", config={"callbacks": [handler]})
        validate(result)
        _check_root_options(handler, schema)
        handler = _RootCallbackHandler()
        chunk = None
        async for chunk in chat.astream(
            "Tell me a joke about cats.", config={"callbacks": [handler]}
        ):
            validate(chunk)
        assert chunk is not None
        _check_root_options(handler, schema, streamed=True)


class _RootCallbackHandler(_TestCallbackHandler):
    """Records every chat-model run: the ensemble's is the one not nested in another. A member's
    parent is read through its stage run (the ensemble's stage of member calls)."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[tuple[Any, Any, Any]] = []
        self.stage_parent: dict[Any, Any] = {}

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        if STAGE_TAG in (kwargs.get("tags") or []):
            self.stage_parent[kwargs["run_id"]] = kwargs.get("parent_run_id")

    def on_chat_model_start(
        self, serialized: Any, messages: Any, *, options: Any = None, **kwargs: Any
    ) -> None:
        self.runs.append((kwargs["run_id"], kwargs.get("parent_run_id"), options))

    def resolved(self) -> list[tuple[Any, Any, Any]]:
        """The runs, a member's stage parent replaced by the stage's parent."""
        return [(r, self.stage_parent.get(p, p), o) for r, p, o in self.runs]


def _check_root_options(handler: _RootCallbackHandler, schema: Any, streamed: bool = False) -> None:
    """One ensemble run with the structured-output options and one run per member.

    Invoked, the members' runs are children of the ensemble's run. Streamed, langchain-core
    calls ``_stream``/``_astream`` without the run manager (by design), so the members' runs
    attach to the ambient run, the structured-output chain's: siblings of the ensemble's run.
    """
    runs = handler.resolved()
    chat_runs = {run_id for run_id, _, _ in runs}
    roots = [(r, o) for r, parent, o in runs if parent not in chat_runs]
    if streamed:
        ensembles = [
            (r, o) for r, o in roots if isinstance(o, dict) and "ls_structured_output_format" in o
        ]
        assert len(ensembles) == 1, "expected one on_chat_model_start for the ensemble"
        assert len(roots) == 3, "expected the ensemble's run and one run per member"
        parents = {parent for _, parent, _ in runs}
        assert len(parents) == 1 and None not in parents, "expected siblings under the chain"
        root_id, options = ensembles[0]
    else:
        assert len(roots) == 1, "expected one on_chat_model_start for the ensemble"
        root_id, options = roots[0]
        children = [r for r, parent, _ in runs if parent == root_id]
        assert len(children) == 2, "expected one child chat-model run per member"
    assert isinstance(options, dict)
    assert options["ls_structured_output_format"]["schema"] == convert_to_json_schema(schema)
