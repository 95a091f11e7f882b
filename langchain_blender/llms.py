"""``Blender``: an ensemble of LLMs (text in, text out) that behaves like one LangChain LLM."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, ClassVar

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseLLM
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.outputs import Generation, GenerationChunk, LLMResult, RunInfo
from langchain_core.runnables import Runnable
from langchain_core.runnables.config import ContextThreadPoolExecutor
from pydantic import ConfigDict, Field, field_validator

from langchain_blender._callbacks import achild_callbacks, child_callbacks
from langchain_blender._engine import Blended
from langchain_blender._members import (
    MemberOutcome,
    ainvoke_members,
    invoke_members,
    is_language_model,
    member_usage,
    name_members,
)
from langchain_blender._settings import EnsembleSettings
from langchain_blender.chat_models import StopCutter, apply_stop

__all__ = ["Blender"]


class Blender(EnsembleSettings, BaseLLM):
    """An LLM-Blender ensemble for text prompts: every member answers, the ranker ranks, the best
    ``top_k`` are fused (or the best is selected). The string-LLM form of
    :class:`~langchain_blender.ChatBlender` (as LangChain's ``OpenAI`` is to ``ChatOpenAI``).

    * Members (``llms``) may be LLMs, chat models or runnables returning a string or a message;
      they are called concurrently, each under ``timeout`` seconds, and their runs nest under the
      ensemble's run for that prompt (``batch`` and ``generate`` keep one run per prompt).
    * ``stream``/``astream``: the answer is known once every member has answered and the fuser
      has run; it then arrives in word-sized chunks.
    * Each generation's ``generation_info`` holds ``candidates``, ``ranking``, ``top_k``,
      ``best_models``, ``failures``, ``latencies`` and ``usage_metadata`` (summed over members that
      report it, and a LangChain-model fuser); ``llm_output["token_usage"]`` sums the batch.
    * A member that raises or times out is listed in ``failures``; when fewer than
      ``min_candidates`` answer, ``BlendError`` names every member's failure.

    Example:
        .. code-block:: python

            from langchain_core.output_parsers import StrOutputParser
            from langchain_core.prompts import PromptTemplate
            from langchain_blender import Blender

            llm = Blender(llms=[llm_a, llm_b, llm_c], ranker="llm-blender/PairRM", top_k=2)
            chain = PromptTemplate.from_template("Q: {question}\\nA:") | llm | StrOutputParser()
            chain.invoke({"question": "Why is the sky blue?"})
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    _members_field: ClassVar[str] = "llms"

    llms: dict[str, Runnable[Any, Any]]
    """The members: LLMs, chat models or runnables returning text (a list, or a mapping name ->
    model; list names come from each model's ``model_name``/``model`` or runnable name)."""
    stop: list[str] | None = None
    """Default stop sequences: passed to members and applied to the fused text."""
    ensemble_name: str | None = Field(default=None)
    """Name reported as ``model_name`` (default ``"blend(<member>, ...)"``)."""

    @field_validator("llms", mode="before")
    @classmethod
    def _name_llms(cls, value: Any) -> dict[str, Runnable[Any, Any]]:
        return name_members(value)

    @property
    def _llm_type(self) -> str:
        return "llm-blender"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="llm_blender", ls_model_name=self.model_name, ls_model_type="llm"
        )
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    # -- one prompt -------------------------------------------------------------------------

    def _prepare(
        self, stop: list[str] | None, kwargs: dict[str, Any]
    ) -> Callable[[str, Runnable[Any, Any]], tuple[Runnable[Any, Any], dict[str, Any]]]:
        stop = stop if stop is not None else self.stop

        def prepare(
            name: str, member: Runnable[Any, Any]
        ) -> tuple[Runnable[Any, Any], dict[str, Any]]:
            if not is_language_model(member):  # bare or wrapped (.bind, .with_retry, ...)
                return member, {}
            call = dict(kwargs)
            if stop:
                call["stop"] = stop
            return member, call

        return prepare

    def _generation(
        self,
        text: str,
        metadata: dict[str, Any],
        outcomes: Sequence[MemberOutcome],
        fuser_usage: UsageMetadata | None,
        stop: list[str] | None,
    ) -> Generation:
        usage = member_usage(outcomes)
        if fuser_usage:
            usage = add_usage(usage, fuser_usage)
        info = {"model_name": self.model_name, **metadata}
        if usage is not None:
            info["usage_metadata"] = dict(usage)
        return Generation(
            text=apply_stop(text, stop if stop is not None else self.stop), generation_info=info
        )

    def _blend_one(
        self,
        prompt: str,
        stop: list[str] | None,
        run_manager: CallbackManagerForLLMRun | None,
        kwargs: dict[str, Any],
    ) -> Generation:
        callbacks = child_callbacks(run_manager)
        outcomes = invoke_members(
            self.llms,
            prompt,
            callbacks=callbacks,
            prepare=self._prepare(stop, kwargs),
            timeout=self.timeout,
            max_retries=self.max_retries,
        )
        blended = self._get_engine().blend(prompt, outcomes, callbacks=callbacks)
        return self._generation(
            blended.message.text, blended.metadata, outcomes, blended.usage, stop
        )

    async def _ablend_one(
        self,
        prompt: str,
        stop: list[str] | None,
        run_manager: AsyncCallbackManagerForLLMRun | None,
        kwargs: dict[str, Any],
    ) -> Generation:
        callbacks = achild_callbacks(run_manager)
        outcomes = await ainvoke_members(
            self.llms,
            prompt,
            callbacks=callbacks,
            prepare=self._prepare(stop, kwargs),
            timeout=self.timeout,
            max_retries=self.max_retries,
        )
        blended = await self._get_engine().ablend(prompt, outcomes, callbacks=callbacks)
        return self._generation(
            blended.message.text, blended.metadata, outcomes, blended.usage, stop
        )

    # -- BaseLLM hooks ----------------------------------------------------------------------

    @staticmethod
    def _result(generations: list[Generation]) -> LLMResult:
        usage: UsageMetadata | None = None
        for generation in generations:
            info = generation.generation_info or {}
            if info.get("usage_metadata"):
                usage = add_usage(usage, info["usage_metadata"])
        llm_output = {"token_usage": dict(usage) if usage else {}}
        return LLMResult(generations=[[g] for g in generations], llm_output=llm_output)

    def _batch_result(
        self,
        outcomes: Sequence[Generation | BaseException],
        run_managers: Sequence[CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun],
    ) -> LLMResult:
        """The batch's result once every run is closed: the first failure re-raised, or the
        generations with one run id per prompt."""
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        result = self._result([o for o in outcomes if isinstance(o, Generation)])
        if run_managers:
            result.run = [RunInfo(run_id=m.run_id) for m in run_managers]
        return result

    def _generate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        return self._result([self._blend_one(p, stop, run_manager, kwargs) for p in prompts])

    async def _agenerate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        generations = await asyncio.gather(
            *(self._ablend_one(p, stop, run_manager, kwargs) for p in prompts)
        )
        return self._result(list(generations))

    # ``BaseLLM.generate`` hands ``_generate`` every prompt but only the first prompt's run
    # manager; these overrides blend each prompt under its own run (members nest under it).

    def _generate_helper(
        self,
        prompts: list[str],
        stop: list[str] | None,
        run_managers: list[CallbackManagerForLLMRun],
        *,
        new_arg_supported: bool,
        **kwargs: Any,
    ) -> LLMResult:
        managers: list[CallbackManagerForLLMRun | None] = (
            list(run_managers) if run_managers else [None] * len(prompts)
        )
        with ContextThreadPoolExecutor(max_workers=min(len(prompts), 8) or 1) as pool:
            futures = [
                pool.submit(self._blend_one, p, stop, m, kwargs)
                for p, m in zip(prompts, managers, strict=True)
            ]
            outcomes: list[Generation | BaseException] = []
            for future in futures:
                try:
                    outcomes.append(future.result())
                except BaseException as exc:
                    outcomes.append(exc)
        return self._close_runs(outcomes, managers, run_managers)

    async def _agenerate_helper(
        self,
        prompts: list[str],
        stop: list[str] | None,
        run_managers: list[AsyncCallbackManagerForLLMRun],
        *,
        new_arg_supported: bool,
        **kwargs: Any,
    ) -> LLMResult:
        managers: list[AsyncCallbackManagerForLLMRun | None] = (
            list(run_managers) if run_managers else [None] * len(prompts)
        )
        outcomes = await asyncio.gather(
            *(self._ablend_one(p, stop, m, kwargs) for p, m in zip(prompts, managers, strict=True)),
            return_exceptions=True,
        )
        for outcome, manager in zip(outcomes, managers, strict=True):
            if manager is None:
                continue
            if isinstance(outcome, BaseException):
                await manager.on_llm_error(outcome, response=LLMResult(generations=[]))
            else:
                await manager.on_llm_end(LLMResult(generations=[[outcome]]))
        return self._batch_result(outcomes, run_managers)

    def _close_runs(
        self,
        outcomes: list[Generation | BaseException],
        managers: list[CallbackManagerForLLMRun | None],
        run_managers: list[CallbackManagerForLLMRun],
    ) -> LLMResult:
        for outcome, manager in zip(outcomes, managers, strict=True):
            if manager is None:
                continue
            if isinstance(outcome, BaseException):
                manager.on_llm_error(outcome, response=LLMResult(generations=[]))
            else:
                manager.on_llm_end(LLMResult(generations=[[outcome]]))
        return self._batch_result(outcomes, run_managers)

    # ``BaseLLM.stream``/``astream`` hand ``_stream``/``_astream`` their run manager: members
    # nest under the stream's run, and the fuser's tokens go out as it generates them.

    def _stream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[GenerationChunk]:
        callbacks = child_callbacks(run_manager)
        outcomes = invoke_members(
            self.llms,
            prompt,
            callbacks=callbacks,
            prepare=self._prepare(stop, kwargs),
            timeout=self.timeout,
            max_retries=self.max_retries,
        )
        cutter = StopCutter(stop if stop is not None else self.stop)
        for piece in self._get_engine().stream(prompt, outcomes, callbacks=callbacks):
            if isinstance(piece, str):
                chunks = [GenerationChunk(text=text) for text in cutter.feed(piece)]
            else:
                chunks = [self._last_chunk(piece, outcomes, stop, cutter)]
            for chunk in chunks:
                if run_manager:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk

    async def _astream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[GenerationChunk]:
        callbacks = achild_callbacks(run_manager)
        outcomes = await ainvoke_members(
            self.llms,
            prompt,
            callbacks=callbacks,
            prepare=self._prepare(stop, kwargs),
            timeout=self.timeout,
            max_retries=self.max_retries,
        )
        cutter = StopCutter(stop if stop is not None else self.stop)
        async for piece in self._get_engine().astream(prompt, outcomes, callbacks=callbacks):
            if isinstance(piece, str):
                chunks = [GenerationChunk(text=text) for text in cutter.feed(piece)]
            else:
                chunks = [self._last_chunk(piece, outcomes, stop, cutter)]
            for chunk in chunks:
                if run_manager:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk

    def _last_chunk(
        self,
        blended: Blended,
        outcomes: Sequence[MemberOutcome],
        stop: list[str] | None,
        cutter: StopCutter,
    ) -> GenerationChunk:
        generation = self._generation(
            blended.message.text, blended.metadata, outcomes, blended.usage, stop
        )
        return GenerationChunk(
            text=cutter.finish(generation.text), generation_info=generation.generation_info
        )


def __getattr__(name: str) -> Any:
    if name == "BlenderLLM":
        from langchain_blender import _deprecated

        return _deprecated(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


"""Alias of :class:`Blender` (the name the design notes use for the string-LLM ensemble)."""
