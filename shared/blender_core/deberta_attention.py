"""A faster inference path for DeBERTa-v2/v3 encoders: disentangled attention as one SDPA call.

transformers' ``DisentangledSelfAttention`` builds about ten ``(batch, heads, L, L)`` tensors per
layer (raw scores, the gathered content->position and position->content terms, each divided and
added in a new tensor, the masked scores, the softmax, ...). At PairRM lengths (pairs of up to
2048 tokens) those tensors, not the matmuls, take most of the time, and each is a fresh
multi-hundred-MB allocation.

Here the two relative-position terms are gathered once each into one additive bias (the scale is
folded into the small operands, the padding mask is added in place) and the attention itself is
``torch.nn.functional.scaled_dot_product_attention`` with that bias, which never materialises the
scores or the probabilities. Relative-position indices and the key-padding bias are built once per
forward instead of once per layer, from the ``2L - 1`` distinct offsets rather than elementwise over
``L x L`` (the bucketed position depends only on ``i - j``). For long inputs the bias is built a
few heads at a time so its size stays under :data:`MAX_BIAS_BYTES`.

On CPU the bias can instead be built by one loop that ``torch.compile`` (inductor) generates
(``BLENDER_COMPILE_ATTENTION=1``): the ``(L, L)`` index is computed from the ``2L - 1`` offsets
inside the loop instead of being read from memory, and the two gathered terms and the padding are
summed as they are loaded, so no ``(L, L)`` temporaries are allocated. It gives the same bits as
the eager gathers (only loads and the same additions). It is off by default because it did not
win: on a 2-core AMD EPYC (AVX512-BF16, no AMX), whole forwards of 580-token pairs (the mean
PairRM-length pair of alpaca-v1) took the same time in fp32 and ~5% longer in bf16-mixed, and the
first call costs ~30 s of compilation on a cold machine (a few seconds once inductor's on-disk
cache holds it). It is kept as an opt-in for CPUs where the gathers are a larger share (AMX
Xeons: bf16 matmuls 6.8x the fp32 peak); any compile failure falls back to the eager gathers with
one warning.

The replacement is structural and local: :func:`enable_fast_attention` swaps the ``encoder`` of a
loaded ``DebertaV2Model`` and the ``attention.self`` module of each layer for modules of this file
that hold the *same* parameter objects under the same names, so the state dict, ``.to()``, saving
and loading are unchanged. In training mode, with ``output_attentions`` or with ``query_states``
(DeBERTa's enhanced mask decoder) they run transformers' own code.

Example:
    .. code-block:: python

        from transformers import DebertaV2Config, DebertaV2Model
        from blender_core.deberta_attention import enable_fast_attention

        model = DebertaV2Model(DebertaV2Config()).eval()
        enable_fast_attention(model)  # True: same outputs (1e-5 in fp32), fewer big tensors
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = [
    "ACCELERATOR_MAX_BIAS_BYTES",
    "COMPILE_ENV",
    "MAX_BIAS_BYTES",
    "FastDebertaV2Encoder",
    "FastDisentangledSelfAttention",
    "enable_fast_attention",
    "relative_index",
    "relative_table",
]

#: Largest attention bias built at once (bytes); above it, heads are processed in groups. Kept
#: under glibc's largest dynamic mmap threshold (32 MiB) so that, even in a process that did not
#: call :func:`blender_core.allocator.tune_malloc`, the bias blocks are reused from the heap
#: instead of being mapped and unmapped per layer (measured: kernel time 10.6 s -> 3.2 s and peak
#: RSS 1.3 -> 0.9 GB on 90 PairRM-length pairs, 1.5x the pairs/s).
MAX_BIAS_BYTES = 30 * 2**20

#: The same limit on accelerators, where allocations are cached by torch (no page faults) and
#: fewer, larger attention calls are faster.
ACCELERATOR_MAX_BIAS_BYTES = 2**30

#: Environment variable: ``1`` (or ``true``/``on``/``yes``) builds the attention bias on CPU with
#: the compiled loop instead of the eager gathers (see the module docstring); default off.
COMPILE_ENV = "BLENDER_COMPILE_ATTENTION"

_log = logging.getLogger(__name__)


class _KeyBias:
    """What the fast encoder hands each layer instead of the ``(B, 1, L, L)`` 0/1 mask."""

    __slots__ = ("_index", "additive", "table")

    def __init__(self, additive: torch.Tensor, table: torch.Tensor) -> None:
        self.additive = additive  # (B, 1, 1, L): 0 for real keys, -inf-like for padding
        # (2L - 1,) int64: relative_table, entry i - j + L - 1 is the bucket of offset i - j.
        self.table = table
        self._index: torch.Tensor | None = None

    @property
    def index(self) -> torch.Tensor:
        """The ``(L, L)`` index into the ``2 * span`` relative embeddings (eager path; built once).

        transformers builds a second, transposed index for the position->content term from
        ``-relative``; the bucketing is odd (``f(-d) = -f(d)``), so that index equals this one.
        """
        if self._index is None:
            self._index = _index_from_table(self.table)
        return self._index

    def dim(self) -> int:  # transformers' layers only pass the mask on
        return 4


def relative_table(
    length: int, bucket_size: int, max_position: int, span: int, device: torch.device
) -> torch.Tensor:
    """The relative-position bucket of each offset ``i - j``, ``(2L - 1,)`` int64.

    Entry ``d + L - 1`` is ``clamp(bucket(d) + span, 0, 2 * span - 1)`` with DeBERTa's log
    buckets (transformers' own ``make_log_bucket_position``).
    """
    from transformers.models.deberta_v2.modeling_deberta_v2 import make_log_bucket_position

    offsets = torch.arange(1 - length, length, dtype=torch.long, device=device)
    if bucket_size > 0 and max_position > 0:
        offsets = make_log_bucket_position(offsets, bucket_size, max_position).to(torch.long)
    return torch.clamp(offsets + span, 0, 2 * span - 1)


def _index_from_table(table: torch.Tensor) -> torch.Tensor:
    length = (table.shape[0] + 1) // 2
    positions = torch.arange(length, dtype=torch.long, device=table.device)
    return table[positions[:, None] - positions[None, :] + (length - 1)]


def relative_index(
    length: int, bucket_size: int, max_position: int, span: int, device: torch.device
) -> torch.Tensor:
    """transformers' clamped relative-position index for ``length`` tokens, ``(L, L)`` int64.

    Entry ``[i, j]`` is ``clamp(bucket(i - j) + span, 0, 2 * span - 1)`` with DeBERTa's log
    buckets (transformers' own ``make_log_bucket_position``). It depends only on ``i - j``, so the
    bucketing (about ten float ops) runs over the ``2L - 1`` offsets (:func:`relative_table`) and
    the matrix is one lookup, instead of all of it running over ``L x L`` entries (a second per
    forward at 2048 tokens).
    """
    return _index_from_table(relative_table(length, bucket_size, max_position, span, device))


def _gather(values: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    """``torch.gather``; 2-byte floats go through an ``int16`` view of the same bits.

    The result is bit-identical (gather only moves values), but on CPU torch's bf16/fp16 gather
    copies the expanded index twice, which made it 2-3x slower than the integer one at PairRM
    lengths and the largest cost of a bf16 forward.
    """
    if values.is_floating_point() and values.element_size() == 2:
        return torch.gather(values.view(torch.int16), dim, index).view(values.dtype)
    return torch.gather(values, dim, index)


def _bias_eager(c2p: torch.Tensor | None, p2c: torch.Tensor | None, mask: _KeyBias) -> torch.Tensor:
    """The ``(B, h, L, L)`` attention bias from the ``(B, h, L, 2S)`` position scores.

    ``bias[i, j] = c2p[i, index[i, j]] + (p2c[j, index[i, j]] + padding[j])`` (absent terms
    left out), with the precomputed ``(L, L)`` index. ``p2c`` is consumed: the padding is added
    to it in place (no second ``(B, h, L, 2S)`` block per layer).
    """
    some = c2p if c2p is not None else p2c
    assert some is not None
    batch, heads, length = some.shape[0], some.shape[1], some.shape[2]
    shape = (batch, heads, length, length)
    bias: torch.Tensor | None = None
    if c2p is not None:
        bias = _gather(c2p, -1, mask.index.expand(shape))
    if p2c is not None:
        # Row j of p2c only ever lands in key column j, so the key-padding bias is added to
        # its 2S columns instead of to the L x L bias afterwards.
        p2c = p2c.add_(mask.additive.transpose(-1, -2))
        # bias[i, j] += p2c[j, index[i, j]]: gather along the key axis of p2c^T.
        p2c_t = _gather(p2c.transpose(-1, -2), -2, mask.index.expand(shape))
        del p2c
        bias = p2c_t if bias is None else bias.add_(p2c_t)
    elif bias is not None:
        bias = bias.add_(mask.additive)
    assert bias is not None
    return bias


def _bias_fused(
    c2p: torch.Tensor | None,
    p2c: torch.Tensor | None,
    table: torch.Tensor,
    additive: torch.Tensor,
) -> torch.Tensor:
    """What :func:`_bias_eager` computes, written for inductor to fuse into one loop.

    ``c2p`` / ``p2c``: ``(N, L, 2S)`` (batch and heads flattened, so that no dimension is 1 and
    one dynamic-shape compilation serves all), ``table``: ``(2L - 1,)``, ``additive``:
    ``(N, 1, L)``. Same operations and the same order of additions as the eager path.
    """
    length = table.shape[0] // 2 + 1
    positions = torch.arange(length, device=table.device)
    index = table[positions[:, None] - positions[None, :] + (length - 1)]
    some = c2p if c2p is not None else p2c
    assert some is not None
    index = index.expand(some.shape[0], length, length)
    bias: torch.Tensor | None = None
    if c2p is not None:
        bias = torch.gather(c2p, -1, index)
    if p2c is not None:
        term = torch.gather((p2c + additive.transpose(-1, -2)).transpose(-1, -2), -2, index)
        bias = term if bias is None else bias + term
    elif bias is not None:
        bias = bias + additive
    assert bias is not None
    return bias


def _bias_c2p_p2c(
    c2p: torch.Tensor, p2c: torch.Tensor, table: torch.Tensor, additive: torch.Tensor
) -> torch.Tensor:
    return _bias_fused(c2p, p2c, table, additive)


def _bias_c2p(c2p: torch.Tensor, table: torch.Tensor, additive: torch.Tensor) -> torch.Tensor:
    return _bias_fused(c2p, None, table, additive)


def _bias_p2c(p2c: torch.Tensor, table: torch.Tensor, additive: torch.Tensor) -> torch.Tensor:
    return _bias_fused(None, p2c, table, additive)


_TERM_BUILDERS: dict[tuple[bool, bool], Callable[..., torch.Tensor]] = {
    (True, True): _bias_c2p_p2c,
    (True, False): _bias_c2p,
    (False, True): _bias_p2c,
}


def _compile_wanted() -> bool:
    return os.environ.get(COMPILE_ENV, "0").strip().lower() in {"1", "true", "on", "yes"}


class _CompiledBias:
    """``torch.compile`` of :func:`_bias_fused`, made on first use; eager gathers if that fails.

    One compiled function per set of terms (each its own code object, so that dynamo's
    per-function recompile limit is spent only on dtypes: shapes are dynamic).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fns: dict[tuple[bool, bool], Callable[..., torch.Tensor]] = {}
        self._failed = False
        self._warmed: set[tuple[bool, bool, torch.dtype]] = set()

    @property
    def available(self) -> bool:
        """Whether the compiled loop is (still) to be used in this process."""
        return not self._failed and _compile_wanted()

    def _fail(self, exc: Exception) -> None:
        if not self._failed:
            self._failed = True
            _log.warning(
                "torch.compile of the DeBERTa attention bias failed (%s: %s); using the eager "
                "gathers (unset %s to skip the attempt)",
                type(exc).__name__,
                str(exc).splitlines()[0] if str(exc) else "",
                COMPILE_ENV,
            )

    def __call__(
        self, c2p: torch.Tensor | None, p2c: torch.Tensor | None, mask: _KeyBias
    ) -> torch.Tensor:
        some = c2p if c2p is not None else p2c
        assert some is not None
        batch, heads, length, width = some.shape
        flat = batch * heads
        additive = mask.additive.expand(batch, heads, 1, length).reshape(flat, 1, length)
        terms = (c2p is not None, p2c is not None)
        args = [t.reshape(flat, length, width) for t in (c2p, p2c) if t is not None]
        key = (*terms, some.dtype)
        try:
            if key in self._warmed:
                out = self._fns[terms](*args, mask.table, additive)
            else:
                with self._lock:  # one thread compiles; the others wait for it
                    fn = self._fns.get(terms)
                    if fn is None:
                        plain = _TERM_BUILDERS[terms]
                        fn = self._fns[terms] = torch.compile(plain, dynamic=True, fullgraph=True)
                    out = fn(*args, mask.table, additive)
                    self._warmed.add(key)
        except Exception as exc:  # any compiler problem: stay correct
            self._fail(exc)
            return _bias_eager(c2p, p2c, mask)
        return out.view(batch, heads, length, length)


_compiled_bias = _CompiledBias()


def _build_bias(c2p: torch.Tensor | None, p2c: torch.Tensor | None, mask: _KeyBias) -> torch.Tensor:
    if c2p is None and p2c is None:
        return mask.additive  # (B, 1, 1, L), broadcast by SDPA
    some = c2p if c2p is not None else p2c
    assert some is not None
    if some.device.type == "cpu" and _compile_wanted() and _compiled_bias.available:
        return _compiled_bias(c2p, p2c, mask)
    return _bias_eager(c2p, p2c, mask)


class FastDisentangledSelfAttention(nn.Module):
    """Drop-in for transformers' ``DisentangledSelfAttention`` sharing its parameters.

    Args:
        original: The module to stand in for; its projections become this module's.
    """

    def __init__(self, original: Any) -> None:
        super().__init__()
        self.num_attention_heads: int = original.num_attention_heads
        self.attention_head_size: int = original.attention_head_size
        self.all_head_size: int = original.all_head_size
        self.query_proj = original.query_proj
        self.key_proj = original.key_proj
        self.value_proj = original.value_proj
        self.share_att_key: bool = original.share_att_key
        self.pos_att_type: list[str] = list(original.pos_att_type)
        self.relative_attention: bool = original.relative_attention
        if self.relative_attention:
            self.position_buckets: int = original.position_buckets
            self.max_relative_positions: int = original.max_relative_positions
            self.pos_ebd_size: int = original.pos_ebd_size
            self.pos_dropout = original.pos_dropout
            if not self.share_att_key:
                if "c2p" in self.pos_att_type:
                    self.pos_key_proj = original.pos_key_proj
                if "p2c" in self.pos_att_type:
                    self.pos_query_proj = original.pos_query_proj
        self.dropout = original.dropout
        # Not registered (a tuple): the fallback shares every parameter with this module.
        self._fallback = (original,)
        self.train(original.training)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: Any,
        output_attentions: bool = False,
        query_states: torch.Tensor | None = None,
        relative_pos: torch.Tensor | None = None,
        rel_embeddings: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Same contract as transformers' module; ``attention_mask`` may be a fast-path bias."""
        if (
            self.training
            or output_attentions
            or query_states is not None
            or not isinstance(attention_mask, _KeyBias)
        ):
            if isinstance(attention_mask, _KeyBias):
                raise RuntimeError("the fast DeBERTa encoder handed its bias to the slow path")
            return self._fallback[0](
                hidden_states,
                attention_mask,
                output_attentions,
                query_states=query_states,
                relative_pos=relative_pos,
                rel_embeddings=rel_embeddings,
            )
        return self._fast(hidden_states, attention_mask, rel_embeddings), None

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, H*d)`` -> ``(B, H, L, d)`` (a view)."""
        return x.view(*x.shape[:-1], self.num_attention_heads, -1).transpose(-2, -3)

    def _fast(
        self, hidden: torch.Tensor, mask: _KeyBias, rel_embeddings: torch.Tensor | None
    ) -> torch.Tensor:
        batch, length, _ = hidden.shape
        heads = self.num_attention_heads
        factor = 1 + ("c2p" in self.pos_att_type) + ("p2c" in self.pos_att_type)
        scale = 1.0 / math.sqrt(self.attention_head_size * factor)
        query = self._heads(self.query_proj(hidden))
        key = self._heads(self.key_proj(hidden))
        value = self._heads(self.value_proj(hidden))
        pos_key = pos_query = None
        if self.relative_attention and rel_embeddings is not None:
            rel = rel_embeddings[: 2 * self.pos_ebd_size].to(hidden.dtype)
            if "c2p" in self.pos_att_type:
                proj = self.key_proj if self.share_att_key else self.pos_key_proj
                pos_key = self._heads(proj(rel))  # (H, 2S, d)
            if "p2c" in self.pos_att_type:
                proj = self.query_proj if self.share_att_key else self.pos_query_proj
                pos_query = self._heads(proj(rel)) * scale  # scale folded in (small)
        # Heads per group so that one (B, h, L, L) bias stays within MAX_BIAS_BYTES.
        per_head = batch * length * length * query.element_size()
        limit = MAX_BIAS_BYTES if hidden.device.type == "cpu" else ACCELERATOR_MAX_BIAS_BYTES
        group = max(1, min(heads, limit // max(per_head, 1)))
        outputs = []
        for start in range(0, heads, group):
            part = slice(start, min(heads, start + group))
            q, k, v = query[:, part], key[:, part], value[:, part]
            c2p = p2c = None
            if pos_key is not None:
                c2p = torch.matmul(q * scale, pos_key[part].transpose(-1, -2))  # (B, h, L, 2S)
            if pos_query is not None:
                p2c = torch.matmul(k, pos_query[part].transpose(-1, -2))  # (B, h, L, 2S)
            bias = _build_bias(c2p, p2c, mask)
            del c2p, p2c
            outputs.append(
                nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
            )
            del bias
        context = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)
        return context.transpose(1, 2).reshape(batch, length, self.all_head_size)


class FastDebertaV2Encoder(nn.Module):
    """Drop-in for transformers' ``DebertaV2Encoder`` (inference), sharing its modules.

    Builds the relative-position indices and the key-padding bias once per forward and hands them
    to every layer; the layers themselves (feed-forward, norms) are transformers' own.
    """

    def __init__(self, original: Any) -> None:
        super().__init__()
        self.layer = original.layer
        self.relative_attention: bool = original.relative_attention
        if self.relative_attention:
            self.max_relative_positions: int = original.max_relative_positions
            self.position_buckets: int = original.position_buckets
            self.rel_embeddings = original.rel_embeddings
        self.norm_rel_ebd: list[str] = list(original.norm_rel_ebd)
        if "layer_norm" in self.norm_rel_ebd:
            self.LayerNorm = original.LayerNorm
        self.conv = original.conv
        self.gradient_checkpointing = False
        self._fallback = (original,)
        attention = original.layer[0].attention.self if len(original.layer) else None
        self._span = int(getattr(attention, "pos_ebd_size", 0) or 0)
        self.train(original.training)

    def get_rel_embedding(self) -> torch.Tensor | None:
        """The (normalised) relative-position embeddings, as transformers computes them."""
        return self._fallback[0].get_rel_embedding()

    def get_attention_mask(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """transformers' 4-D 0/1 mask (for callers of the original API)."""
        return self._fallback[0].get_attention_mask(attention_mask)

    def get_rel_pos(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        """transformers' relative positions (for callers of the original API)."""
        return self._fallback[0].get_rel_pos(hidden_states, *args, **kwargs)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor,
        output_hidden_states: bool = True,
        output_attentions: bool = False,
        query_states: torch.Tensor | None = None,
        relative_pos: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> Any:
        """Same contract as transformers' encoder."""
        if (
            self.training
            or output_attentions
            or query_states is not None
            or relative_pos is not None
            or attention_mask.dim() != 2
            or not self.relative_attention
            or self._span < 1
        ):
            return self._fallback[0](
                hidden_states,
                attention_mask,
                output_hidden_states=output_hidden_states,
                output_attentions=output_attentions,
                query_states=query_states,
                relative_pos=relative_pos,
                return_dict=return_dict,
            )
        from transformers.modeling_outputs import BaseModelOutput

        length = hidden_states.shape[1]
        table = relative_table(
            length,
            self.position_buckets,
            self.max_relative_positions,
            self._span,
            hidden_states.device,
        )
        valid = attention_mask.to(torch.bool)
        # The bias joins the attention scores, so it takes their dtype: autocast's under a
        # mixed precision (float32 residual stream, bf16/fp16 products), else the stream's.
        device_type = hidden_states.device.type
        dtype = (
            torch.get_autocast_dtype(device_type)
            if torch.is_autocast_enabled(device_type)
            else hidden_states.dtype
        )
        additive = torch.zeros(valid.shape, dtype=dtype, device=hidden_states.device).masked_fill_(
            ~valid, torch.finfo(dtype).min
        )
        key_bias = _KeyBias(additive.view(-1, 1, 1, length), table)

        rel_embeddings = self.get_rel_embedding()
        all_hidden: tuple[torch.Tensor, ...] = (hidden_states,)
        states = hidden_states
        layers: Any = self.layer
        for i, layer_module in enumerate(layers):
            output, _ = layer_module(states, key_bias, rel_embeddings=rel_embeddings)
            if i == 0 and self.conv is not None:
                output = self.conv(hidden_states, output, attention_mask)
            all_hidden = (*all_hidden, output)
            states = output
        if not output_hidden_states:
            all_hidden = (states,)
        if not return_dict:
            return (states, all_hidden)
        return BaseModelOutput(last_hidden_state=states, hidden_states=all_hidden, attentions=None)


def enable_fast_attention(model: nn.Module) -> bool:
    """Swap the encoder and self-attention modules of every ``DebertaV2Model`` inside ``model``.

    Idempotent; parameters are shared, not copied. Returns whether anything was (or already had
    been) swapped: ``False`` for other backbones (BERT, MiniLM...), which are left alone.
    """
    from transformers.models.deberta_v2.modeling_deberta_v2 import (
        DebertaV2Encoder,
        DebertaV2Model,
        DisentangledSelfAttention,
    )

    found = False
    module: Any
    for module in list(model.modules()):
        if not isinstance(module, DebertaV2Model):
            continue
        found = True
        encoder: Any = module.encoder
        if isinstance(encoder, DebertaV2Encoder):
            layer: Any
            for layer in encoder.layer:
                if isinstance(layer.attention.self, DisentangledSelfAttention):
                    layer.attention.self = FastDisentangledSelfAttention(layer.attention.self)
            setattr(module, "encoder", FastDebertaV2Encoder(encoder))  # noqa: B010
    return found
