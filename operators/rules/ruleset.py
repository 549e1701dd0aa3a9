"""Business rules: a YAML file compiled once into predicates and per-network action masks.

    version: peak-2026-11
    timezone: America/Sao_Paulo
    rules:
      - id: vip-express
        precedence: 100
        effective: {from: 2026-11-01, until: 2026-12-31T23:59:59Z}
        when: {customer.tier: {in: [gold, vip]}}
        then: {service_level: express, priority: 9, tags: [vip]}

How rules combine (so the outcome never depends on how YAML orders a mapping):
- rules are tried by `precedence` (higher first), ties in file order; a rule only applies
  to orders placed (event time) inside its `effective` window; `stop: true` ends the evaluation
  after that rule when it matches;
- *restrictions* all hold at once: `restrict` (nodes, carriers, services) intersect, and the
  smallest `max_splits` / `forbid_splits` wins;
- *choices* come from the highest-precedence matching rule that makes them: `hold`, `priority`,
  `prefer`, `service_level` (the forced level is then combined with the restrictions);
- `tags` accumulate.

An order whose restrictions leave no candidate is unroutable with reason `restricted-by-rules`,
never routed against the rules. Node, carrier and service names are checked against the network
when the file is compiled.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from operators.rules.conditions import Predicate, compile_condition
from operators.rules.yamlsrc import FileError, Node, Problem, load

_RULE_KEYS = {"id", "description", "precedence", "effective", "when", "then", "stop"}
_ACTION_KEYS = {"hold", "priority", "restrict", "prefer", "max_splits", "forbid_splits",
                "service_level", "tags"}
_TARGET_KEYS = {"nodes", "carriers", "services"}


@dataclass(frozen=True, slots=True)
class Hold:
    group: str
    reason: str
    rule: str


@dataclass(frozen=True, slots=True)
class Actions:
    """One rule's actions, resolved against the network (masks over nodes / services)."""

    hold: Hold | None = None
    priority: int | None = None
    node_ok: np.ndarray | None = None  # bool[N]
    svc_ok: np.ndarray | None = None  # bool[S]
    level: np.ndarray | None = None  # bool[S]: services of the forced service level
    node_pref: np.ndarray | None = None
    svc_pref: np.ndarray | None = None
    max_splits: int | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    precedence: int
    start_ms: int | None
    end_ms: int | None
    when: Predicate
    then: Actions
    stop: bool
    line: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the rules decided for one order. `EMPTY` when none matched."""

    hit: tuple[str, ...] = ()
    hold: Hold | None = None
    priority: int | None = None
    node_ok: np.ndarray | None = None
    svc_ok: np.ndarray | None = None
    node_pref: np.ndarray | None = None
    svc_pref: np.ndarray | None = None
    max_splits: int | None = None
    tags: tuple[str, ...] = ()

    @property
    def restricts(self) -> bool:
        return self.node_ok is not None or self.svc_ok is not None or self.max_splits is not None


EMPTY = Outcome()


@dataclass(frozen=True)
class RuleSet:
    """A compiled rules file. `version` is the file's label plus its content hash."""

    version: str
    rules: tuple[Rule, ...]
    fields: frozenset[str]
    timezone: ZoneInfo | None = None
    source_text: str = field(default="", repr=False)

    def evaluate(self, facts: dict[str, Any], event_ms: int) -> Outcome:
        """Apply the rules to one order's facts (see `operators.rules.facts`)."""
        hit: list[str] = []
        merged: dict[str, Any] = {}
        tags: list[str] = []
        for rule in self.rules:
            if rule.start_ms is not None and event_ms < rule.start_ms:
                continue
            if rule.end_ms is not None and event_ms > rule.end_ms:
                continue
            if not rule.when(facts):
                continue
            hit.append(rule.id)
            a = rule.then
            for name in ("hold", "priority", "node_pref", "svc_pref", "level"):  # first wins
                value = getattr(a, name)
                if value is not None and name not in merged:
                    merged[name] = value
            for name in ("node_ok", "svc_ok"):  # restrictions intersect
                mask = getattr(a, name)
                if mask is not None:
                    merged[name] = mask if name not in merged else merged[name] & mask
            if a.max_splits is not None:
                merged["max_splits"] = min(a.max_splits, merged.get("max_splits", a.max_splits))
            tags.extend(t for t in a.tags if t not in tags)
            if rule.stop:
                break
        if not hit:
            return EMPTY
        level = merged.pop("level", None)
        if level is not None:
            merged["svc_ok"] = level if merged.get("svc_ok") is None else merged["svc_ok"] & level
        return Outcome(hit=tuple(hit), tags=tuple(tags), **merged)


def empty_ruleset() -> RuleSet:
    """No rules: what a worker uses before any rules were published."""
    return RuleSet("none", (), frozenset())


# ------------------------------------------------------------------------------- compiling


class _Actions:
    def __init__(self, network: Any, problems: list[Problem]) -> None:
        self.net = network
        self.problems = problems
        self.nodes = {n.id: i for i, n in enumerate(network.nodes)}
        self.levels = sorted({s.level for s in network.services})

    def fail(self, line: int, message: str) -> None:
        self.problems.append(Problem(line, message))

    def names(self, node: Node, what: str) -> list[str]:
        v = node.plain()
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
            self.fail(node.line, f"{what} takes a name or a list of names; got {v!r}")
            return []
        return v

    def targets(self, node: Node, what: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(node mask, service mask) for a `restrict:` or `prefer:` block."""
        if not isinstance(node.value, dict) or not node.value:
            self.fail(node.line, f"'{what}' takes a mapping with nodes, carriers and/or services")
            return None, None
        node_mask = svc_mask = None
        for key, value in node.value.items():
            if key not in _TARGET_KEYS:
                self.fail(value.line, f"'{what}' has no {key!r}; use nodes, carriers, services")
                continue
            wanted = self.names(value, f"{what}.{key}")
            if key == "nodes":
                unknown = [n for n in wanted if n not in self.nodes]
                if unknown:
                    self.fail(value.line, f"{what}.nodes: unknown node(s) {unknown}")
                mask = np.zeros(len(self.nodes), dtype=np.bool_)
                mask[[self.nodes[n] for n in wanted if n in self.nodes]] = True
                node_mask = mask
                continue
            attr = "carrier" if key == "carriers" else None
            mask = np.zeros(len(self.net.services), dtype=np.bool_)
            for name in wanted:
                hits = [i for i, s in enumerate(self.net.services)
                        if (getattr(s, attr) == name if attr else name in (s.id, s.service))]
                if not hits:
                    known = sorted({getattr(s, attr) if attr else s.id
                                    for s in self.net.services})
                    self.fail(value.line, f"{what}.{key}: unknown {name!r}; known: {known}")
                mask[hits] = True
            svc_mask = mask if svc_mask is None else svc_mask & mask
        return node_mask, svc_mask

    def build(self, node: Node, rule_id: str) -> Actions:
        if not isinstance(node.value, dict) or not node.value:
            self.fail(node.line, "'then' needs at least one action")
            return Actions()
        a: dict[str, Any] = {}
        for key, value in node.value.items():
            v = value.plain()
            if key not in _ACTION_KEYS:
                self.fail(value.line, f"unknown action {key!r}; actions are: "
                          f"{', '.join(sorted(_ACTION_KEYS))}")
            elif key == "hold":
                if not isinstance(v, dict) or not isinstance(v.get("group"), str) or not v["group"]:
                    self.fail(value.line, "hold needs {group: <approving group>, reason: ...}")
                    continue
                a["hold"] = Hold(v["group"], str(v.get("reason", rule_id)), rule_id)
            elif key == "priority":
                if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 9:
                    self.fail(value.line, f"priority must be an integer 0..9; got {v!r}")
                    continue
                a["priority"] = v
            elif key == "restrict":
                nodes, svcs = self.targets(value, key)
                a["node_ok"] = nodes
                if svcs is not None:
                    a["svc_ok"] = svcs if a.get("svc_ok") is None else a["svc_ok"] & svcs
            elif key == "prefer":
                a["node_pref"], a["svc_pref"] = self.targets(value, key)
            elif key == "max_splits":
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    self.fail(value.line, f"max_splits must be an integer >= 0; got {v!r}")
                    continue
                a["max_splits"] = min(v, a.get("max_splits", v))
            elif key == "forbid_splits":
                if v is not True:
                    self.fail(value.line, "forbid_splits takes true (or leave it out)")
                    continue
                a["max_splits"] = 0
            elif key == "service_level":
                if v not in self.levels:
                    self.fail(value.line, f"service_level must be one of {self.levels}; got {v!r}")
                    continue
                a["level"] = np.array([s.level == v for s in self.net.services], dtype=np.bool_)
            elif key == "tags":
                a["tags"] = tuple(self.names(value, "tags"))
        for name in ("node_ok", "svc_ok", "level", "node_pref", "svc_pref"):
            if a.get(name) is not None:
                a[name].flags.writeable = False
        return Actions(**a)


def _instant(value: Any, tz: ZoneInfo | None, end: bool) -> int | None:
    """A date or datetime from YAML as epoch ms (a bare date means its whole day)."""
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=tz or UTC)
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day, tzinfo=tz or UTC)
        if end:
            return int(dt.timestamp() * 1000) + 86_400_000 - 1
    else:
        return None
    return int(dt.timestamp() * 1000)


def compile_rules(text: str, network: Any, source: str = "<rules>") -> RuleSet:
    """Compile a rules file against `network`; raises FileError listing every problem."""
    root = load(text, source)
    problems: list[Problem] = []
    if not isinstance(root.value, dict):
        raise FileError(source, [Problem(root.line, "the file must be a mapping with 'rules:'")])
    doc = root.value
    for key, value in doc.items():
        if key not in ("version", "timezone", "rules"):
            problems.append(Problem(value.line, f"unknown top-level key {key!r}; "
                                    "expected version, timezone, rules"))
    tz = None
    if "timezone" in doc:
        try:
            tz = ZoneInfo(str(doc["timezone"].value))
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(Problem(doc["timezone"].line,
                                    f"unknown timezone {doc['timezone'].value!r}"))
    rules_node = doc.get("rules")
    if rules_node is None or not isinstance(rules_node.value, list):
        problems.append(Problem(root.line, "'rules' must be a list (it may be empty: rules: [])"))
        raise FileError(source, problems)
    actions = _Actions(network, problems)
    rules: list[Rule] = []
    used: set[str] = set()
    seen: dict[str, int] = {}
    for item in rules_node.value:
        rule = _rule(item, actions, tz, problems, used)
        if rule is None:
            continue
        if rule.id in seen:
            problems.append(Problem(item.line, f"rule id {rule.id!r} already used on line "
                                    f"{seen[rule.id]}"))
        seen[rule.id] = item.line
        rules.append(rule)
    if problems:
        raise FileError(source, sorted(problems, key=lambda p: p.line))
    rules.sort(key=lambda r: -r.precedence)  # stable: ties keep file order
    label = str(doc["version"].value) if "version" in doc else "rules"
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return RuleSet(f"{label}@{digest}", tuple(rules), frozenset(used), tz, text)


def _rule(item: Node, actions: _Actions, tz: ZoneInfo | None, problems: list[Problem],
          used: set[str]) -> Rule | None:
    if not isinstance(item.value, dict):
        problems.append(Problem(item.line, "each rule must be a mapping with id, when, then"))
        return None
    r = item.value
    for key, value in r.items():
        if key not in _RULE_KEYS:
            problems.append(Problem(value.line, f"unknown rule key {key!r}; expected one of "
                                    f"{', '.join(sorted(_RULE_KEYS))}"))
    rule_id = r["id"].value if "id" in r else None
    if not isinstance(rule_id, str) or not rule_id:
        problems.append(Problem(item.line, "a rule needs an 'id' (text)"))
        rule_id = f"line-{item.line}"
    for key in ("when", "then"):
        if key not in r:
            problems.append(Problem(item.line, f"rule {rule_id!r} has no '{key}'"))
    if "when" not in r or "then" not in r:
        return None
    when, fields_read, condition_problems = compile_condition(r["when"])
    problems.extend(condition_problems)
    used |= fields_read
    precedence = r["precedence"].value if "precedence" in r else 0
    if isinstance(precedence, bool) or not isinstance(precedence, int):
        problems.append(Problem(r["precedence"].line, f"precedence must be an integer; "
                                f"got {precedence!r}"))
        precedence = 0
    start = end = None
    if "effective" in r:
        eff = r["effective"].value
        if not isinstance(eff, dict) or not set(eff) <= {"from", "until"} or not eff:
            problems.append(Problem(r["effective"].line, "effective takes {from: ..., until: ...}"))
        else:
            start = _instant(eff["from"].value, tz, False) if "from" in eff else None
            end = _instant(eff["until"].value, tz, True) if "until" in eff else None
            for key, got in (("from", start), ("until", end)):
                if key in eff and got is None:
                    problems.append(Problem(eff[key].line, f"effective.{key} must be a date or "
                                            f"date-time (2026-11-01 or 2026-11-01T08:00:00Z)"))
            if start is not None and end is not None and start > end:
                problems.append(Problem(r["effective"].line, "effective.from is after until"))
    stop = r["stop"].value if "stop" in r else False
    if not isinstance(stop, bool):
        problems.append(Problem(r["stop"].line, "stop takes true or false"))
        stop = False
    return Rule(rule_id, precedence, start, end, when, actions.build(r["then"], rule_id),
                stop, item.line)
