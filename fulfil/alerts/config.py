"""The alert bridge's routes file: destinations, which alerts go where, retries, rate limits.

```yaml
destinations:
  oncall:   {kind: pagerduty, routing_key: "${PD_ROUTING_KEY}"}
  ops-chat: {kind: slack, url: "${SLACK_WEBHOOK_URL}", rate_per_s: 1, updates: false}
  cn-ops:   {kind: feishu, url: "https://open.feishu.cn/open-apis/bot/v2/hook/...",
             secret: "${FEISHU_SECRET}"}
  dd:       {kind: dingtalk, url: "https://oapi.dingtalk.com/robot/send?access_token=...",
             secret: "${DINGTALK_SECRET}"}
  wx:       {kind: wecom, url: "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=..."}
  archive:  {kind: webhook, url: "https://example.com/hooks/fulfil", secret: "${HOOK_SECRET}"}
routes:
  - match: {severity: [critical, error]}
    to: [oncall, ops-chat]
  - match: {type: [stock-out-ahead, demand-surge]}
    to: [cn-ops]
  - to: [archive]                      # no match: every alert
retry: {initial_ms: 500, max_ms: 60000, factor: 2.0, jitter: 0.2}
max_age_ms: 21600000                    # older alerts are not delivered (first start, backlog)
```

Every route whose `match` accepts an alert sends it to its destinations (each destination once).
`match` keys: `type`, `severity`, `status` (lists; absent = any). A destination with
`updates: false` receives the opening trigger and the resolve only, not the updates in between
(PagerDuty receives updates by default: they merge into the open incident by dedup_key).
`${VAR}` is replaced from the environment, so secrets stay out of the file; `redacted()` is what
gets printed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from operators.watch.settings import SettingsError, read_mapping

KINDS = ("pagerduty", "slack", "feishu", "dingtalk", "wecom", "webhook")
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
#: Sensible defaults per service (documented limits: Slack ~1 msg/s per webhook, DingTalk and
#: WeCom 20 msgs/min per bot, Feishu 100/min and 5/s).
DEFAULT_RATES = {"pagerduty": (10.0, 20), "slack": (1.0, 3), "feishu": (1.5, 5),
                 "dingtalk": (0.3, 5), "wecom": (0.3, 5), "webhook": (20.0, 50)}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class BridgeConfigError(SettingsError):
    """The routes file is malformed; the message names the setting (never a secret)."""


@dataclass(frozen=True, slots=True)
class Destination:
    name: str
    kind: str
    url: str
    routing_key: str = ""
    secret: str = ""
    keyword: str = ""  # DingTalk bots secured by keyword
    locale: str = "zh_cn"  # Feishu post locale
    headers: Mapping[str, str] = field(default_factory=dict)
    rate_per_s: float = 1.0
    burst: int = 1
    updates: bool = True
    timeout_s: float = 10.0

    def redacted(self) -> dict[str, Any]:
        url = re.sub(r"(access_token|key|token)=[^&]+", r"\1=***", self.url)
        url = re.sub(r"/(hook|services)/.*$", r"/\1/***", url)
        return {"kind": self.kind, "url": url, "rate_per_s": self.rate_per_s,
                "burst": self.burst, "updates": self.updates,
                "signed": bool(self.secret), "routing_key": "***" if self.routing_key else ""}


@dataclass(frozen=True, slots=True)
class Route:
    to: tuple[str, ...]
    types: frozenset[str] | None = None
    severities: frozenset[str] | None = None
    statuses: frozenset[str] | None = None

    def matches(self, alert: Mapping[str, Any]) -> bool:
        return all(allowed is None or alert.get(name) in allowed for name, allowed in (
            ("type", self.types), ("severity", self.severities), ("status", self.statuses)))


@dataclass(frozen=True, slots=True)
class Retry:
    initial_ms: int = 500
    max_ms: int = 60_000
    factor: float = 2.0
    jitter: float = 0.2

    def delay_ms(self, attempt: int, rand: float) -> float:
        """Backoff before attempt `attempt + 1` (attempt >= 1); `rand` in [0, 1)."""
        base = min(self.max_ms, self.initial_ms * self.factor ** (attempt - 1))
        return base * (1 - self.jitter + 2 * self.jitter * rand)


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    destinations: Mapping[str, Destination]
    routes: tuple[Route, ...]
    retry: Retry = Retry()
    max_age_ms: int = 6 * 3_600_000

    def targets(self, alert: Mapping[str, Any]) -> set[str]:
        """Names of the destinations this alert goes to."""
        names: set[str] = set()
        for route in self.routes:
            if route.matches(alert):
                names.update(route.to)
        return names

    def redacted(self) -> dict[str, Any]:
        return {"destinations": {n: d.redacted() for n, d in self.destinations.items()},
                "routes": [{"to": list(r.to)} for r in self.routes]}


def _expand(value: Any, where: str, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in env:
                raise BridgeConfigError(f"{where}: environment variable {m.group(1)} is not set")
            return env[m.group(1)]

        return _VAR.sub(sub, value)
    if isinstance(value, Mapping):
        return {k: _expand(v, f"{where}.{k}", env) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]", env) for i, v in enumerate(value)]
    return value


def _destination(name: str, d: Any) -> Destination:
    where = f"destinations.{name}"
    if not isinstance(d, Mapping):
        raise BridgeConfigError(f"{where} must be a mapping")
    known = set(Destination.__dataclass_fields__) - {"name"}
    unknown = set(d) - known
    if unknown:
        raise BridgeConfigError(f"{where}: unknown setting(s) {sorted(unknown)}")
    kind = d.get("kind")
    if kind not in KINDS:
        raise BridgeConfigError(f"{where}.kind must be one of {', '.join(KINDS)}; got {kind!r}")
    url = str(d.get("url") or (PAGERDUTY_URL if kind == "pagerduty" else ""))
    if not url.startswith(("http://", "https://")):
        raise BridgeConfigError(f"{where}.url must be an http(s) URL")
    if kind == "pagerduty" and not d.get("routing_key"):
        raise BridgeConfigError(f"{where}.routing_key is required for pagerduty")
    rate, burst = DEFAULT_RATES[kind]
    try:
        return Destination(
            name=name, kind=kind, url=url, routing_key=str(d.get("routing_key", "")),
            secret=str(d.get("secret", "")), keyword=str(d.get("keyword", "")),
            locale=str(d.get("locale", "zh_cn")),
            headers={str(k): str(v) for k, v in (d.get("headers") or {}).items()},
            rate_per_s=float(d.get("rate_per_s", rate)), burst=int(d.get("burst", burst)),
            updates=bool(d.get("updates", True)), timeout_s=float(d.get("timeout_s", 10.0)))
    except (TypeError, ValueError) as exc:
        raise BridgeConfigError(f"{where}: {exc}") from None


def _set(value: Any, where: str) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise BridgeConfigError(f"{where} must be a list")
    return frozenset(str(v) for v in value)


def bridge_config(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> BridgeConfig:
    """Build and check the config from a mapping (the parsed routes file)."""
    data = _expand(dict(data), "routes-file", os.environ if env is None else env)
    unknown = set(data) - {"destinations", "routes", "retry", "max_age_ms"}
    if unknown:
        raise BridgeConfigError(f"unknown section(s) {sorted(unknown)}")
    dests = {str(n): _destination(str(n), d) for n, d in (data.get("destinations") or {}).items()}
    if not dests:
        raise BridgeConfigError("destinations: at least one is required")
    routes = []
    for i, r in enumerate(data.get("routes") or []):
        where = f"routes[{i}]"
        if not isinstance(r, Mapping) or not r.get("to"):
            raise BridgeConfigError(f"{where} needs `to: [destination, ...]`")
        match = r.get("match") or {}
        bad = set(match) - {"type", "severity", "status"}
        if bad:
            raise BridgeConfigError(f"{where}.match: unknown key(s) {sorted(bad)}")
        to = tuple(str(t) for t in (r["to"] if isinstance(r["to"], list) else [r["to"]]))
        missing = [t for t in to if t not in dests]
        if missing:
            raise BridgeConfigError(f"{where}.to: unknown destination(s) {missing}")
        routes.append(Route(to, _set(match.get("type"), f"{where}.match.type"),
                            _set(match.get("severity"), f"{where}.match.severity"),
                            _set(match.get("status"), f"{where}.match.status")))
    if not routes:
        raise BridgeConfigError("routes: at least one is required")
    retry_data = data.get("retry") or {}
    try:
        retry = Retry(**{k: type(getattr(Retry(), k))(v) for k, v in retry_data.items()})
    except (TypeError, ValueError, AttributeError) as exc:
        raise BridgeConfigError(f"retry: {exc}") from None
    return BridgeConfig(dests, tuple(routes), retry, int(data.get("max_age_ms", 6 * 3_600_000)))


def load_bridge_config(path: str | Path, env: Mapping[str, str] | None = None) -> BridgeConfig:
    return bridge_config(read_mapping(path), env)
