"""Helpers shared by the ledger tests in tests/test_state (not a test module itself)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from fulfil.infra import free_port, redis_server_bin
from state.ledger import InventoryUpdate, Ledger, ReserveRequest

DAY, NEXT_DAY = "20250301", "20250302"


def stock_up(ledger: Ledger, node: str, **on_hand: int) -> None:
    ledger.apply_inventory(
        [InventoryUpdate(node, sku, 1, "snapshot", qty) for sku, qty in on_hand.items()]
    )


def req(order: str, node: str, *lines: tuple[str, int]) -> ReserveRequest:
    return ReserveRequest(order, node, tuple(lines))


def _spawn_redis(workdir: Path, *extra: str, port: int = 0) -> tuple[subprocess.Popen, int]:
    port = port or free_port()
    proc = subprocess.Popen(
        [redis_server_bin(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=workdir,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"redis-server on {port} did not start")
