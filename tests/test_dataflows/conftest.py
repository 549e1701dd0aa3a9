"""Fixtures of the flow tests: a config on fresh topics (created) and a fresh Redis."""

from __future__ import annotations

import pytest

from fulfil.config import Config
from tests.test_dataflows.helpers import create_topics, make_config


@pytest.fixture
def cfg(bootstrap: str, redis_url: str, topic_prefix: str) -> Config:
    c = make_config(bootstrap, redis_url, topic_prefix)
    create_topics(c)
    return c
