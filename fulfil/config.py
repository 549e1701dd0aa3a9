"""One typed, immutable configuration object, built at the edge and passed down.

Sources, lowest to highest precedence: defaults < config file (JSON) < environment variables
(`FULFIL_*`) < command-line flags. Kafka client settings (`kafka.*`, e.g. SASL/SSL) are passed
through to librdkafka untouched, so anything a user's Kafka needs works without code changes.

Secrets (SASL passwords, SSL key passwords, Redis passwords) are kept, but `redacted()` is what
gets printed or logged — never the raw object.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import orjson

_SECRET_KEY = re.compile(r"(password|secret|token|sasl\.oauthbearer|ssl\.key)", re.IGNORECASE)


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the setting."""


@dataclass(frozen=True, slots=True)
class Config:
    """Everything a fulfil worker needs to run.

    `kafka` holds extra librdkafka properties applied to every client (security.protocol,
    sasl.mechanism, sasl.username, sasl.password, ssl.ca.location, ...).
    """

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka: Mapping[str, str] = field(default_factory=dict)
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "fulfil"
    topic_prefix: str = "fulfil."
    network_path: str | None = None
    # Source behaviour: where to start when there is no recovery snapshot.
    start_from: str = "earliest"  # earliest | latest
    batch_size: int = 1000
    source_slots: int = 1  # consumers per input topic; >= total workers (see KafkaSource)
    fetch_wait_max_ms: int = 25
    # 1: a fetch answers as soon as anything is there (lowest latency, right for Kafka). The
    # embedded broker's fetch cost grows with its log, so the demo and benchmarks raise it to
    # make fewer, fuller fetches (fulfil.demo.EMBEDDED_KAFKA_ENV).
    fetch_min_bytes: int = 1
    producer_linger_ms: int = 2
    # Routing knobs.
    max_nodes: int = 8
    max_splits: int = 2
    enforce_capacity: bool = True
    weights: Mapping[str, float] = field(default_factory=dict)
    lane_refresh_ms: int = 250
    availability_ttl_ms: int = 2000  # optimistic ATP cache; reservations re-check atomically
    decision_ttl_days: int = 14
    #: Merged delivery (the consolidation flow, `fulfil run --flow consolidation`): a customer's
    #: later order to the same address, routed within this many seconds of an open one, is
    #: re-planned onto its parcel when that keeps the promise and costs less.
    consolidation_window_s: float = 1800.0
    #: Predictive re-routes (docs/predictive.md): an open order a lane disruption or a node
    #: closure meets is re-planned, and moved, only when the plan it has, as it would now go,
    #: misses its promise with a probability above this (or cannot deliver at all); 0 moves
    #: every such order (the former behaviour). A move pays when it lowers the miss
    #: probability by more than its cost over what scoring says a miss is worth (40 BRL,
    #: `weights.miss_prob`): ~1 BRL a move, so ~0.025 above the new plan's own ~0.02.
    reroute_miss_threshold: float = 0.05
    #: A trained delivery-time model (`fulfil model train`); None = the network's lognormal
    #: prior per lane. Its miss probability is the MISS_PROB scoring feature.
    delivery_model_path: str | None = None
    #: Abnormal-order flags on decisions (dataflows/router_flags.py): `enabled` (default true)
    #: and any threshold of the watchtower's `abnormal` section (AbnormalSettings), e.g.
    #: {"enabled": true, "duplicate_window_ms": 600000}. Config file only.
    abnormal: Mapping[str, Any] = field(default_factory=dict)
    # Runtime.
    workers: int = 1
    epoch_interval_s: float = 1.0
    recovery_dir: str | None = None
    snapshot_interval_s: float = 5.0
    metrics_port: int | None = None
    # Loopback by default; containers bind 0.0.0.0 so Prometheus and probes can reach it.
    metrics_addr: str = "127.0.0.1"
    # Process i serves on metrics_port + i (several processes on one host). Set false when each
    # process has its own network namespace (containers, pods): one port for every process.
    metrics_port_per_process: bool = True
    # Garbage collector (fulfil/heap.py): generation-0 threshold (0 = Python's 700) and the
    # batches of the main step after which the start-up heap is frozen (0 = never).
    gc_gen0_threshold: int = 10_000
    gc_freeze_after_batches: int = 20
    # Logs (fulfil/logs.py): `text` for a terminal, `json` (one object per line) for shippers.
    log_format: str = "text"
    log_level: str = "INFO"
    # Order tracking (dataflows/tracking.py): per-order timeline retention and size, and the
    # `GET /orders/<id>` endpoint of `fulfil track` (loopback unless an operator widens it).
    tracking_ttl_days: int = 14
    tracking_max_entries: int = 256
    http_addr: str = "127.0.0.1"
    http_port: int = 9480

    def topic(self, name: str) -> str:
        """Full Kafka topic name for a registry name (e.g. "orders" -> "fulfil.orders")."""
        return f"{self.topic_prefix}{name}"

    def kafka_common(self) -> dict[str, str]:
        """librdkafka settings shared by every client: bootstrap + pass-through security."""
        return {"bootstrap.servers": self.kafka_bootstrap, **dict(self.kafka)}

    def redacted(self) -> dict[str, Any]:
        """A printable view with every secret replaced by '***'."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "kafka":
                value = {k: ("***" if _SECRET_KEY.search(k) else v) for k, v in value.items()}
            elif f.name == "redis_url":
                value = redact_url(value)
            out[f.name] = value
        return out

    def with_overrides(self, **changes: Any) -> Config:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def redact_url(url: str) -> str:
    """Hide the password in a URL like redis://user:secret@host:6379/0."""
    return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)


_ENV_FIELDS = {
    "kafka_bootstrap": "FULFIL_KAFKA",
    "redis_url": "FULFIL_REDIS",
    "topic_prefix": "FULFIL_TOPIC_PREFIX",
    "redis_prefix": "FULFIL_REDIS_PREFIX",
    "network_path": "FULFIL_NETWORK",
    "start_from": "FULFIL_START_FROM",
    "batch_size": "FULFIL_BATCH_SIZE",
    "source_slots": "FULFIL_SOURCE_SLOTS",
    "fetch_wait_max_ms": "FULFIL_FETCH_WAIT_MAX_MS",
    "fetch_min_bytes": "FULFIL_FETCH_MIN_BYTES",
    "producer_linger_ms": "FULFIL_PRODUCER_LINGER_MS",
    "workers": "FULFIL_WORKERS",
    "recovery_dir": "FULFIL_RECOVERY_DIR",
    "metrics_port": "FULFIL_METRICS_PORT",
    "metrics_addr": "FULFIL_METRICS_ADDR",
    "metrics_port_per_process": "FULFIL_METRICS_PORT_PER_PROCESS",
    "log_format": "FULFIL_LOG_FORMAT",
    "log_level": "FULFIL_LOG_LEVEL",
    "tracking_ttl_days": "FULFIL_TRACKING_TTL_DAYS",
    "tracking_max_entries": "FULFIL_TRACKING_MAX_ENTRIES",
    "http_addr": "FULFIL_HTTP_ADDR",
    "http_port": "FULFIL_HTTP_PORT",
    "consolidation_window_s": "FULFIL_CONSOLIDATION_WINDOW_S",
    "reroute_miss_threshold": "FULFIL_REROUTE_MISS_THRESHOLD",
    "delivery_model_path": "FULFIL_DELIVERY_MODEL",
    "gc_gen0_threshold": "FULFIL_GC_GEN0_THRESHOLD",
    "gc_freeze_after_batches": "FULFIL_GC_FREEZE_AFTER_BATCHES",
}
#: Environment variables `FULFIL_KAFKA__<PROP>` set librdkafka properties: dots become `__`
#: is awkward, so the rule is: lower-case, single `_` -> `.`  (FULFIL_KAFKA__SASL_USERNAME ->
#: sasl.username).
_KAFKA_ENV_PREFIX = "FULFIL_KAFKA__"


def _coerce(name: str, value: Any) -> Any:
    kinds = {f.name: f.type for f in fields(Config)}
    kind = str(kinds[name])
    try:
        if kind.startswith("int"):
            return int(value)
        if kind.startswith("float"):
            return float(value)
        if kind.startswith("bool"):
            return value if isinstance(value, bool) else str(value).lower() in {"1", "true", "yes"}
        if kind.startswith("int | None"):
            return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name!r} must be {kind}; got {value!r}") from None
    return value


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    **flags: Any,
) -> Config:
    """Build the Config from file, environment and flags (flags win)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    names = {f.name for f in fields(Config)}
    path = path or env.get("FULFIL_CONFIG")
    if path:
        try:
            data = orjson.loads(Path(path).read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path}: top level must be an object")
        for key, value in data.items():
            if key not in names:
                raise ConfigError(f"config file {path}: unknown setting {key!r}")
            values[key] = value
    for name, var in _ENV_FIELDS.items():
        if var in env:
            values[name] = env[var]
    kafka = dict(values.get("kafka", {}))
    for var, value in env.items():
        if var.startswith(_KAFKA_ENV_PREFIX):
            kafka[var[len(_KAFKA_ENV_PREFIX):].lower().replace("_", ".")] = value
    for name, value in flags.items():
        if value is None:
            continue
        if name not in names:
            raise ConfigError(f"unknown setting {name!r}")
        if name == "kafka":
            kafka.update(value)
        else:
            values[name] = value
    values["kafka"] = kafka
    coerced = {
        k: (v if k in ("kafka", "weights", "abnormal") else _coerce(k, v))
        for k, v in values.items()
    }
    cfg = Config(**coerced)
    if cfg.start_from not in ("earliest", "latest"):
        raise ConfigError(f"setting 'start_from' must be earliest|latest; got {cfg.start_from!r}")
    if cfg.batch_size < 1:
        raise ConfigError(f"setting 'batch_size' must be >= 1; got {cfg.batch_size}")
    if cfg.fetch_min_bytes < 1:
        raise ConfigError(f"setting 'fetch_min_bytes' must be >= 1; got {cfg.fetch_min_bytes}")
    _check_tracking_and_logs(cfg)
    _check_abnormal(cfg)
    return cfg


def _check_abnormal(cfg: Config) -> None:
    from operators.watch.abnormal import router_settings
    from operators.watch.settings import SettingsError

    try:
        router_settings(cfg.abnormal)
    except SettingsError as exc:
        raise ConfigError(f"setting 'abnormal': {exc}") from None


def _check_tracking_and_logs(cfg: Config) -> None:
    if cfg.log_format not in ("text", "json"):
        raise ConfigError(f"setting 'log_format' must be text|json; got {cfg.log_format!r}")
    if not isinstance(logging.getLevelName(str(cfg.log_level).upper()), int):
        raise ConfigError("setting 'log_level' must be DEBUG|INFO|WARNING|ERROR|CRITICAL; "
                          f"got {cfg.log_level!r}")
    for name in ("tracking_ttl_days", "tracking_max_entries"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"setting {name!r} must be >= 1; got {getattr(cfg, name)}")
    if not 0 <= cfg.http_port <= 65535:
        raise ConfigError(f"setting 'http_port' must be 0..65535; got {cfg.http_port}")
