"""PairRanker fp16/bf16 throughput on a GPU at real size, against the reference, in one run.

A random ranker of the ``llm-blender/PairRM`` shape (DeBERTa-v3-large: 24 layers, hidden 1024,
16 heads, FFN 4096, relative positions with 256 buckets; PairRM lengths 1224/412; an 8k
sentencepiece vocabulary trained on the data instead of the 128k one, which changes only the
embedding lookup) ranks alpaca-v1 dev records (all ordered pairs, max_logits). Printed per run:
pairs/s, real tokens/s, padding efficiency, peak GPU memory, the ratio to the reference, the
fraction of the measured matmul peak (a 4096x4096 product in the same dtype) reached, and the
order agreement with the reference.

The reference (PyPI ``llm-blender`` 0.0.2, batches of 8) runs when its virtualenv exists
(``bash ../shared/tools/reference/setup.sh`` installs CPU torch: on a GPU machine install a CUDA
torch in it, or pass ``--reference-venv``); it then also builds the checkpoint with its own tools,
so that both load the very same weights. Without it, the checkpoint is built with ours and only
our rows are printed.

``--tiny`` (hidden 64, 2 layers, 2 records' first 4 candidates) checks that the script runs, on
CPU too (``--device cpu``); it measures nothing meaningful.

Usage::

    python benchmarks/ranker_gpu.py                              # cuda, fp16 and bf16, 4 records
    python benchmarks/ranker_gpu.py --tiny --device cpu --dtypes bfloat16 float32
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
DEFAULT_DATA = SHARED / "data" / "alpaca-v1" / "dev.jsonl"
REFERENCE_TOOLS = SHARED / "tools" / "reference"

# Run with the reference virtualenv's python: build the checkpoint (once) with its tools, as
# ../shared/tools/reference/bench.py does, at the shape given on the command line.
REFERENCE_BUILD = r"""
import json, sys
from pathlib import Path
import torch
work, hidden, layers, heads, ffn, corpus = Path(sys.argv[1]), *map(int, sys.argv[2:6]), sys.argv[6]
import safetensors.torch, sentencepiece as spm
from transformers import AutoTokenizer, DebertaV2Config, DebertaV2Model
bb, rk = work / "backbone", work / "ranker"
bb.mkdir(parents=True, exist_ok=True); rk.mkdir(parents=True, exist_ok=True)
spm.SentencePieceTrainer.train(input=corpus, model_prefix=str(bb / "spm"), vocab_size=8000,
    model_type="unigram", pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]",
    bos_piece="[CLS]", eos_piece="[SEP]", unk_piece="[UNK]", user_defined_symbols=["[MASK]"],
    minloglevel=2)
(bb / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "DebertaV2Tokenizer",
    "vocab_type": "spm", "do_lower_case": False, "split_by_punct": False}))
tok = AutoTokenizer.from_pretrained(str(bb)); tok.save_pretrained(str(bb))
cfg = DebertaV2Config(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers,
    num_attention_heads=heads, intermediate_size=ffn, max_position_embeddings=512,
    relative_attention=True, position_buckets=256, pos_att_type=["p2c", "c2p"],
    position_biased_input=False, norm_rel_ebd="layer_norm", share_att_key=True, type_vocab_size=0,
    max_relative_positions=-1, pad_token_id=0, layer_norm_eps=1e-7)
torch.manual_seed(0); DebertaV2Model(cfg).save_pretrained(str(bb))
from llm_blender import RankerConfig
from llm_blender.blender.blender_utils import load_ranker
rc = RankerConfig(ranker_type="pairranker", model_type="deberta", model_name=str(bb),
    source_maxlength=1224, candidate_maxlength=412, n_tasks=1, drop_out=0.05, fp16=False,
    device="cpu", cache_dir=str(work / "cache"))
torch.manual_seed(0); ranker, rtok, _ = load_ranker(rc)
safetensors.torch.save_file({k: v.contiguous() for k, v in ranker.state_dict().items()},
    str(rk / "model.safetensors"))
conf = rc.to_dict(); conf.update(device=None, load_checkpoint=None, cache_dir=None)
for name in ("config.json", "ranker_config.json"):
    (rk / name).write_text(json.dumps(conf, indent=2))
rtok.save_pretrained(str(rk))
"""

# Run with the reference virtualenv's python: its rank() (batches of 8) in the given dtype.
REFERENCE_RUN = r"""
import json, os, sys, time
os.environ["HF_HUB_OFFLINE"] = "1"
import torch
device, dtype, data, ckpt, limit, cands = sys.argv[1:7]
limit, cands = int(limit), int(cands)
recs = [json.loads(line) for line in open(data)][:limit]
from llm_blender import Blender, BlenderConfig
b = Blender(BlenderConfig(device=device, use_tqdm=False)); b.loadranker(ckpt, device=device)
b.ranker = b.ranker.to(getattr(torch, dtype))
inputs = [r["instruction"] + r["input"] for r in recs]
texts = [[c["text"] for c in r["candidates"]][:cands] for r in recs]
b.rank(inputs[:1], [texts[0][:2]], batch_size=8)
if device.startswith("cuda"):
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
t = time.perf_counter()
scores = b.rank(inputs, texts, return_scores=True, batch_size=8)
if device.startswith("cuda"):
    torch.cuda.synchronize()
dt = time.perf_counter() - t
peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else 0.0
print(json.dumps({"seconds": dt, "pairs": sum(len(c) * (len(c) - 1) for c in texts),
    "real": None, "computed": None, "peak_mb": peak,
    "scores": [list(map(float, s)) for s in scores]}))
"""


def build_ours(workdir: Path, texts: list[str], shape: str) -> Path:
    """The same shape built with our tools (hf layout) when the reference is not available."""
    from blender_core.testing.pairranker import make_random_pairranker

    return make_random_pairranker(workdir, texts, shape=shape)


def matmul_peak(device: str, dtype: str) -> float:
    """GFLOP/s of a 4096x4096 matmul (2048 on CPU) in ``dtype`` on ``device`` (best of 5)."""
    import torch

    n = 4096 if device.startswith("cuda") else 2048
    t = getattr(torch, dtype)
    a = torch.randn(n, n, dtype=t, device=device)
    b = torch.randn(n, n, dtype=t, device=device)
    best = float("inf")
    for _ in range(6):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.mm(a, b)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def run_ours(
    ranker: Any, sources: list[str], lists: list[list[str]], device: str
) -> dict[str, Any]:
    import torch

    ranker.rank(sources[0], lists[0][:2])  # warm-up
    ranker.reset_stats()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    rankings = ranker.rank_batch(sources, lists)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else 0.0
    return {
        "seconds": seconds,
        "pairs": ranker.stats.sequences,
        "real": ranker.stats.real_tokens,
        "computed": ranker.stats.computed_tokens,
        "peak_mb": peak,
        "scores": [list(r.scores) for r in rankings],
    }


def flops_per_pair_set(ranker: Any, sources: list[str], lists: list[list[str]]) -> float:
    """Forward FLOPs of all ordered pairs (real tokens only)."""
    cfg = ranker.config.backbone
    h, ffn, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    span = 2 * (cfg.position_buckets if cfg.position_buckets > 0 else cfg.max_position_embeddings)
    enc = ranker.encoder
    total = 0.0
    for source, cands in zip(sources, lists, strict=True):
        ids = enc.tokenize([source, *cands])
        for i in range(len(cands)):
            for j in range(len(cands)):
                if i != j:
                    length = sum(enc.part_lengths(len(ids[0]), len(ids[1 + i]), len(ids[1 + j])))
                    dense = 2 * length * (4 * h * h + 2 * h * ffn)
                    attention = 2 * 2 * length * length * h + 2 * 2 * length * span * h
                    total += layers * (dense + attention)
    enc.clear_cache()
    return total


def _base_dtype(dtype: str, device: str) -> str:
    """The torch dtype name of the products: ``"bfloat16"`` for ``"bf16-mixed"``, etc."""
    import torch

    from blender_core.devices import choose_precision

    return str(choose_precision(dtype, torch.device(device)).dtype).removeprefix("torch.")


def _order(scores: list[float]) -> tuple[int, ...]:
    return tuple(sorted(range(len(scores)), key=lambda i: -scores[i]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--dtypes",
        nargs="+",
        default=["float16", "bfloat16", "bfloat16-mixed"],
        help="PairRanker dtypes; a mixed one is compared with the reference in its base dtype",
    )
    parser.add_argument("--limit", type=int, default=4, help="records")
    parser.add_argument("--candidates", type=int, default=10, help="per record, at most")
    parser.add_argument("--tiny", action="store_true", help="tiny shape: check that it runs")
    parser.add_argument("--work", type=Path, default=None, help="keep the checkpoint here")
    parser.add_argument(
        "--reference-venv",
        type=Path,
        default=Path(os.environ.get("UPSTREAM_VENV", Path.home() / ".cache" / "blender-upstream")),
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from blender_core.data import read_mixinstruct
    from blender_core.pair_ranker import PairRanker

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("no CUDA device: pass --device cpu (with --tiny) to check the script")
    from blender_core.testing.pairranker import RANDOM_RANKER_SHAPES

    shape_name = "tiny" if args.tiny else "large"
    shape = RANDOM_RANKER_SHAPES[shape_name]
    limit, cands = (2, 4) if args.tiny else (args.limit, args.candidates)
    records = read_mixinstruct(args.data, limit=limit)
    sources = [r.source for r in records]
    lists = [[c.text for c in r.candidates][:cands] for r in records]
    all_texts = [t for r in read_mixinstruct(args.data) for t in (r.source, *r.texts)]

    ref_python = args.reference_venv / "bin" / "python"
    has_reference = ref_python.exists()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        checkpoint = work / "ranker"
        if not (checkpoint / "model.safetensors").exists():
            if has_reference:
                corpus = work / "corpus.txt"
                work.mkdir(parents=True, exist_ok=True)
                corpus.write_text(
                    "\n".join(t.replace("\n", " ") for t in all_texts if t.strip()),
                    encoding="utf-8",
                )
                sizes = [str(shape[k]) for k in ("hidden", "layers", "heads", "ffn")]
                subprocess.run(
                    [str(ref_python), "-c", REFERENCE_BUILD, str(work), *sizes, str(corpus)],
                    check=True,
                )
            else:
                build_ours(work, all_texts, shape_name)
        print(f"shape {shape}, {len(records)} records, device {args.device}")
        rows: list[tuple[str, dict[str, Any], float]] = []
        reference: dict[str, dict[str, Any]] = {}
        for dtype in args.dtypes:
            base = _base_dtype(dtype, args.device)
            peak = matmul_peak(args.device, base)
            if has_reference and base not in reference:
                out = subprocess.run(
                    [
                        str(ref_python),
                        "-c",
                        REFERENCE_RUN,
                        args.device,
                        base,
                        str(args.data),
                        str(checkpoint),
                        str(limit),
                        str(cands),
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                lines = [x for x in out.stdout.splitlines() if x.startswith("{")]
                if lines:
                    reference[base] = json.loads(lines[-1])
                    rows.append((f"reference {base}", reference[base], peak))
                else:
                    print(f"reference {base} failed:\n{out.stderr[-2000:]}")
            ranker = PairRanker.from_pretrained(checkpoint, device=args.device, dtype=dtype)
            flops = flops_per_pair_set(ranker, sources, lists)
            result = run_ours(ranker, sources, lists, args.device)
            result["flops"] = flops
            rows.append((f"ours {dtype}", result, peak))
            print(f"  {ranker!r}")
            del ranker
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
        print(
            f"{'run':<20} {'pairs/s':>8} {'x ref':>6} {'real tok/s':>10} {'pad eff':>7} "
            f"{'peak MB':>8} {'% peak':>6} {'same order':>10}"
        )
        flops = next((r["flops"] for _, r, _ in rows if "flops" in r), 0.0)
        for name, row, peak in rows:
            rate = row["pairs"] / row["seconds"]
            ref = reference.get(_base_dtype(name.split()[-1], args.device))
            ratio = f"{rate / (ref['pairs'] / ref['seconds']):6.2f}" if ref else "     -"
            real = f"{row['real'] / row['seconds']:10.0f}" if row.get("real") else "         -"
            pad = f"{row['real'] / row['computed']:7.3f}" if row.get("computed") else "      -"
            share = 100 * flops / row["seconds"] / (peak * 1e9)
            same = "-"
            if ref and not name.startswith("reference"):
                agree = sum(
                    _order(a) == _order(b)
                    for a, b in zip(row["scores"], ref["scores"], strict=True)
                )
                same = f"{agree}/{len(ref['scores'])}"
            print(
                f"{name:<20} {rate:8.2f} {ratio} {real} {pad} {row['peak_mb']:8.0f} "
                f"{share:6.1f} {same:>10}"
            )
        print(f"matmul peak measured: {peak:.0f} GFLOP/s ({args.dtypes[-1]})")


if __name__ == "__main__":
    main()
