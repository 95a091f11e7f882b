"""Load time and generation speed of the embedded SmolLM2 and of a tiny GenFuser, on this machine.

Run: ``python benchmarks/generation_speed.py`` (offline; set ``--no-cache`` to time a fresh GGUF
conversion instead of the cached safetensors copy).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-cache", action="store_true", help="time the GGUF conversion")
    parser.add_argument("--tokens", type=int, default=48, help="new tokens to time")
    args = parser.parse_args()

    import torch

    from blender_core import GenFuser, HuggingFaceGenerator
    from blender_core.testing import make_tiny_genfuser

    print(f"torch threads: {torch.get_num_threads()}, load average: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        cache: bool | str = tmp if args.no_cache else True
        start = time.perf_counter()
        smol = HuggingFaceGenerator.smollm2(temperature=0.0, gguf_cache=cache).load()
        mode = "fresh GGUF conversion" if args.no_cache else "cache on"
        print(f"SmolLM2 load: {time.perf_counter() - start:.1f} s ({mode})")
        prompt = "Write a paragraph about the sea."
        smol.generate(prompt, max_new_tokens=2)  # warm-up
        start = time.perf_counter()
        text = smol.generate(prompt, max_new_tokens=args.tokens, min_new_tokens=args.tokens)
        elapsed = time.perf_counter() - start
        n = len(smol.tokenizer(text, add_special_tokens=False)["input_ids"])
        print(f"SmolLM2 greedy: {n} tokens in {elapsed:.1f} s = {n / elapsed:.1f} tokens/s")

        start = time.perf_counter()
        fuser = GenFuser.from_pretrained(make_tiny_genfuser(os.path.join(tmp, "fuser")))
        print(f"tiny GenFuser build+load: {time.perf_counter() - start:.1f} s")
        cands = ["Paris.", "It is Paris, a city in Europe.", "Lyon"]
        fuser.fuse("Capital of France?", cands, max_new_tokens=2)  # warm-up
        for kwargs in ({}, {"num_beams": 1, "max_new_tokens": 16}):
            start = time.perf_counter()
            fuser.fuse("What is the capital of France?", cands, **kwargs)
            label = kwargs or "defaults (4 beams, 128 new tokens)"
            print(f"tiny GenFuser fuse {label}: {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
