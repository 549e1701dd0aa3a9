"""Fixtures shared by the validation tests of tests/test_schemas."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from .validation_helpers import BASES


@pytest.fixture
def event_factory() -> Callable[[str], tuple[str, dict[str, Any]]]:
    """`event_factory("order.created")` -> (kind, a fresh deep copy of the doc example)."""

    def make(name: str) -> tuple[str, dict[str, Any]]:
        kind, event = BASES[name]
        return kind, copy.deepcopy(event)

    return make
