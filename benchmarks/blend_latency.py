"""Blend latency: 4 base models that each take 1 s -> the blend takes about 1 s, not 4.

Runs three set-ups: async models (``asyncio.sleep``), sync models that block in ``time.sleep``
(wrapped by ``CallableGenerator``, run in worker threads), and a mix; for each it prints the
wall time of ``Blender.blend``, the sum of the per-model latencies (what running them one after
another would cost) and the ratio. Also ``ablend`` from a running event loop.

    python benchmarks/blend_latency.py [--models 4] [--delay 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from blender_core import Blender, CallableGenerator, RandomRanker, SelectFuser


def make_generators(kind: str, n: int, delay: float) -> list[CallableGenerator]:
    def sync_model(i: int) -> CallableGenerator:
        def answer(prompt: object) -> str:
            time.sleep(delay)
            return f"sync answer {i} to {prompt}"

        return CallableGenerator(answer, name=f"sync-{i}")

    def async_model(i: int) -> CallableGenerator:
        async def answer(prompt: object) -> str:
            await asyncio.sleep(delay)
            return f"async answer {i} to {prompt}"

        return CallableGenerator(answer, name=f"async-{i}")

    if kind == "async":
        return [async_model(i) for i in range(n)]
    if kind == "sync":
        return [sync_model(i) for i in range(n)]
    return [sync_model(i) if i % 2 else async_model(i) for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--delay", type=float, default=1.0)
    args = parser.parse_args()

    print(f"{args.models} base models, {args.delay:.1f} s each; ranker random, fuser select")
    print(f"{'set-up':<22}{'wall (s)':>10}{'sum of models (s)':>20}{'sum / wall':>12}")
    for kind in ("async", "sync", "mixed"):
        blender = Blender(
            make_generators(kind, args.models, args.delay),
            ranker=RandomRanker(seed=0),
            fuser=SelectFuser(),
            timeout=10 * args.delay,
        )
        start = time.perf_counter()
        result = blender.blend("Say hi")
        wall = time.perf_counter() - start
        total = sum(result.latencies.values())
        assert len(result.candidates) == args.models and not result.failures
        print(f"{'blend, ' + kind:<22}{wall:>10.2f}{total:>20.2f}{total / wall:>11.1f}x")

    async def run_async() -> tuple[float, float]:
        blender = Blender(
            make_generators("mixed", args.models, args.delay),
            ranker=RandomRanker(seed=0),
            fuser=SelectFuser(),
        )
        start = time.perf_counter()
        result = await blender.ablend("Say hi")
        return time.perf_counter() - start, sum(result.latencies.values())

    wall, total = asyncio.run(run_async())
    print(f"{'ablend, mixed':<22}{wall:>10.2f}{total:>20.2f}{total / wall:>11.1f}x")


if __name__ == "__main__":
    main()
