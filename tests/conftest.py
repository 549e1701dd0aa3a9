"""Shared fixtures: a real broker and a real redis-server, started once per test session.

Each test gets a fresh Redis database state (FLUSHALL) and, through `topic_prefix`, its own set of
fresh topics, so tests never see each other's data (and the embedded broker's per-partition fetch
cost stays small, see ../shared/PERFORMANCE-NOTES.md).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from fulfil.infra import Server, start_broker, start_redis

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's ../shared folder (real data sets); tests that need it skip without it."""
    if not SHARED.is_dir():
        pytest.skip("../shared is not present beside the checkout")
    return SHARED


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: Server) -> Iterator[str]:
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()
    yield url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_broker(tmp_path_factory.mktemp("broker"))
    yield server
    # Flows started in-process share one producer per configuration (dataflows.connectors);
    # drop them before the broker goes, or librdkafka logs reconnect failures at exit.
    import gc

    from dataflows.connectors import _SharedProducer

    _SharedProducer._instances.clear()
    gc.collect()
    server.stop()


@pytest.fixture
def bootstrap(broker: Server) -> str:
    return f"127.0.0.1:{broker.port}"


_prefix_counter = itertools.count()


@pytest.fixture
def topic_prefix() -> str:
    """A prefix no other test uses, so each test's topics are fresh."""
    return f"t{next(_prefix_counter)}-{uuid.uuid4().hex[:6]}."
