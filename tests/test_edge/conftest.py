"""A centre and an edge stack (two brokers, two Redis, two relays), started once per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.test_edge.helpers import Site, World


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World.start(tmp_path_factory.mktemp("edge"))
    yield w
    w.stop()


@pytest.fixture
def site(world: World) -> Iterator[Site]:
    """A fresh site (own topics and keys on both sides); its links stop even if the test fails."""
    s = world.site()
    yield s
    s.stop_links()
    world.restore()
