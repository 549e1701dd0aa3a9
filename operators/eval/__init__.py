"""Decision quality: replay a stream through routing policies and judge them on ground truth.

`replay` (offline, the engine's decisions), `policies` (fulfil and the rules it is compared
with), `truth` (when parcels really arrive), `metrics`, `optimum` (the hindsight MILP), `run`
(one evaluation), `tuning`, `report`. Pure: no Kafka, no Redis; SciPy only for the optimum.
See docs/evaluation.md.
"""
