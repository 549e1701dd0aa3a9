"""Fixtures shared by the tracking tests: the real 3-shard Redis Cluster of the ledger tests."""

from tests.test_state.test_ledger_cluster import cluster_url  # noqa: F401 (a fixture)
