"""The watchtower's pure logic: detectors, alert lifecycle, thresholds (no Kafka, no Redis).

`dataflows/watchtower.py` wires these into a bytewax flow; `docs/alerts.md` describes what each
detector looks at and the runbook of each alert type.
"""
