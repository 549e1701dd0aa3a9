"""Tests of the `state` package (Redis ledger) against real redis-server processes."""
