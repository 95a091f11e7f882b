"""A two-node Ray cluster on this machine (head + worker on loopback), and an actor killed mid-run.

Each node has one CPU and each ranking actor reserves one, so a pool of two actors puts one on
each node. The cluster's processes are stopped at the end of the module (and checked gone).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ray_helpers import (
    RAY_LOCAL,
    configure_ray_data,
    local_rankings,
    make_records,
    rank_cli_app,
    stop_ray,
)
from typer.testing import CliRunner

from blender_core.data import write_mixinstruct

ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")
psutil = pytest.importorskip("psutil")

_NODE = {"num_cpus": 1, "object_store_memory": 96 * 1024 * 1024}
#: The title Ray gives a ranking actor's process while it runs a batch.
_BUSY_TITLE = "ray::MapWorker(MapBatches(_RankActor)).submit"
_ACTOR_TITLE = "ray::MapWorker(MapBatches(_RankActor))"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from ray.cluster_utils import Cluster

    # Loopback here (the conftest turns Ray's outbound-IP lookup off); whatever Ray picks, the
    # head, the worker and the driver must all use the same address.
    ip = ray.util.get_node_ip_address()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={**_NODE, "node_ip_address": ip, "include_dashboard": False},
    )
    nodes = [cluster.head_node]
    try:
        nodes.append(cluster.add_node(**_NODE, node_ip_address=ip))
        cluster.wait_for_nodes(timeout=60)
        yield cluster
    finally:
        stop_ray(ray.shutdown, cluster.shutdown)
        assert not any(node.any_processes_alive() for node in nodes)


@pytest.fixture()
def connected(cluster: Any) -> Iterator[Any]:
    ray.init(address=cluster.address, **RAY_LOCAL)
    configure_ray_data()
    try:
        yield cluster
    finally:
        ray.shutdown()


def test_cli_on_a_two_node_cluster_equals_local(cluster, tiny_pairrm_dir, tmp_path) -> None:
    assert not ray.is_initialized()  # the CLI connects through --address itself
    assert cluster.head_node.node_ip_address == cluster.list_all_nodes()[1].node_ip_address
    records = make_records(9)
    data = tmp_path / "data.jsonl"
    write_mixinstruct(data, records)
    out = tmp_path / "ranked.parquet"
    result = CliRunner().invoke(
        rank_cli_app(),
        [
            "rank",
            str(data),
            "--model",
            str(tiny_pairrm_dir),
            "--engine",
            "ray",
            "--address",
            cluster.address,
            "--concurrency",
            "2",
            "--batch-size",
            "2",
            "--dtype",
            "float32",
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert not ray.is_initialized()  # the CLI disconnected; the cluster keeps running
    rows = pq.read_table(out).to_pylist()
    expected = local_rankings(tiny_pairrm_dir, records, "max_logits")
    assert [r["id"] for r in rows] == [r["id"] for r in records]
    for row in rows:
        ranking = expected[row["id"]]
        assert row["order"] == list(ranking.order) and row["ranks"] == list(ranking.ranks)
        assert row["scores"] == pytest.approx(list(ranking.scores), abs=1e-6)


class _ActorKiller(threading.Thread):
    """Kills (SIGKILL) the first ranking actor seen running a batch; records actor processes."""

    def __init__(self, received: list[int]) -> None:
        super().__init__(daemon=True)
        self.received = received
        self.killed: int | None = None
        self.rows_before_kill: int | None = None
        self.actor_pids: set[int] = set()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for proc in psutil.process_iter(["pid", "cmdline"]):
                title = (proc.info["cmdline"] or [""])[0]
                if not title.startswith(_ACTOR_TITLE):
                    continue
                self.actor_pids.add(proc.pid)
                if self.killed is None and title == _BUSY_TITLE:
                    self.rows_before_kill = sum(self.received)
                    os.kill(proc.pid, signal.SIGKILL)
                    self.killed = proc.pid
            time.sleep(0.02)


def test_killed_actor_restarts_and_every_record_comes_out_once(
    connected: Any, tiny_pairrm_dir: Path
) -> None:
    from blender_core.distributed import rank_dataset

    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    records = make_records(40, words=12)
    ranked = rank_dataset(
        ray.data.from_items(records),
        tiny_pairrm_dir,
        dtype="float32",
        batch_size=4,
        concurrency=2,
    )
    received: list[int] = []
    killer = _ActorKiller(received)
    killer.start()
    rows: list[dict[str, Any]] = []
    try:
        for batch in ranked.iter_batches(batch_size=None, batch_format="pyarrow"):
            rows.extend(batch.select(["id", "order", "scores"]).to_pylist())
            received.append(batch.num_rows)
    finally:
        killer.done.set()
        killer.join(timeout=10)
    assert killer.killed is not None, "no ranking actor was seen running a batch"
    assert killer.rows_before_kill is not None and killer.rows_before_kill < len(records)
    assert len(killer.actor_pids) >= 3  # two actors, and the killed one's restart
    ids = [row["id"] for row in rows]
    assert sorted(ids) == sorted(r["id"] for r in records)  # each exactly once
    expected = local_rankings(tiny_pairrm_dir, records, "max_logits")
    for row in rows:
        assert row["order"] == list(expected[row["id"]].order)
        assert row["scores"] == pytest.approx(list(expected[row["id"]].scores), abs=1e-6)
