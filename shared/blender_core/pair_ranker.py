"""PairRanker: rank candidate answers with the published LLM-Blender PairRM checkpoints.

Example:
    .. code-block:: python

        from blender_core import PairRanker

        ranker = PairRanker.from_pretrained("llm-blender/PairRM")
        ranking = ranker.rank("Say hi", ["go away", "hi! how can I help?", "bye"])
        ranking.order  # candidate indices, best first, e.g. (1, 0, 2)
        ranking.ranks  # rank of each candidate in input order, 1 = best, e.g. (2, 1, 3)
        ranker.compare("Say hi", "hi!", "go away")  # > 0: "hi!" is better
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from blender_core.aggregation import (
    STRATEGIES,
    BubblePass,
    bubble_permutation,
    max_logits_scores,
    max_wins_scores,
    one_way_pairs,
)
from blender_core.pair_cache import PairLogitCache
from blender_core.pair_scheduler import DEFAULT_WINDOW_S, PairScheduler, RoundReport
from blender_core.ranking import (
    BaseRanker,
    Ranking,
    check_pairwise_size,
    pair_passes,
    validate_rank_inputs,
)

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

    from blender_core.encoding import PairEncoder
    from blender_core.modeling import PairRankerConfig, PairRankerModel

__all__ = ["ASYNC_WORKERS", "PairRanker", "PairRankerStats", "Pairs", "Strategy"]

#: Threads of a ranker's pool for its async methods: up to this many async calls are in the
#: ranker at once, and their pairs share batches (see :mod:`blender_core.pair_scheduler`).
ASYNC_WORKERS = 64

Strategy = Literal["max_logits", "max_wins", "bubble"]
Pairs = Literal["all", "one-way"]


@dataclass
class PairRankerStats:
    """Work done by a :class:`PairRanker` since the last :meth:`PairRanker.reset_stats`.

    Attributes:
        forward_calls: Model forward calls (batches).
        sequences: Encoded pairs scored (one "forward pass" of a pair in the paper's terms).
        real_tokens: Non-padding tokens computed.
        computed_tokens: Tokens computed, padding included.
        precision: The dtype the model runs in (``"bfloat16"``, ``"float32"``...).
        precision_reason: Why that dtype (forced, or what the hardware offered).
        cache_hits: Pair logits answered by the pair-logit cache (no forward pass).
        cache_misses: Pair logits looked up in the cache and computed.
        budget_tokens: The padded-token budget of the forward calls (``batch_tokens`` each, or
            the batch's size when one sequence is larger).
        rounds: Scheduling rounds (each serves every caller with pending pairs, up to a cap).
        requests: Caller requests served (a request is the pairs of one engine call; a request
            split over rounds counts in each).
        deduplicated: Pairs asked for twice in one round (by one or several callers) and
            computed once.
    """

    forward_calls: int = 0
    sequences: int = 0
    real_tokens: int = 0
    computed_tokens: int = 0
    precision: str = ""
    precision_reason: str = ""
    cache_hits: int = 0
    cache_misses: int = 0
    budget_tokens: int = 0
    rounds: int = 0
    requests: int = 0
    deduplicated: int = 0

    @property
    def padding_efficiency(self) -> float:
        """``real_tokens / computed_tokens`` (1.0 before any work)."""
        return self.real_tokens / self.computed_tokens if self.computed_tokens else 1.0

    @property
    def batch_fill(self) -> float:
        """``computed_tokens / budget_tokens``: how full the forward calls were (0.0 before any)."""
        return self.computed_tokens / self.budget_tokens if self.budget_tokens else 0.0

    @property
    def requests_per_round(self) -> float:
        """Mean caller requests sharing a round (> 1: concurrent callers were coalesced)."""
        return self.requests / self.rounds if self.rounds else 0.0


def _check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")


def _check_texts(name: str, values: Any) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a list of strings, got {type(values).__name__}")
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise TypeError(f"{name}[{i}] must be a string, got {type(value).__name__}")
    return list(values)


def _check_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    return value


class PairRanker(BaseRanker):
    """Pairwise ranker of LLM answers (LLM-Blender's PairRanker / PairRM).

    Every score comes from ``logit(A, B)``, the checkpoint's verdict on the ordered pair (A, B) for
    a source (instruction + input); > 0 means A is better. Pairs are truncated one by one, padded
    at the end to a width that depends on their own length only and batched by a token budget
    with pairs of the same width; the head runs row by row, so padding never changes a logit.
    Concurrent calls from threads and asyncio tasks go through one scheduler
    (:mod:`blender_core.pair_scheduler`): on accelerators their pairs share batches; on CPU each
    call runs its own (see ``share_batches``), and its results are exactly those of a solo call.

    Args:
        model: A :class:`~blender_core.modeling.PairRankerModel`.
        tokenizer: Its tokenizer (with the four prefix tokens).
        device: ``None`` = CUDA, else MPS, else CPU.
        dtype: ``None``/``"auto"``: chosen by the hardware (on CPUs with AMX or AVX512-BF16
            ``"bf16-mixed"``, else fp32; bf16 on CUDA where supported, else fp16; see
            :func:`~blender_core.devices.choose_precision`). ``"float32"``, ``"bfloat16"``
            (every weight and activation in bf16), ``"float16"``, ``"bf16-mixed"`` /
            ``"fp16-mixed"`` (linear layers in bf16/fp16 under autocast; embeddings, norms,
            residual stream and head in fp32) or a ``torch.dtype`` force one.
        batch_tokens: Padded tokens per forward pass (memory bound and speed knob); ``None``:
            tuned for the device (:func:`~blender_core.devices.choose_batch_tokens`: on CPU
            the most that keeps each layer's largest block under glibc's mmap threshold, on
            CUDA a share of the free memory).
        source_maxlength: Override the checkpoint's source budget (tokens).
        candidate_maxlength: Override the checkpoint's candidate budget (tokens).
        fast_attention: Run DeBERTa-v2/v3 backbones through
            :mod:`blender_core.deberta_attention` (same weights and logits, one SDPA call per
            layer); ignored for other backbones.
        cache: A :class:`~blender_core.pair_cache.PairLogitCache` (or ``True`` for one of
            default size) remembering pair logits across calls; ``None``: no cache.
        coalesce_window_ms: How long a round waits for concurrent callers still encoding their
            pairs (never waits for a solo caller).
        coalesce_max_tokens: Padded tokens per round at most (``None``: 8 batches' worth).
        share_batches: Whether concurrent callers' pairs share forward passes. ``None``
            (default): on accelerators, not on CPU. On CPU the oneDNN/MKL linear layers give a
            row different bits for different row counts below a few hundred rows (measured on
            an AMX Xeon with a 1536-wide FFN), so sharing could change a logit in its last bits,
            and on two cores it was slower than serving callers one at a time (0.75-0.91x).
            ``False``: each caller's pairs run in their own batches (results exactly those of a
            solo call).
        tune_malloc: On CPU, the first ranker loaded in a process raises glibc's mmap and trim
            thresholds (:func:`~blender_core.allocator.tune_malloc_on_load`), which the fast
            path needs for full speed (0.85-0.90x without). ``False`` (or
            ``BLENDER_TUNE_MALLOC=0`` in the environment) leaves the process's allocator alone.

    Example:
        .. code-block:: python

            ranker = PairRanker.from_pretrained("llm-blender/PairRM", device="cuda")
            rankings = ranker.rank_batch(
                ["Say hi", "Add 2+2"], [["hi!", "go away"], ["4", "5", "four"]], strategy="max_wins"
            )
            best = [r.best for r in rankings]
            ranker.reward("Add 2+2", ["4", "5"], reference="2 + 2 = 4")
    """

    # Abilities declared for the pipeline (blender_core.ranking.RankerAbilities).
    strategies: ClassVar[tuple[str, ...]] = STRATEGIES

    def selects_top_k(self, strategy: str | None) -> bool:
        """``arank(..., top_k=K)`` selects the best K (seeded knockout) with max_logits."""
        return strategy in (None, "max_logits")

    def planned_passes(self, n: int, strategy: str | None, top_k: int | None) -> int | None:
        """Pair comparisons for ``n`` candidates (:func:`~blender_core.ranking.pair_passes`)."""
        return pair_passes(n, strategy, top_k)

    def __init__(
        self,
        model: PairRankerModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        device: Any = None,
        dtype: Any = None,
        batch_tokens: int | None = None,
        source_maxlength: int | None = None,
        candidate_maxlength: int | None = None,
        fast_attention: bool = True,
        cache: PairLogitCache | bool | None = None,
        coalesce_window_ms: float = DEFAULT_WINDOW_S * 1000,
        coalesce_max_tokens: int | None = None,
        share_batches: bool | None = None,
        tune_malloc: bool | None = None,
    ) -> None:
        from blender_core.allocator import tune_malloc_on_load
        from blender_core.devices import (
            choose_batch_tokens,
            choose_precision,
            place_module,
            resolve_device,
        )
        from blender_core.encoding import PairEncoder

        if batch_tokens is not None and (
            isinstance(batch_tokens, bool) or not isinstance(batch_tokens, int) or batch_tokens < 1
        ):
            raise ValueError(f"batch_tokens must be a positive int, got {batch_tokens!r}")
        if not isinstance(coalesce_window_ms, int | float) or coalesce_window_ms < 0:
            raise ValueError(f"coalesce_window_ms must be >= 0, got {coalesce_window_ms!r}")
        self.device = resolve_device(device)
        if self.device.type == "cpu":
            tune_malloc_on_load(tune_malloc)
        self.precision = choose_precision(dtype, self.device)
        self.dtype = self.precision.dtype
        config = model.config
        if source_maxlength is not None:
            config.source_maxlength = int(source_maxlength)
        if candidate_maxlength is not None:
            config.candidate_maxlength = int(candidate_maxlength)
        config.check_lengths()
        self.model = place_module(
            model, self.precision, self.device, keep_float32=model.head_layer
        ).eval()
        if fast_attention:
            from blender_core.deberta_attention import enable_fast_attention

            enable_fast_attention(self.model)
        self.tokenizer = tokenizer
        self.encoder: PairEncoder = PairEncoder(tokenizer, config)
        backbone = config.backbone
        self.budget = choose_batch_tokens(
            batch_tokens,
            self.device,
            self.dtype,
            hidden_size=config.hidden_size,
            intermediate_size=int(getattr(backbone, "intermediate_size", 4 * config.hidden_size)),
            num_heads=int(getattr(backbone, "num_attention_heads", 1)),
            max_pair_length=config.max_pair_length,
        )
        self._stats_lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._scheduler = PairScheduler(
            self._run_batch,
            batch_tokens=self.budget.tokens,
            window_s=coalesce_window_ms / 1000,
            max_round_tokens=coalesce_max_tokens,
            on_round=self._record_round,
            share=self.device.type != "cpu" if share_batches is None else bool(share_batches),
        )
        self.stats = self._fresh_stats()
        if cache is True:
            cache = PairLogitCache()
        if cache is not None and cache is not False and not isinstance(cache, PairLogitCache):
            raise TypeError(f"cache must be a PairLogitCache, True or None, got {cache!r}")
        self.cache: PairLogitCache | None = cache if isinstance(cache, PairLogitCache) else None
        self._model_key: bytes | None = None

    # ---- loading and saving ---------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        device: Any = None,
        dtype: Any = None,
        batch_tokens: int | None = None,
        source_maxlength: int | None = None,
        candidate_maxlength: int | None = None,
        fast_attention: bool = True,
        cache: PairLogitCache | bool | None = None,
        coalesce_window_ms: float = DEFAULT_WINDOW_S * 1000,
        coalesce_max_tokens: int | None = None,
        share_batches: bool | None = None,
        tune_malloc: bool | None = None,
        **hub_kwargs: Any,
    ) -> PairRanker:
        """Load ``llm-blender/PairRM``, ``llm-blender/PairRM-hf``, ``llm-blender/pair-ranker``, a
        local directory in any of their layouts, or one written by :meth:`save_pretrained`.

        Weights load strictly (a missing or unexpected key raises
        :class:`~blender_core.modeling.CheckpointError` naming it); the tokenizer is the
        checkpoint's own; the backbone is never downloaded. ``hub_kwargs`` go to
        ``huggingface_hub.snapshot_download``
        (``revision``, ``cache_dir``, ``token``...).
        """
        from blender_core.modeling import PairRankerModel

        model, tokenizer = PairRankerModel.from_pretrained(
            name_or_path,
            source_maxlength=source_maxlength,
            candidate_maxlength=candidate_maxlength,
            **hub_kwargs,
        )
        return cls(
            model,
            tokenizer,
            device=device,
            dtype=dtype,
            batch_tokens=batch_tokens,
            fast_attention=fast_attention,
            cache=cache,
            coalesce_window_ms=coalesce_window_ms,
            coalesce_max_tokens=coalesce_max_tokens,
            share_batches=share_batches,
            tune_malloc=tune_malloc,
        )

    def save_pretrained(self, path: str | os.PathLike[str]) -> Path:
        """Write the hf layout (``config.json``, ``model.safetensors``) and the tokenizer."""
        return self.model.save_pretrained(path, self.tokenizer)

    @property
    def config(self) -> PairRankerConfig:
        """The model's :class:`~blender_core.modeling.PairRankerConfig`."""
        return self.model.config

    @property
    def share_batches(self) -> bool:
        """Whether concurrent callers' pairs share forward passes (see the ``share_batches``
        argument)."""
        return self._scheduler.share

    @property
    def batch_tokens(self) -> int:
        """Padded tokens per forward pass (may be changed between calls)."""
        return int(self._scheduler.batch_tokens)

    @batch_tokens.setter
    def batch_tokens(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"batch_tokens must be a positive int, got {value!r}")
        self._scheduler.batch_tokens = value

    def reset_stats(self) -> None:
        """Zero the counters of :attr:`stats`."""
        with self._stats_lock:
            self.stats = self._fresh_stats()

    def _fresh_stats(self) -> PairRankerStats:
        return PairRankerStats(
            precision=self.precision.name, precision_reason=self.precision.reason
        )

    # ---- the engine: logit(a, b) for many (source, a, b) ---------------------------------

    def pair_logits(
        self,
        sources: Sequence[str],
        as_: Sequence[str],
        bs: Sequence[str],
        *,
        show_progress: bool = False,
        progress: Any = None,
    ) -> list[float]:
        """``logit(a_k, b_k)`` for source ``sources[k]``, for every k (one direction)."""
        if not len(sources) == len(as_) == len(bs):
            raise ValueError(
                f"sources ({len(sources)}), as_ ({len(as_)}) and bs ({len(bs)}) differ in length"
            )
        if not sources:
            return []
        encoder = self.encoder
        with self._scheduler.caller():
            with self._encode_lock:  # the encoder's text cache is not thread-safe
                try:
                    distinct = list(dict.fromkeys([*sources, *as_, *bs]))
                    ids = dict(zip(distinct, encoder.tokenize(distinct), strict=True))
                finally:
                    encoder.clear_cache()
            seqs = [
                encoder.assemble(ids[s], ids[a], ids[b])
                for s, a, b in zip(sources, as_, bs, strict=True)
            ]
            out = [0.0] * len(sources)
            todo = list(range(len(sources)))
            keys: dict[int, bytes] = {}
            cache = self.cache
            if cache is not None:
                model_key = self._identity()
                todo = []
                for k, seq in enumerate(seqs):
                    key = cache.key(model_key, seq)
                    value = cache.get(key)
                    if value is None:
                        keys[k] = key
                        todo.append(k)
                    else:
                        out[k] = value
                with self._stats_lock:
                    self.stats.cache_hits += len(sources) - len(todo)
                    self.stats.cache_misses += len(todo)
            bar = progress
            if bar is None and show_progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(sources), desc="PairRanker", unit="pair")
            try:
                if bar is not None and len(todo) < len(sources):
                    bar.update(len(sources) - len(todo))
                update: Callable[[int], object] | None = bar.update if bar is not None else None
                values = self._scheduler.compute([seqs[k] for k in todo], progress=update)
            finally:
                if bar is not None and progress is None:
                    bar.close()
            for k, value in zip(todo, values, strict=True):
                out[k] = value
                if cache is not None:
                    cache.put(keys[k], value)
            return out

    def _run_batch(self, width: int, seqs: list[Sequence[int]]) -> list[float]:
        """One forward pass of ``seqs`` padded to exactly ``width`` (the scheduler's hook)."""
        import torch

        tensors = self.encoder.collate(seqs, pad_to_multiple_of=width)
        if tensors["input_ids"].shape[1] != width:
            raise RuntimeError(f"a sequence is longer than its bucket width {width}")
        with torch.inference_mode():
            logits = self._forward(tensors)
        computed = int(tensors["input_ids"].numel())
        with self._stats_lock:
            stats = self.stats
            stats.forward_calls += 1
            stats.sequences += len(seqs)
            stats.real_tokens += sum(len(s) for s in seqs)
            stats.computed_tokens += computed
            stats.budget_tokens += max(self.batch_tokens, computed)
        return logits

    def _record_round(self, report: RoundReport) -> None:
        with self._stats_lock:
            self.stats.rounds += 1
            self.stats.requests += report.requests
            self.stats.deduplicated += report.pairs - report.computed

    def _identity(self) -> bytes:
        """Model identity for cache keys: config, a weight fingerprint, device type, dtype."""
        if self._model_key is None:
            import json

            import torch

            digest = hashlib.sha256()
            digest.update(
                json.dumps(self.config.to_hf_dict(), sort_keys=True, default=str).encode()
            )
            digest.update(f"{self.device.type}|{self.precision.name}".encode())
            with torch.no_grad():
                for name, value in self.model.state_dict().items():
                    # int8 layers hold (weight, bias) tuples of quantized tensors and a dtype
                    items = value if isinstance(value, tuple) else (value,)
                    for tensor in items:
                        if not isinstance(tensor, torch.Tensor):
                            digest.update(f"{name}={tensor!r}".encode())
                            continue
                        if tensor.is_quantized:
                            tensor = tensor.dequantize()
                        flat = tensor.detach().reshape(-1)
                        step = max(1, flat.numel() // 4096)
                        sample = flat[::step].to("cpu", torch.float32)
                        digest.update(f"{name}{tuple(tensor.shape)}".encode())
                        digest.update(sample.numpy().tobytes())
            self._model_key = digest.digest()
        return self._model_key

    def _forward(self, tensors: Mapping[str, torch.Tensor]) -> list[float]:
        """``logit(A, B)`` per row, each row computed as it would be alone.

        The backbone's kernels give each row the same result whatever the batch size (same
        width); a small ``(batch, 2H)`` matmul does not (GEMV for one row, blocked GEMM for
        more), so the head runs on each row's own ``(2, 2H)`` input: [source, A] and [source, B].
        """
        import torch

        from blender_core.devices import compute_context

        input_ids = tensors["input_ids"].to(self.device)
        attention_mask = tensors["attention_mask"].to(self.device)
        model = self.model
        with compute_context(self.precision, self.device):
            hidden = model.pretrained_model(
                input_ids=input_ids, attention_mask=attention_mask
            ).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        source_id, cand1_id, cand2_id = model.config.prefix_ids
        parts = [
            hidden[rows, (input_ids == token_id).int().argmax(dim=1)]
            for token_id in (source_id, cand1_id, cand2_id)
        ]
        h_source, h_a, h_b = parts
        head_dtype = next(model.head_layer.parameters()).dtype
        logits = []
        for r in range(hidden.shape[0]):
            pair = torch.stack([torch.cat([h_source[r], h_a[r]]), torch.cat([h_source[r], h_b[r]])])
            left_right = model.head_layer(pair.to(head_dtype)).float()  # (2, n_tasks)
            logits.append((left_right[0] - left_right[1]).mean())
        return [float(x) for x in torch.stack(logits).cpu().tolist()]

    # ---- comparisons ----------------------------------------------------------------------

    def compare(
        self,
        instruction: str,
        a: str,
        b: str,
        *,
        input: str = "",
        both_directions: bool = True,
    ) -> float:
        """How much better ``a`` is than ``b`` (> 0: ``a``).

        ``both_directions`` (default): ``logit(a, b) - logit(b, a)``, which cancels position bias;
        else ``logit(a, b)`` (one forward pass, the reference's single-direction compare).
        """
        return self.compare_batch(
            [instruction], [a], [b], inputs=[input], both_directions=both_directions
        )[0]

    def compare_batch(
        self,
        instructions: Sequence[str],
        as_: Sequence[str],
        bs: Sequence[str],
        *,
        inputs: Sequence[str] | None = None,
        both_directions: bool = True,
        show_progress: bool = False,
    ) -> list[float]:
        """:meth:`compare` for many triples at once."""
        sources = self._sources(instructions, inputs)
        as_list, bs_list = _check_texts("as_", as_), _check_texts("bs", bs)
        if not len(sources) == len(as_list) == len(bs_list):
            raise ValueError(
                f"instructions ({len(sources)}), as_ ({len(as_list)}) and bs ({len(bs_list)}) "
                "must have the same length"
            )
        if not both_directions:
            return self.pair_logits(sources, as_list, bs_list, show_progress=show_progress)
        logits = self.pair_logits(
            sources + sources, as_list + bs_list, bs_list + as_list, show_progress=show_progress
        )
        n = len(sources)
        return [logits[k] - logits[n + k] for k in range(n)]

    def compare_conversations(
        self,
        conversation_a: Sequence[Mapping[str, str]],
        conversation_b: Sequence[Mapping[str, str]],
        *,
        both_directions: bool = True,
    ) -> float:
        """Compare two chats with the same user turns (> 0: ``conversation_a`` is better).

        Each chat is a list of ``{"role": "user" | "assistant", "content": ...}`` messages,
        alternating and starting with ``user``; formatted as the reference does
        (:func:`blender_core.encoding.conversation_texts`).
        """
        from blender_core.encoding import conversation_texts

        source, a, b = conversation_texts(conversation_a, conversation_b)
        return self.compare(source, a, b, both_directions=both_directions)

    def reward(
        self,
        instruction: str,
        candidates: Sequence[str],
        reference: str,
        *,
        input: str = "",
    ) -> list[float]:
        """Reference-based score of each candidate: ``logit(c_j, ref) - logit(ref, c_j)``.

        > 0: the candidate is judged better than the reference (2N forward passes).
        """
        validate_rank_inputs([instruction], [candidates])
        reference = _check_str("reference", reference)
        cands = list(candidates)
        n = len(cands)
        return self.compare_batch(
            [instruction] * n, cands, [reference] * n, inputs=[_check_str("input", input)] * n
        )

    # ---- ranking --------------------------------------------------------------------------

    def rank(
        self,
        instruction: str,
        candidates: Sequence[str],
        *,
        input: str = "",
        strategy: Strategy = "max_logits",
        seed: int | None = None,
        pairs: Pairs = "all",
        top_k: int | None = None,
    ) -> Ranking:
        """Rank ``candidates`` as answers to ``instruction`` (+ ``input``).

        Strategies: ``"max_logits"`` (the reference's ``rank``; all N(N-1) ordered pairs),
        ``"max_wins"`` (same pairs, counts wins), ``"bubble"`` (best-of-n in 2(N-1) forward passes;
        permutation from ``seed``; see :class:`~blender_core.aggregation.BubblePass` for what its
        order and scores mean). ``Ranking.order`` lists indices best first; ``Ranking.ranks`` gives
        each candidate's rank (1 = best) in input order.

        ``pairs="one-way"`` (max_logits / max_wins): each unordered pair is encoded once, in a
        seeded random direction, and the matrix is filled antisymmetrically
        (``M[j][i] = -M[i][j]``): half the forward passes of all ordered pairs, at the cost of
        the position-bias cancellation the two directions give.

        ``top_k=K`` (max_logits only): select the best K without a full order. A seeded knockout
        (each match both directions) runs until at most ``2K`` candidates are left (one for
        K=1), then max_logits orders those survivors. ``order[:K]`` are the selected K, best
        first; the rest of ``order`` is elimination order; scores are positions, not logits
        (``strategy="top_k"``). For N=10: 18 passes for K=1, 30 for K=3, instead of 90.
        """
        if isinstance(candidates, str):
            raise TypeError("candidates must be a list of strings, not a single string")
        if top_k is not None:
            return self.select_top_k(
                [instruction], [candidates], top_k, inputs=[input], strategy=strategy, seed=seed
            )[0]
        return self.rank_batch(
            [instruction], [candidates], inputs=[input], strategy=strategy, seed=seed, pairs=pairs
        )[0]

    def select_top_k(
        self,
        instructions: Sequence[str],
        candidate_lists: Sequence[Sequence[str]],
        top_k: int,
        *,
        inputs: Sequence[str] | None = None,
        strategy: Strategy = "max_logits",
        seed: int | None = None,
    ) -> list[Ranking]:
        """The ``top_k`` selection of :meth:`rank` for many inputs (rounds batched across them)."""
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be an int >= 1, got {top_k!r}")
        if strategy != "max_logits":
            raise ValueError(f"top_k selection works with strategy='max_logits', not {strategy!r}")
        validate_rank_inputs(instructions, candidate_lists)
        sources = self._sources(instructions, inputs)
        lists = [list(c) for c in candidate_lists]
        keep = 1 if top_k == 1 else 2 * top_k
        alive = [
            bubble_permutation(len(c), seed, key=[s, *c])
            for s, c in zip(sources, lists, strict=True)
        ]
        out_round = [dict[int, int]() for _ in lists]
        round_no = 0
        while True:
            round_no += 1
            matches = [
                (k, alive[k][m], alive[k][m + 1])
                for k in range(len(lists))
                if len(alive[k]) > keep
                for m in range(0, len(alive[k]) - 1, 2)
            ]
            if not matches:
                break
            src, a, b = [], [], []
            for k, i, j in matches:
                src += [sources[k], sources[k]]
                a += [lists[k][i], lists[k][j]]
                b += [lists[k][j], lists[k][i]]
            logits = self.pair_logits(src, a, b)
            losers: set[tuple[int, int]] = set()
            for n, (k, i, j) in enumerate(matches):
                loser = j if logits[2 * n] - logits[2 * n + 1] > 0 else i
                losers.add((k, loser))
                out_round[k][loser] = round_no
            alive = [[i for i in al if (k, i) not in losers] for k, al in enumerate(alive)]
        finals = self.rank_batch(
            [sources[k] for k in range(len(lists))],
            [[lists[k][i] for i in alive[k]] for k in range(len(lists))],
        )
        results = []
        for k, final in enumerate(finals):
            # Survivors keep their max_logits scores (comparable); the eliminated sit below
            # them, one tier per knockout round reached (Ranking.ordered says where).
            floor = min(final.scores) - 1.0
            scores = [floor - (round_no - out_round[k].get(i, 0)) for i in range(len(lists[k]))]
            for local, index in enumerate(alive[k]):
                scores[index] = final.scores[local]
            ordered = len(final) if len(final) < len(lists[k]) else None
            results.append(Ranking.from_scores(scores, strategy="top_k", ordered=ordered))
        return results

    def rank_batch(
        self,
        instructions: Sequence[str],
        candidate_lists: Sequence[Sequence[str]],
        *,
        inputs: Sequence[str] | None = None,
        strategy: Strategy = "max_logits",
        seed: int | None = None,
        show_progress: bool = False,
        pairs: Pairs = "all",
    ) -> list[Ranking]:
        """Rank each candidate list (any number of candidates each), batching work across inputs.

        One candidate gives a ranking with no forward pass. With ``strategy="bubble"`` and a
        ``seed``, each input's permutation depends only on the seed and that input's texts.
        """
        validate_rank_inputs(instructions, candidate_lists)
        _check_strategy(strategy)
        if pairs not in ("all", "one-way"):
            raise ValueError(f"pairs must be 'all' or 'one-way', got {pairs!r}")
        if pairs == "one-way" and strategy == "bubble":
            raise ValueError(
                "pairs='one-way' applies to 'max_logits' and 'max_wins' (all pairs, each encoded "
                "once); 'bubble' compares 2(N-1) chosen pairs and has no one-way form: drop "
                "pairs= or pick another strategy"
            )
        sources = self._sources(instructions, inputs)
        lists = [list(c) for c in candidate_lists]
        if strategy == "bubble":
            return self._rank_bubble(sources, lists, seed=seed, show_progress=show_progress)
        check_pairwise_size(lists, strategy=strategy, ordered=pairs == "all")  # bounded, issue 13

        src: list[str] = []
        a: list[str] = []
        b: list[str] = []
        where: list[tuple[int, int, int]] = []
        for k, (source, cands) in enumerate(zip(sources, lists, strict=True)):
            if pairs == "one-way":
                ordered = one_way_pairs(len(cands), seed, key=[source, *cands])
            else:
                n = len(cands)
                ordered = [(i, j) for i in range(n) for j in range(n) if i != j]
            for i, j in ordered:
                src.append(source)
                a.append(cands[i])
                b.append(cands[j])
                where.append((k, i, j))
        logits = self.pair_logits(src, a, b, show_progress=show_progress)
        matrices = [[[0.0] * len(c) for _ in c] for c in lists]
        for (k, i, j), value in zip(where, logits, strict=True):
            matrices[k][i][j] = value
            if pairs == "one-way":
                matrices[k][j][i] = -value
        aggregate = max_logits_scores if strategy == "max_logits" else max_wins_scores
        return [Ranking.from_scores(aggregate(m), matrix=m, strategy=strategy) for m in matrices]

    async def arank(
        self,
        instruction: str,
        candidates: Sequence[str],
        *,
        input: str = "",
        strategy: Strategy = "max_logits",
        seed: int | None = None,
        pairs: Pairs = "all",
        top_k: int | None = None,
    ) -> Ranking:
        """Async :meth:`rank`, run in the ranker's thread pool; concurrent calls share batches."""
        call = functools.partial(
            self.rank, input=input, strategy=strategy, seed=seed, pairs=pairs, top_k=top_k
        )
        return await self._in_pool(functools.partial(call, instruction, candidates))

    async def arank_batch(
        self,
        instructions: Sequence[str],
        candidate_lists: Sequence[Sequence[str]],
        *,
        inputs: Sequence[str] | None = None,
        strategy: Strategy = "max_logits",
        seed: int | None = None,
        pairs: Pairs = "all",
    ) -> list[Ranking]:
        """Async :meth:`rank_batch`, run in the ranker's thread pool."""
        call = functools.partial(
            self.rank_batch,
            instructions,
            candidate_lists,
            inputs=inputs,
            strategy=strategy,
            seed=seed,
            pairs=pairs,
        )
        return await self._in_pool(call)

    async def acompare(
        self,
        instruction: str,
        a: str,
        b: str,
        *,
        input: str = "",
        both_directions: bool = True,
    ) -> float:
        """Async :meth:`compare`; concurrent calls share batches."""
        call = functools.partial(
            self.compare, instruction, a, b, input=input, both_directions=both_directions
        )
        return await self._in_pool(call)

    async def acompare_batch(
        self,
        instructions: Sequence[str],
        as_: Sequence[str],
        bs: Sequence[str],
        *,
        inputs: Sequence[str] | None = None,
        both_directions: bool = True,
    ) -> list[float]:
        """Async :meth:`compare_batch`."""
        call = functools.partial(
            self.compare_batch,
            instructions,
            as_,
            bs,
            inputs=inputs,
            both_directions=both_directions,
        )
        return await self._in_pool(call)

    async def _in_pool(self, call: Callable[[], Any]) -> Any:
        """Run ``call`` in this ranker's own pool (:data:`ASYNC_WORKERS` threads), so that many
        concurrent tasks are in the ranker at once (asyncio's default pool has cores + 4)."""
        if self._pool is None:
            with self._stats_lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(ASYNC_WORKERS, thread_name_prefix="PairRanker")
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def _rank_bubble(
        self,
        sources: list[str],
        lists: list[list[str]],
        *,
        seed: int | None,
        show_progress: bool,
    ) -> list[Ranking]:
        passes = [
            BubblePass(bubble_permutation(len(c), seed, key=[s, *c]))
            for s, c in zip(sources, lists, strict=True)
        ]
        bar = None
        if show_progress:
            from tqdm.auto import tqdm

            total = sum(2 * (len(c) - 1) for c in lists)
            bar = tqdm(total=total, desc="PairRanker bubble", unit="pair")
        try:
            # Round r runs comparison r of every input, both directions, in one call.
            while True:
                active = [(k, p.next_pair()) for k, p in enumerate(passes) if not p.done]
                if not active:
                    break
                src: list[str] = []
                a: list[str] = []
                b: list[str] = []
                for k, pair in active:
                    assert pair is not None
                    cur, nxt = lists[k][pair[0]], lists[k][pair[1]]
                    src += [sources[k], sources[k]]
                    a += [cur, nxt]
                    b += [nxt, cur]
                logits = self.pair_logits(src, a, b, progress=bar)
                for n, (k, _) in enumerate(active):
                    passes[k].record(logits[2 * n] - logits[2 * n + 1])
        finally:
            if bar is not None:
                bar.close()
        return [Ranking.from_scores(p.scores(), strategy="bubble") for p in passes]

    # ---- helpers --------------------------------------------------------------------------

    @staticmethod
    def _sources(instructions: Sequence[str], inputs: Sequence[str] | None) -> list[str]:
        texts = _check_texts("instructions", instructions)
        if inputs is None:
            return texts
        extra = _check_texts("inputs", inputs)
        if len(extra) != len(texts):
            raise ValueError(
                f"inputs ({len(extra)}) and instructions ({len(texts)}) must have the same length"
            )
        # The reference's source: instruction and input joined with no separator.
        return [i + x for i, x in zip(texts, extra, strict=True)]

    def __repr__(self) -> str:
        config = self.config
        return (
            f"PairRanker(backbone={config.backbone.model_type!r}, "
            f"hidden={config.hidden_size}, lengths={config.source_maxlength}/"
            f"{config.candidate_maxlength}, device={str(self.device)!r}, "
            f"dtype={self.precision.name} ({self.precision.reason}), "
            f"batch_tokens={self.batch_tokens} ({self.budget.reason}))"
        )
