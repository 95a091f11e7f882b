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

``--suite gateway`` measures the gateway alone (issue 26), with three ``static`` members, a
random ranker and the ``select`` fuser (no model): requests/s and p50/p99 at 1, 8 and 64
concurrent clients; the answers other clients get while 64 connections send never-ending
bodies; how fast idle and half-sent connections are closed; clients that disconnect before
their answer or in the middle of their body; the server's RSS after a flood of unfinished 8 MiB
headers; and its RSS after 10,000 requests:

    python benchmarks/serve_load.py --suite gateway [--sweep-requests 2000] [--long-requests 10000]
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
from collections.abc import Iterator
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


GATEWAY_CONFIG = """
[server]
max_concurrency = 64
request_timeout = 30
body_timeout = {body_timeout}
header_timeout = {header_timeout}
keep_alive_timeout = 5

[members.alpha]
type = "static"
text = "Paris is the capital of France, and it is on the Seine."

[members.beta]
type = "static"
text = "The capital of France is Paris."

[members.gamma]
type = "static"
text = "France's capital: Paris."

[members.sleepy]
type = "static"
text = "A slow answer."
delay = 2.0

[ensembles.default]
members = ["alpha", "beta", "gamma"]
ranker = {{ type = "random", seed = 0 }}
fuser = {{ type = "select" }}

[ensembles.slow]
members = ["sleepy", "alpha"]
ranker = {{ type = "random", seed = 0 }}
fuser = {{ type = "select" }}
"""

_CHAT = {"model": "default", "messages": [{"role": "user", "content": "Capital of France?"}]}


def _request(path: str, body: bytes, *, length: int | None = None) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\n\r\n"
    )
    return head.encode() + body


async def _until_closed(port: int, send: bytes, timeout: float) -> tuple[float, bytes]:
    """Seconds until the server closes a connection that sent ``send``; what it answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.perf_counter()
    if send:
        writer.write(send)
        await writer.drain()
    data = b""
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                data += chunk
    except TimeoutError:
        return float("inf"), data
    except ConnectionError:
        pass
    finally:
        writer.close()
    return time.perf_counter() - start, data


async def _chat_load(url: str, n: int, concurrency: int) -> tuple[list[float], dict[int, int]]:
    """``n`` chat requests, ``concurrency`` at a time: latencies of the 200s; status counts."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    semaphore = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def one() -> None:
            async with semaphore:
                start = time.perf_counter()
                try:
                    status = (await client.post("/v1/chat/completions", json=_CHAT)).status_code
                except httpx.HTTPError:
                    status = -1
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(one() for _ in range(n)))
    return latencies, statuses


def _pct(values: list[float], p: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100)[p - 1]


async def _gateway_suite(url: str, port: int, pid: int, args: argparse.Namespace) -> None:
    print("## Throughput (3 static members, random ranker, select fuser)")
    print("| clients | requests | req/s | p50 | p99 | non-200 |")
    print("|---:|---:|---:|---:|---:|---:|")
    await _chat_load(url, 200, 8)  # warm-up
    for clients in (1, 8, 64):
        start = time.perf_counter()
        latencies, statuses = await _chat_load(url, args.sweep_requests, clients)
        wall = time.perf_counter() - start
        bad = sum(v for k, v in statuses.items() if k != 200)
        print(
            f"| {clients} | {args.sweep_requests} | {args.sweep_requests / wall:.0f} | "
            f"{_pct(latencies, 50) * 1000:.1f} ms | {_pct(latencies, 99) * 1000:.1f} ms | {bad} |"
        )

    print(f"\n## 64 never-ending bodies (max_concurrency 64, body_timeout {args.body_timeout:g} s)")
    stalled = [
        asyncio.ensure_future(
            _until_closed(port, _request("/v1/chat/completions", b'{"model": ', length=4096), 60)
        )
        for _ in range(64)
    ]
    await asyncio.sleep(0.5)
    latencies, statuses = await _chat_load(url, 400, 8)
    closed = await asyncio.gather(*stalled)
    answers = sorted({data.split(b"\r\n", 1)[0].decode(errors="replace") for _, data in closed})
    print(
        f"other clients meanwhile: statuses {statuses}, p50 {_pct(latencies, 50) * 1000:.1f} ms, "
        f"p99 {_pct(latencies, 99) * 1000:.1f} ms"
    )
    times = [t for t, _ in closed]
    print(f"the stalled ones: answered {answers}, after {min(times):.1f}-{max(times):.1f} s")

    print(f"\n## Idle and half-sent connections (header_timeout {args.header_timeout:g} s)")
    rss_before = _rss_mib(pid)
    idle = [asyncio.ensure_future(_until_closed(port, b"", 60)) for _ in range(180)]
    half = [
        asyncio.ensure_future(
            _until_closed(port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n", 60)
        )
        for _ in range(10)
    ]
    await asyncio.sleep(0.5)
    during, during_statuses = await _chat_load(url, 100, 8)
    idle_times = [t for t, _ in await asyncio.gather(*idle)]
    half_times = [t for t, _ in await asyncio.gather(*half)]
    print(
        f"180 idle connections closed after {min(idle_times):.1f}-{max(idle_times):.1f} s; "
        f"10 half-sent headers after {min(half_times):.1f}-{max(half_times):.1f} s; other "
        f"clients meanwhile: {during_statuses}, p99 {_pct(during, 99) * 1000:.1f} ms; "
        f"RSS {rss_before:.0f} -> {_rss_mib(pid):.0f} MiB"
    )

    print("\n## Disconnects")
    before = httpx.get(f"{url}/metrics").text
    slow = json.dumps({**_CHAT, "model": "slow"}).encode()

    async def leave(send: bytes, after: float) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(send)
        await writer.drain()
        await asyncio.sleep(after)
        writer.close()

    await asyncio.gather(
        *(leave(_request("/v1/chat/completions", slow), 0.3) for _ in range(50)),
        *(
            leave(_request("/v1/chat/completions", slow[:20], length=len(slow)), 0.3)
            for _ in range(50)
        ),
    )
    await asyncio.sleep(1.0)
    after = httpx.get(f"{url}/metrics").text

    def value(text: str, name: str) -> float:
        match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    cancelled = value(after, 'blender_cancelled_total{endpoint="chat"}') - value(
        before, 'blender_cancelled_total{endpoint="chat"}'
    )
    latencies, statuses = await _chat_load(url, 100, 8)
    print(
        f"50 clients gone before their answer, 50 gone mid-body: {cancelled:.0f} counted as "
        f"cancelled, in flight afterwards {value(after, 'blender_in_flight_requests'):.0f}; "
        f"next 100 requests: {statuses}"
    )

    print("\n## Header flood (20 unfinished 8 MiB headers)")
    await _chat_load(url, 50, 8)
    warm = _rss_mib(pid)

    async def flood() -> None:
        with contextlib.suppress(ConnectionError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Flood: ")
            for _ in range(128):
                writer.write(b"b" * 65536)
                await writer.drain()
            writer.close()

    peak = 0.0
    flooding = asyncio.gather(*(flood() for _ in range(20)))
    while not flooding.done():
        peak = max(peak, _rss_mib(pid))
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)
    print(f"RSS warm {warm:.0f} MiB, peak {peak:.0f} MiB, after {_rss_mib(pid):.0f} MiB")

    print(f"\n## RSS over {args.long_requests} requests (64 clients)")
    start_rss = _rss_mib(pid)
    samples = []
    chunk = max(1, args.long_requests // 10)
    for _ in range(10):
        latencies, statuses = await _chat_load(url, chunk, 64)
        samples.append(_rss_mib(pid))
    print(
        f"RSS before {start_rss:.0f} MiB; after each tenth: "
        + ", ".join(f"{x:.0f}" for x in samples)
        + f" MiB (last batch statuses {statuses})"
    )


@contextlib.contextmanager
def _gateway(
    config: Path, log: Path | None = None
) -> Iterator[tuple[str, int, subprocess.Popen[bytes]]]:
    """``blender serve --config config`` on a free loopback port, once it answers: its URL, port
    and process (output to ``log``, else inherited); stopped (SIGTERM, then kill) at the end."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "shared"), str(REPO), env.get("PYTHONPATH", "")]
    )
    command = [sys.executable, "-c", "from blender_core.cli import main; main()", "serve"]
    command += ["--config", str(config), "--port", str(port), "--log-level", "warning"]
    with contextlib.ExitStack() as files:
        out = files.enter_context(log.open("wb")) if log is not None else None
        stderr = subprocess.STDOUT if log is not None else None
        process = subprocess.Popen(command, env=env, stdout=out, stderr=stderr)
    try:
        _wait_ready(url, process)
        yield url, port, process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _run_gateway_suite(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "blend.toml"
        config.write_text(
            GATEWAY_CONFIG.format(
                body_timeout=args.body_timeout, header_timeout=args.header_timeout
            )
        )
        log = Path(tmp) / "server.log"
        with _gateway(config, log) as (url, port, process):
            asyncio.run(_gateway_suite(url, port, process.pid, args))
        text = log.read_text(errors="replace")
        print(f"\nserver log: {text.count('Traceback')} tracebacks, {len(text.splitlines())} lines")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--suite",
        choices=("blend", "gateway"),
        default="blend",
        help="blend: the load test below; gateway: throughput and faults of the gateway alone",
    )
    parser.add_argument("--sweep-requests", type=int, default=2000, help="gateway: per level")
    parser.add_argument("--long-requests", type=int, default=10000, help="gateway: RSS run")
    parser.add_argument("--body-timeout", type=float, default=5.0, help="gateway: server's")
    parser.add_argument("--header-timeout", type=float, default=5.0, help="gateway: server's")
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
    if args.suite == "gateway":
        _run_gateway_suite(args)
        return
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
        with _gateway(config) as (url, _, process):
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
