"""Fixtures shared by the ledger tests of tests/test_state."""

from __future__ import annotations

import pytest
import redis

from state.ledger import Ledger


@pytest.fixture
def ledger(redis_client: redis.Redis) -> Ledger:
    return Ledger(redis_client)
