"""The stock ledger on Redis Cluster: every key of a node hashes to one slot, and the whole
API runs unchanged on a real 3-shard cluster (started with redis-server and redis-cli)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from redis.crc import key_slot

from fulfil.infra import free_port, redis_server_bin
from state.ledger import InventoryUpdate, Ledger
from state.redis_client import connect
from tests.test_state.ledger_helpers import DAY, _spawn_redis, req

# -- hash tags ------------------------------------------------------------------------------

@pytest.mark.parametrize("node", ["N1", "n:1", "a}b", "{x}", "São Paulo", "}", "{"])
def test_every_key_of_a_node_hashes_to_one_slot(redis_client: redis.Redis, node: str) -> None:
    keys = Ledger(redis_client, prefix="fulfil").node_keys(node)
    assert len({key_slot(k.encode()) for k in keys}) == 1
    assert all("{n:" in k for k in keys)


def test_different_nodes_spread_over_slots(redis_client: redis.Redis) -> None:
    ledger = Ledger(redis_client)
    assert len({key_slot(ledger.node_keys(f"N{i}")[0].encode()) for i in range(40)}) > 30


# -- a real Redis Cluster -------------------------------------------------------------------

def _port_and_bus() -> tuple[int, int]:
    """A free port whose port + 10000 (the cluster bus) is free too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port, port + 10000
    raise RuntimeError("no free port pair for a cluster node")


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Three cluster-enabled redis-servers joined with redis-cli, no replicas."""
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.skip("redis-cli is not on PATH: cannot create a Redis Cluster")
    version = subprocess.run([redis_server_bin(), "--version"], capture_output=True, text=True)
    major = int(version.stdout.split("v=")[1].split(".")[0])
    workdir = tmp_path_factory.mktemp("cluster")
    procs, ports = [], []
    try:
        for _ in range(3):
            port, bus = _port_and_bus()
            # redis < 7 has no --cluster-port: its bus is always port + 10000
            bus_args = ["--cluster-port", str(bus)] if major >= 7 else []
            proc, _ = _spawn_redis(workdir, "--cluster-enabled", "yes", *bus_args,
                                   "--cluster-config-file", f"nodes-{port}.conf", port=port)
            procs.append(proc)
            ports.append(port)
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )
        deadline = time.monotonic() + 30
        while True:
            states = [redis.Redis(port=p).cluster("info")["cluster_state"] for p in ports]
            if all(s == "ok" for s in states):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"cluster did not become ok: {states}")
            time.sleep(0.1)
        yield f"redis+cluster://127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


def test_ledger_runs_unchanged_on_a_real_redis_cluster(cluster_url: str) -> None:
    client = connect(cluster_url)
    ledger = Ledger(client, prefix=f"t{uuid.uuid4().hex[:8]}")
    nodes = [f"N{i:02d}" for i in range(12)]
    shards = {client.get_node_from_key(ledger.node_keys(n)[0]).name for n in nodes}
    assert len(shards) >= 2  # the batch really crosses shards
    assert ledger.apply_inventory(
        [InventoryUpdate(n, "a", 1, "snapshot", 2) for n in nodes]
    ) == ["applied"] * 12
    results = ledger.reserve([req(f"o-{n}", n, ("a", 2)) for n in nodes]
                             + [req("late", nodes[0], ("a", 1))], DAY)
    assert [r.status for r in results] == ["reserved"] * 12 + ["short"]
    atp, load = ledger.availability(nodes, ["a"], DAY)
    assert atp.sum() == 0 and load.tolist() == [1] * 12
    assert ledger.release({n: [f"o-{n}"] for n in nodes[:6]}, DAY) == {
        (n, f"o-{n}"): "released" for n in nodes[:6]
    }
    assert set(ledger.ship({n: [f"o-{n}"] for n in nodes[6:]}).values()) == {"shipped"}
    split = ledger.reserve_split([req("s1", n, ("a", 1)) for n in nodes[:3]]
                                 + [req("s1", nodes[7], ("a", 1))], DAY)
    assert [r.status for r in split] == ["released"] * 3 + ["short"]
    assert [ledger.stock(n, "a") for n in (nodes[0], nodes[7])] == [(2, 0, 2), (0, 0, 0)]
    client.script_flush()  # every primary: the next EVALSHA meets NOSCRIPT and reloads
    assert ledger.reserve([req("o2", nodes[1], ("a", 1))], DAY)[0].status == "reserved"
    client.close()
