"""PairRanker side by side with the authors' implementation (PyPI ``llm-blender`` 0.0.2), one run.

Both rank the same alpaca-v1 dev records with the same mid-size random PairRM-layout checkpoint
(DeBERTa-v2, 6 layers, hidden 384, PairRM lengths 1224/412; built once by
``../shared/tools/reference/bench.py``), each configuration in its own process so that memory
and kernel time are its own. The reference runs twice: with its default (8 records a call, pairs
of both records padded together) and with ``batch_size=1`` (one record a call, each pair its own
forward: its best setting on CPU). Ours runs through the plain Python API
(``PairRanker.from_pretrained(...).rank_batch(...)``, which since issue 28 tunes the allocator on
its first CPU load), with that opted out (``BLENDER_TUNE_MALLOC=0``: the old plain-API speed),
with the attention bias's compiled loop opted in (``BLENDER_COMPILE_ATTENTION=1``), and as the
CLI does (``tune_malloc()`` first), side by side.

Printed per run: pairs/s, the ratio to the reference's default and to its best setting, real
tokens/s, padding efficiency, peak RSS, user/kernel CPU seconds, the fraction of this machine's
fp32 and bf16 matmul peaks reached by the whole forward (model FLOPs of the real tokens / seconds
/ peak of a 2048x2048 matmul in that dtype and threads), and the order agreement with the
reference. Then one layer's self-attention alone (ours, at the records' mean pair length) and its
fraction of both peaks.

Set-up (once): ``bash ../shared/tools/reference/setup.sh`` (prints the reference virtualenv).

Usage::

    python benchmarks/ranker_vs_reference.py                 # 2 records (180 ordered pairs)
    python benchmarks/ranker_vs_reference.py --limit 8 --work /tmp/ref-bench
    python benchmarks/ranker_vs_reference.py --quick         # fewer of our rows (sanity runs)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
DEFAULT_DATA = SHARED / "data" / "alpaca-v1" / "dev.jsonl"
REFERENCE_TOOLS = SHARED / "tools" / "reference"

# Run in the reference virtualenv: the authors' rank(), batches of 8, timed like ours.
REFERENCE_RUN = r"""
import json, os, resource, sys, time
os.environ["HF_HUB_OFFLINE"] = "1"
import torch
threads, data, ckpt, limit = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
batch_size = int(sys.argv[5])
torch.set_num_threads(threads)
recs = [json.loads(line) for line in open(data)][:limit]
from llm_blender import Blender, BlenderConfig
b = Blender(BlenderConfig(device="cpu", use_tqdm=False)); b.loadranker(ckpt, device="cpu")
stats = {"real": 0, "computed": 0, "calls": 0}
model = b.ranker.pretrained_model
orig = model.forward
def counting(*a, **kw):
    m = kw.get("attention_mask")
    stats["calls"] += 1; stats["real"] += int(m.sum()); stats["computed"] += m.numel()
    return orig(*a, **kw)
model.forward = counting
inputs = [r["instruction"] + r["input"] for r in recs]
cands = [[c["text"] for c in r["candidates"]] for r in recs]
b.rank(inputs[:1], [cands[0][:2]], batch_size=batch_size)
stats.update(real=0, computed=0, calls=0)
r0 = resource.getrusage(resource.RUSAGE_SELF)
t = time.perf_counter()
scores = b.rank(inputs, cands, return_scores=True, batch_size=batch_size)
dt = time.perf_counter() - t
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": dt, "pairs": sum(len(c) * (len(c) - 1) for c in cands),
    "real": stats["real"], "computed": stats["computed"], "user": r1.ru_utime - r0.ru_utime,
    "sys": r1.ru_stime - r0.ru_stime, "peak_rss_mb": r1.ru_maxrss / 1024,
    "scores": [list(map(float, s)) for s in scores], "dtype": "float32"}))
"""


def run_ours(args: argparse.Namespace) -> None:
    """One configuration of ours (this process): print one JSON line."""
    import resource
    import time

    import torch

    torch.set_num_threads(args.threads)
    if args.malloc:
        from blender_core.allocator import tune_malloc

        tune_malloc()
    from blender_core.data import read_mixinstruct
    from blender_core.pair_ranker import PairRanker

    records = read_mixinstruct(args.data, limit=args.limit)
    ranker = PairRanker.from_pretrained(
        args.checkpoint,
        device="cpu",
        dtype=args.dtype,
        fast_attention=not args.transformers_attention,
        **({"batch_tokens": args.batch_tokens} if args.batch_tokens else {}),
    )
    sources = [r.instruction for r in records]
    inputs = [r.input for r in records]
    lists = [r.texts for r in records]
    ranker.rank(sources[0], lists[0][:2], input=inputs[0])  # warm-up
    ranker.reset_stats()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    rankings = ranker.rank_batch(sources, lists, inputs=inputs, pairs=args.pairs)
    seconds = time.perf_counter() - start
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    stats = ranker.stats
    print(
        json.dumps(
            {
                "seconds": seconds,
                "pairs": sum(len(c) * (len(c) - 1) for c in lists),
                "passes": stats.sequences,
                "real": stats.real_tokens,
                "computed": stats.computed_tokens,
                "user": r1.ru_utime - r0.ru_utime,
                "sys": r1.ru_stime - r0.ru_stime,
                "peak_rss_mb": r1.ru_maxrss / 1024,
                "scores": [list(r.scores) for r in rankings],
                "dtype": stats.precision,
                "reason": stats.precision_reason,
            }
        )
    )


def matmul_peak(dtype: str, threads: int) -> float:
    """GFLOP/s of a 2048x2048 matmul in ``dtype`` with ``threads`` threads (best of 5)."""
    import time

    import torch

    torch.set_num_threads(threads)
    t = getattr(torch, dtype)
    a, b = torch.randn(2048, 2048, dtype=t), torch.randn(2048, 2048, dtype=t)
    best = float("inf")
    for _ in range(6):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * 2048**3 / best / 1e9


def model_flops(checkpoint: Path, data: Path, limit: int) -> float:
    """Forward FLOPs of all ordered pairs of the records (real tokens only, no padding)."""
    from blender_core.data import read_mixinstruct
    from blender_core.pair_ranker import PairRanker

    ranker = PairRanker.from_pretrained(checkpoint, device="cpu", dtype="float32")
    cfg = ranker.config.backbone
    h, ffn, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    span = 2 * (cfg.position_buckets if cfg.position_buckets > 0 else cfg.max_position_embeddings)
    enc = ranker.encoder
    total = 0.0
    for r in read_mixinstruct(data, limit=limit):
        ids = enc.tokenize([r.source, *r.texts])
        n = len(r.texts)
        for i in range(n):
            for j in range(n):
                if i != j:
                    length = sum(enc.part_lengths(len(ids[0]), len(ids[1 + i]), len(ids[1 + j])))
                    dense = 2 * length * (4 * h * h + 2 * h * ffn)
                    attention = 2 * 2 * length * length * h + 2 * 2 * length * span * h
                    total += layers * (dense + attention)
    return total


def _child(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd[:3])}... failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def _orders(scores: list[list[float]]) -> list[tuple[int, ...]]:
    return [tuple(sorted(range(len(s)), key=lambda i: (-s[i], i))) for s in scores]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=2, help="records (default 2)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ranker-ref")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--reference-venv", type=Path, default=None)
    parser.add_argument("--skip-reference", action="store_true")
    # internal: one configuration of ours
    parser.add_argument("--ours", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--malloc", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--transformers-attention", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch-tokens", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--pairs", default="all", help=argparse.SUPPRESS)
    parser.add_argument("--attention", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, default=580, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="only the four main rows of ours")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.ours:
        run_ours(args)
        return
    if args.attention:
        run_attention(args)
        return

    venv = args.reference_venv or Path(
        os.environ.get("UPSTREAM_VENV", Path.home() / ".cache" / "blender-upstream")
    )
    ref_python = venv / "bin" / "python"
    checkpoint = args.work / "ranker"
    if not (checkpoint / "model.safetensors").exists():
        if not ref_python.exists():
            sys.exit(f"no reference virtualenv at {venv}: run {REFERENCE_TOOLS / 'setup.sh'}")
        print("building the checkpoint with the reference tools (once)...", flush=True)
        subprocess.run(
            [
                str(ref_python),
                str(REFERENCE_TOOLS / "bench.py"),
                str(args.data),
                str(args.work),
                "1",
            ],
            check=True,
            capture_output=True,
        )

    base = [sys.executable, __file__, "--ours", "--checkpoint", str(checkpoint)]
    base += ["--data", str(args.data), "--limit", str(args.limit), "--threads", str(args.threads)]
    no_tune = {"BLENDER_TUNE_MALLOC": "0"}
    compiled = {"BLENDER_COMPILE_ATTENTION": "1"}
    # (name, command, extra environment): the plain Python API and the CLI-style rows side by side
    runs: list[tuple[str, list[str], dict[str, str]]] = [
        ("ours fp32, plain API", [*base, "--dtype", "float32"], {}),
        ("ours fp32 + tune_malloc() (CLI)", [*base, "--dtype", "float32", "--malloc"], {}),
        ("ours auto, plain API", [*base], {}),
        ("ours auto + tune_malloc() (CLI)", [*base, "--malloc"], {}),
    ]
    if not args.quick:
        runs += [
            ("ours fp32, plain API, allocator opt-out", [*base, "--dtype", "float32"], no_tune),
            ("ours auto, plain API, allocator opt-out", [*base], no_tune),
            ("ours fp32, compiled bias (opt-in)", [*base, "--dtype", "float32"], compiled),
            ("ours auto, compiled bias (opt-in)", [*base], compiled),
            ("ours auto, one-way pairs", [*base, "--pairs", "one-way"], {}),
        ]
    results: dict[str, dict[str, Any]] = {}
    ref_default = "reference, default (batch_size=8)"
    ref_best = "reference, batch_size=1"
    if not args.skip_reference:
        if not ref_python.exists():
            sys.exit(f"no reference virtualenv at {venv}: run {REFERENCE_TOOLS / 'setup.sh'}")
        for name, batch_size in ((ref_default, 8), (ref_best, 1)):
            print(f"timing {name}...", flush=True)
            results[name] = _child(
                [
                    str(ref_python),
                    "-c",
                    REFERENCE_RUN,
                    str(args.threads),
                    str(args.data),
                    str(checkpoint),
                    str(args.limit),
                    str(batch_size),
                ]
            )
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"BLENDER_TUNE_MALLOC", "BLENDER_COMPILE_ATTENTION"}
        and not k.startswith("MALLOC_")
    }
    for name, cmd, env in runs:
        print(f"timing {name}...", flush=True)
        results[name] = _child(cmd, env={**clean, **env})

    flops = model_flops(checkpoint, args.data, args.limit)
    peaks = {d: matmul_peak(d, args.threads) for d in ("float32", "bfloat16")}
    ref = results.get(ref_default)
    best = results.get(ref_best)
    ref_orders = _orders(ref["scores"]) if ref else None

    def rate(r: dict[str, Any] | None) -> float | None:
        return r["pairs"] / r["seconds"] if r else None

    print(
        f"\n{args.limit} alpaca-v1 dev records, {next(iter(results.values()))['pairs']} ordered "
        f"pairs, {args.threads} threads; matmul peak fp32 {peaks['float32']:.0f} GFLOP/s, "
        f"bf16 {peaks['bfloat16']:.0f}; model {flops / 1e9:.0f} GFLOP for all pairs"
    )
    header = (
        f"{'run':<42}{'dtype':>16}{'pairs/s':>9}{'x ref':>7}{'x best':>7}{'tok/s':>7}"
        f"{'pad':>6}{'RSS MB':>7}{'user s':>7}{'sys s':>6}{'%fp32':>6}{'%bf16':>6}"
        f"{'same order':>11}{'top-1':>6}"
    )
    print(header)
    for name, r in results.items():
        pps = r["pairs"] / r["seconds"]
        ratios = "".join(
            f"{pps / base_rate:>7.2f}" if base_rate else f"{'-':>7}"
            for base_rate in (rate(ref), rate(best))
        )
        # one-way runs half the passes: its "pairs/s" counts the ordered pairs it stands for.
        passes = r.get("passes", r["pairs"])
        useful = flops * passes / r["pairs"] / r["seconds"] / 1e9
        if ref_orders is not None:
            orders = _orders(r["scores"])
            same = sum(a == b for a, b in zip(orders, ref_orders, strict=True)) / len(orders)
            top1 = sum(a[0] == b[0] for a, b in zip(orders, ref_orders, strict=True)) / len(orders)
            agree = f"{same:>11.2f}{top1:>6.2f}"
        else:
            agree = f"{'-':>11}{'-':>6}"
        print(
            f"{name:<42}{r['dtype']:>16}{pps:>9.2f}{ratios}{r['real'] / r['seconds']:>7.0f}"
            f"{r['real'] / r['computed']:>6.3f}{r['peak_rss_mb']:>7.0f}{r['user']:>7.1f}"
            f"{r['sys']:>6.1f}{100 * useful / peaks['float32']:>6.0f}"
            f"{100 * useful / peaks['bfloat16']:>6.0f}{agree}"
        )
    plain = {k: rate(results.get(f"ours {k}, plain API")) for k in ("fp32", "auto")}
    cli = {k: rate(results.get(f"ours {k} + tune_malloc() (CLI)")) for k in ("fp32", "auto")}
    for k in ("fp32", "auto"):
        plain_rate, cli_rate = plain[k], cli[k]
        if plain_rate and cli_rate:
            print(f"plain Python API / CLI-style, {k}: {plain_rate / cli_rate:.3f}")
    for name, r in results.items():
        if r.get("reason"):
            print(f"  {name}: precision {r['dtype']} ({r['reason']})")
    mean_length = round(attention_length(checkpoint, args.data, args.limit))
    print(
        f"\nOne layer's self-attention alone (ours, batch 1, {mean_length} tokens: the mean pair "
        f"length; best of 20 calls):"
    )
    for precision in ("float32", "bf16-mixed"):
        for use_compiled in (False, True):
            env = {**clean, **(compiled if use_compiled else {})}
            out = _child(
                [
                    sys.executable,
                    __file__,
                    "--attention",
                    "--checkpoint",
                    str(checkpoint),
                    "--length",
                    str(mean_length),
                    "--dtype",
                    precision,
                    "--threads",
                    str(args.threads),
                ],
                env=env,
            )
            gflops = out["flops"] / out["seconds"] / 1e9
            print(
                f"  {precision:<11} {'compiled bias' if use_compiled else 'eager bias':<14}"
                f"{out['seconds'] * 1e3:8.2f} ms  {gflops:6.1f} GFLOP/s  "
                f"{100 * gflops / peaks['float32']:4.0f}% of the fp32 peak  "
                f"{100 * gflops / peaks['bfloat16']:4.0f}% of the bf16 peak"
            )


def attention_length(checkpoint: Path, data: Path, limit: int) -> float:
    """Mean real length of the ordered pairs of the records (tokens)."""
    from blender_core.data import read_mixinstruct
    from blender_core.pair_ranker import PairRanker

    ranker = PairRanker.from_pretrained(checkpoint, device="cpu", dtype="float32")
    enc = ranker.encoder
    lengths = []
    for r in read_mixinstruct(data, limit=limit):
        ids = enc.tokenize([r.source, *r.texts])
        n = len(r.texts)
        lengths += [
            sum(enc.part_lengths(len(ids[0]), len(ids[1 + i]), len(ids[1 + j])))
            for i in range(n)
            for j in range(n)
            if i != j
        ]
    return sum(lengths) / len(lengths)


def run_attention(args: argparse.Namespace) -> None:
    """Time one layer's fast self-attention at ``args.length`` tokens (this process)."""
    import time

    import torch

    from blender_core.devices import choose_precision, compute_context
    from blender_core.pair_ranker import PairRanker

    torch.set_num_threads(args.threads)
    ranker = PairRanker.from_pretrained(args.checkpoint, device="cpu", dtype=args.dtype)
    backbone = ranker.model.pretrained_model
    encoder = backbone.encoder
    attention = encoder.layer[0].attention.self
    precision = choose_precision(args.dtype, torch.device("cpu"))
    cfg = ranker.config.backbone
    h, length = cfg.hidden_size, args.length
    span = 2 * (cfg.position_buckets if cfg.position_buckets > 0 else cfg.max_position_embeddings)
    hidden = torch.randn(1, length, h, dtype=next(backbone.parameters()).dtype)
    from blender_core.deberta_attention import _KeyBias, relative_table

    with torch.inference_mode(), compute_context(precision, torch.device("cpu")):
        dtype = (
            torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else hidden.dtype
        )
        table = relative_table(
            length,
            encoder.position_buckets,
            encoder.max_relative_positions,
            attention.pos_ebd_size,
            hidden.device,
        )
        key_bias = _KeyBias(torch.zeros(1, 1, 1, length, dtype=dtype), table)
        rel = encoder.get_rel_embedding()
        best = float("inf")
        for _ in range(21):
            start = time.perf_counter()
            attention(hidden, key_bias, rel_embeddings=rel)
            best = min(best, time.perf_counter() - start)
    # q, k, v projections; position projections (shared keys); q.k^T and p.v; c2p and p2c
    flops = 2 * length * 3 * h * h + 2 * 2 * span * h * h + 2 * 2 * length * length * h
    flops += 2 * 2 * length * span * h
    print(json.dumps({"seconds": best, "flops": flops}))


if __name__ == "__main__":
    main()
