"""Load test of ``blender serve``: N requests, C at a time, against a real server process.

The server blends three fake members: two ``static`` members (deterministic, a small delay) and
an OpenAI-compatible fake upstream served from this process (so the httpx path is exercised);
a tiny random PairRanker checkpoint ranks (it coalesces concurrent requests) and a ``static``
writer streams the fused answer word by word. A fifth of the requests stream.

Prints: errors (non-200 answers or exceptions), lost requests (sent but never answered), p50 /
p90 / p99 latency, throughput, the server's peak RSS and its mean RSS over the first and the
last quarter of the run (flat memory: the two agree), and the PairRanker's rounds, requests per
round, batch fill and padding efficiency (from ``/metrics``).

    python benchmarks/serve_load.py [--requests 1000] [--concurrency 64] [--delay 0.02]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.server
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


class _Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        question = body["messages"][-1]["content"]
        answer = json.dumps(
            {
                "choices": [{"message": {"role": "assistant", "content": f"Upstream: {question}"}}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


class _UpstreamServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # the default backlog of 5 resets connections under load


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(upstream: str, ranker_dir: Path, delay: float, limit: int, ranker: str) -> str:
    if ranker == "pairrm":
        spec = (
            f'{{ type = "pairrm", checkpoint = "{ranker_dir}", device = "cpu", dtype = "float32" }}'
        )
    else:
        spec = '{ type = "random", seed = 0 }'
    return f"""
[server]
max_concurrency = {limit}
request_timeout = 60

[members.alpha]
type = "static"
text = "Paris is the capital of France, and it is on the Seine."
delay = {delay}

[members.beta]
type = "static"
text = "The capital of France is Paris."
delay = {delay * 2}

[members.up]
type = "openai"
base_url = "{upstream}/v1"
model = "fake"
timeout = 30

[members.writer]
type = "static"
text = "Paris is the capital of France."

[ensembles.default]
members = ["alpha", "beta", "up"]
ranker = {spec}
fuser = {{ type = "llm", member = "writer" }}
top_k = 2
"""


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class _Sampler(threading.Thread):
    """Samples the server's RSS every 20 ms, tagged with how many requests had completed."""

    def __init__(self, pid: int, done: list[int]) -> None:
        super().__init__(daemon=True)
        self.pid, self.done = pid, done
        self.samples: list[tuple[int, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            with contextlib.suppress(OSError):
                self.samples.append((self.done[0], _rss_mib(self.pid)))


async def _load(url: str, n: int, concurrency: int, done: list[int]) -> tuple[list, list]:
    """Send ``n`` requests, ``concurrency`` at a time: latencies of the good ones, and errors.

    An error is a non-200 status, an exception, a stream without ``[DONE]`` or with an error
    event, or a blend that reports a member failure.
    """
    latencies: list[float] = []
    errors: list[str] = []
    semaphore = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def one(i: int) -> None:
            stream = i % 5 == 0
            body = {
                "model": "default",
                "messages": [{"role": "user", "content": f"Question {i}: capital of France?"}],
                "stream": stream,
            }
            async with semaphore:
                start = time.perf_counter()
                try:
                    if stream:
                        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
                            lines = [line async for line in r.aiter_lines() if line]
                        status = r.status_code
                        events = [json.loads(x[6:]) for x in lines[:-1]] if lines else []
                        final = [
                            e
                            for e in events
                            if e.get("choices") and e["choices"][0].get("finish_reason") == "stop"
                        ]
                        problem = (
                            f"HTTP {status}"
                            if status != 200
                            else "stream not finished"
                            if not lines or lines[-1] != "data: [DONE]"
                            else "error event"
                            if any("error" in e for e in events)
                            else f"failures: {final[0]['blend']['failures']}"
                            if not final or final[0]["blend"]["failures"]
                            else None
                        )
                    else:
                        r = await client.post("/v1/chat/completions", json=body)
                        status = r.status_code
                        problem = (
                            f"HTTP {status}: {r.text[:200]}"
                            if status != 200
                            else f"failures: {r.json()['blend']['failures']}"
                            if r.json()["blend"]["failures"]
                            else None
                        )
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                finally:
                    done[0] += 1
                if problem is None:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors.append(problem)

        await asyncio.gather(*(one(i) for i in range(n)))
    return latencies, errors


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise SystemExit("the server did not get ready")


def _quarter_means(samples: list[tuple[int, float]], n: int) -> list[float]:
    """Mean RSS over each quarter of the run (by requests completed)."""
    quarters: list[list[float]] = [[], [], [], []]
    for done, rss in samples:
        quarters[min(3, done * 4 // n)].append(rss)
    return [statistics.fmean(q or [0.0]) for q in quarters]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--delay", type=float, default=0.02, help="static members' delay (s)")
    parser.add_argument(
        "--limit", type=int, default=0, help="server max_concurrency (default: 2 x concurrency)"
    )
    parser.add_argument("--warmup", type=int, default=100, help="requests before measuring")
    parser.add_argument(
        "--ranker",
        choices=("pairrm", "random"),
        default="pairrm",
        help="pairrm: a tiny random PairRanker checkpoint (coalesces requests); random: no model",
    )
    args = parser.parse_args()
    limit = args.limit or 2 * args.concurrency

    from blender_core.testing import make_tiny_pairranker

    upstream = _UpstreamServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        ranker_dir = make_tiny_pairranker(Path(tmp) / "pairrm")
        config = Path(tmp) / "blend.toml"
        config.write_text(
            _config(
                f"http://127.0.0.1:{upstream.server_address[1]}",
                ranker_dir,
                args.delay,
                limit,
                args.ranker,
            )
        )
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO / "shared"), str(REPO), env.get("PYTHONPATH", "")]
        )
        command = [sys.executable, "-c", "from blender_core.cli import main; main()", "serve"]
        command += ["--config", str(config), "--port", str(port), "--log-level", "warning"]
        process = subprocess.Popen(command, env=env)
        try:
            _wait_ready(url, process)
            # warm-up: every code path once, at full concurrency
            asyncio.run(_load(url, min(args.warmup, args.requests), args.concurrency, [0]))
            done = [0]
            sampler = _Sampler(process.pid, done)
            sampler.start()
            start = time.perf_counter()
            latencies, errors = asyncio.run(_load(url, args.requests, args.concurrency, done))
            wall = time.perf_counter() - start
            sampler.stop.set()
            sampler.join()
            metrics = httpx.get(f"{url}/metrics").text
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    upstream.shutdown()

    lost = args.requests - done[0]  # sent, never answered nor failed
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    quarters = _quarter_means(sampler.samples, args.requests)
    first, last = quarters[0], quarters[-1]
    peak = max((rss for _, rss in sampler.samples), default=0.0)

    def metric(name: str) -> float:
        pattern = rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+-]+)$"
        match = re.search(pattern, metrics, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    rounds = metric("blender_ranker_rounds_total")
    ranked = metric("blender_ranker_requests_total")
    print(
        f"{args.requests} requests, {args.concurrency} at a time (server max_concurrency {limit}); "
        f"members: 2 static + 1 fake upstream, ranker {args.ranker}, static streaming writer"
    )
    print(f"errors: {len(errors)}  lost: {lost}  answered without error: {len(latencies)}")
    if errors:
        print("  first errors:", errors[:3])
    print(
        f"latency p50 {q[49] * 1000:.0f} ms, p90 {q[89] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms; "
        f"throughput {args.requests / wall:.1f} req/s over {wall:.1f} s"
    )
    print(
        f"server RSS: peak {peak:.0f} MiB; mean first quarter {first:.0f} MiB, "
        f"last quarter {last:.0f} MiB (change {last - first:+.1f} MiB); by quarter: "
        + ", ".join(f"{q:.0f}" for q in quarters)
    )
    if rounds:
        print(
            f"PairRanker: {ranked:.0f} rank requests in {rounds:.0f} shared rounds "
            f"({metric('blender_ranker_requests_per_round'):.1f} requests per round), "
            f"{metric('blender_ranker_forward_calls_total'):.0f} forward calls, batch fill "
            f"{metric('blender_ranker_batch_fill'):.2f}, padding efficiency "
            f"{metric('blender_ranker_padding_efficiency'):.2f}"
        )


if __name__ == "__main__":
    main()
