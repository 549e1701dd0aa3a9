"""Tests of the workload simulator (fulfil/sim)."""
