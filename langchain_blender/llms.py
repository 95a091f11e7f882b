"""``Blender``: an ensemble of LLMs (text in, text out) that behaves like one LangChain LLM."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from functools import partial
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    BaseCallbackManager,
    CallbackManagerForLLMRun,
    Callbacks,
)
from langchain_core.language_models import BaseLLM
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.outputs import Generation, GenerationChunk, LLMResult
from langchain_core.runnables.config import ContextThreadPoolExecutor
from pydantic import ConfigDict

from langchain_blender._callbacks import achild_callbacks, child_callbacks
from langchain_blender._engine import Blended
from langchain_blender._members import MemberOutcome
from langchain_blender._settings import EnsembleCall, EnsembleSettings, StopCutter, apply_stop

__all__ = ["Blender"]


class Blender(EnsembleSettings, BaseLLM):
    """An LLM-Blender ensemble for text prompts: every member answers, the ranker ranks, the best
    ``top_k`` are fused (or the best is selected). The string-LLM form of
    :class:`~langchain_blender.ChatBlender` (as LangChain's ``OpenAI`` is to ``ChatOpenAI``).

    * Members (``models``; ``llms=`` is a deprecated alias) may be LLMs, chat models or
      runnables returning a string or a message; they are called concurrently, each under
      ``timeout`` seconds, and their runs nest under the ensemble's run for that prompt
      (``batch`` and ``generate`` keep one run per prompt).
    * ``stream``/``astream``: the answer is known once every member has answered and the fuser
      has run; it then arrives in word-sized chunks.
    * ``policy`` picks which members a prompt asks (every member by default; ``"cascade"``,
      ``"router"``: a fraction of them, in stages, each stage a child run holding its members').
    * Each generation's ``generation_info`` holds ``candidates``, ``ranking``, ``top_k``,
      ``best_models``, ``failures``, ``latencies``, ``calls`` (the members called and skipped,
      why, tokens, cost, calls saved) and ``usage_metadata`` (summed over the called members that
      report it, and a LangChain-model fuser); ``llm_output["token_usage"]`` sums the batch.
    * A member that raises or times out is listed in ``failures``; when fewer than
      ``min_candidates`` answer, ``BlendError`` names every member's failure.

    Example:
        .. code-block:: python

            from langchain_core.output_parsers import StrOutputParser
            from langchain_core.prompts import PromptTemplate
            from langchain_blender import Blender

            llm = Blender(models=[llm_a, llm_b, llm_c], ranker="llm-blender/PairRM", top_k=2)
            chain = PromptTemplate.from_template("Q: {question}\\nA:") | llm | StrOutputParser()
            chain.invoke({"question": "Why is the sky blue?"})
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

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

    def _prompt(self, member_input: Any) -> tuple[str, str]:
        return member_input, ""

    def _finish(
        self, blended: Blended, outcomes: Sequence[MemberOutcome], stop: list[str] | None
    ) -> Generation:
        info = {"model_name": self.model_name, **blended.metadata}
        usage = self._usage(blended, outcomes)
        if usage is not None:
            info["usage_metadata"] = dict(usage)
        text = apply_stop(blended.message.text, self._stop_for(stop))
        return Generation(text=text, generation_info=info)

    async def _ablend_one(self, call: EnsembleCall) -> Generation:
        return self._finish(*await self._arun(call), call.stop)

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

    def _generate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        callbacks = child_callbacks(run_manager)
        calls = [EnsembleCall(p, stop, kwargs, callbacks, sync=True) for p in prompts]
        return self._result([self._sync(partial(self._ablend_one, call)) for call in calls])

    async def _agenerate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        generations = await asyncio.gather(
            *(
                self._ablend_one(EnsembleCall(p, stop, kwargs, achild_callbacks(run_manager)))
                for p in prompts
            )
        )
        return self._result(list(generations))

    # ``BaseLLM.generate`` opens one run per prompt but hands ``_generate`` only the first
    # prompt's run manager, so members of every prompt would nest under the first prompt's run.
    # The public ``generate``/``agenerate`` (which ``batch``/``abatch`` call) therefore run each
    # prompt as its own one-prompt ``generate``, concurrently; each run closes with its own
    # outcome, and the first failure is raised once every prompt has finished.

    def generate(
        self, prompts: list[str], stop: Any = None, callbacks: Any = None, **kwargs: Any
    ) -> LLMResult:
        # ``stop``, ``callbacks`` and ``kwargs`` are ``BaseLLM.generate``'s, passed on as given.
        runs = per_prompt_run_args(prompts, callbacks, kwargs)
        if runs is None:
            return super().generate(prompts, stop, callbacks, **kwargs)
        generate_one = super().generate
        with ContextThreadPoolExecutor(max_workers=min(len(prompts), 8)) as pool:
            futures = [
                pool.submit(generate_one, [prompt], stop, **one, **kwargs)
                for prompt, one in zip(prompts, runs, strict=True)
            ]
            outcomes: list[LLMResult | BaseException] = []
            for future in futures:
                try:
                    outcomes.append(future.result())
                except BaseException as exc:  # raised below, once every prompt has finished
                    outcomes.append(exc)
        return merge_results(outcomes)

    async def agenerate(
        self, prompts: list[str], stop: Any = None, callbacks: Any = None, **kwargs: Any
    ) -> LLMResult:
        runs = per_prompt_run_args(prompts, callbacks, kwargs)
        if runs is None:
            return await super().agenerate(prompts, stop, callbacks, **kwargs)
        agenerate_one = super().agenerate
        outcomes = await asyncio.gather(
            *(
                agenerate_one([prompt], stop, **one, **kwargs)
                for prompt, one in zip(prompts, runs, strict=True)
            ),
            return_exceptions=True,
        )
        return merge_results(outcomes)

    # ``BaseLLM.stream``/``astream`` hand ``_stream``/``_astream`` their run manager: members
    # nest under the stream's run, and the fuser's tokens go out as it generates them.

    def _stream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[GenerationChunk]:
        call = EnsembleCall(prompt, stop, kwargs, child_callbacks(run_manager), sync=True)
        for chunk in self._sync_iter(lambda: self._achunks(call)):
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
        call = EnsembleCall(prompt, stop, kwargs, achild_callbacks(run_manager))
        async for chunk in self._achunks(call):
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    def _delta_chunk(self, text: str) -> GenerationChunk:
        return GenerationChunk(text=text)

    def _final_chunks(self, answer: Generation, cutter: StopCutter) -> list[GenerationChunk]:
        return [
            GenerationChunk(text=cutter.finish(answer.text), generation_info=answer.generation_info)
        ]


def per_prompt_run_args(
    prompts: list[str], callbacks: Callbacks | list[Callbacks] | None, kwargs: dict[str, Any]
) -> list[dict[str, Any]] | None:
    """Take ``BaseLLM.generate``'s other run arguments (``tags``, ``metadata``, ``run_name``,
    ``run_id``) out of ``kwargs`` and split them with ``callbacks`` into one set per
    prompt, as it reads them: a list of per-prompt values (callbacks given per prompt, tags as
    a list of lists, metadata, run names and run ids as lists) must have one entry per prompt;
    anything else is shared; a single ``run_id`` names the first prompt's run. ``None`` (and
    ``kwargs`` untouched) for fewer than two prompts, which ``generate`` runs as it is."""
    if not isinstance(prompts, list) or len(prompts) < 2:
        return None
    n = len(prompts)
    tags, metadata, run_name, run_id = (
        kwargs.pop(name, None) for name in ("tags", "metadata", "run_name", "run_id")
    )

    def split(name: str, value: Any, per_prompt: bool) -> list[Any]:
        if not per_prompt:
            return [value] * n
        if len(value) != n:
            raise ValueError(f"{name} must be a list of the same length as prompts")
        return list(value)

    per_prompt_callbacks = (
        isinstance(callbacks, list)
        and bool(callbacks)
        and (isinstance(callbacks[0], list | BaseCallbackManager) or callbacks[0] is None)
    )
    per_prompt_tags = isinstance(tags, list) and bool(tags) and isinstance(tags[0], list)
    columns = {
        "callbacks": split("callbacks", callbacks, per_prompt_callbacks),
        "tags": split("tags", tags, per_prompt_tags),
        "metadata": split("metadata", metadata, isinstance(metadata, list)),
        "run_name": split("run_name", run_name, isinstance(run_name, list)),
    }
    if isinstance(run_id, list):
        columns["run_id"] = split("run_id", run_id, True)
    else:
        columns["run_id"] = [run_id] + [None] * (n - 1)
    return [{key: column[k] for key, column in columns.items()} for k in range(n)]


def merge_results(outcomes: Sequence[LLMResult | BaseException]) -> LLMResult:
    """One ``LLMResult`` from one-prompt results, in prompt order: generations, run ids and the
    summed ``token_usage``; the first failure is raised instead."""
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    results = [o for o in outcomes if isinstance(o, LLMResult)]
    usage: UsageMetadata | None = None
    for result in results:
        if (result.llm_output or {}).get("token_usage"):
            usage = add_usage(usage, result.llm_output["token_usage"])  # type: ignore[index]
    return LLMResult(
        generations=[g for r in results for g in r.generations],
        llm_output={"token_usage": dict(usage) if usage else {}},
        run=[info for r in results for info in (r.run or [])] or None,
    )


def __getattr__(name: str) -> Any:
    if name == "BlenderLLM":
        from langchain_blender import _deprecated

        return _deprecated(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


"""Alias of :class:`Blender` (the name the design notes use for the string-LLM ensemble)."""
