"""A channel mapping: one YAML file in, a function `raw payload -> order.created event` out.

    >>> m = load_mapping("fulfil/data/channels/shopify.yaml")          # doctest: +SKIP
    >>> event = m.map_bytes(webhook_body)   # dict, valid against order_event  # doctest: +SKIP

Every failure is a `schemas.errors.ValidationError` (data, not a bug), ready for a dead letter:

- `decode`: the payload is not a JSON object;
- `schema`, raised while mapping: a rule could not convert the payload (an unparseable time, a
  status missing from a table, a required field absent); `field` is the *payload* field
  (`line_items[1].quantity`), `rule` the check (`time`, `unmapped`, `required`, ...);
- `schema`, raised by the order_event contract on the mapped order: `field` is again the payload
  field the offending output came from when it was read from one (else the output field), `rule`
  the JSON Schema keyword.

Either way the message names the mapping rule and its line, so a dead letter tells an operator
whether to fix the channel's data or the mapping file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from operators.channels.compiler import Compiled, compile_fields
from operators.channels.decode import decode_payload
from operators.channels.model import MapFailure, Rule, Scope
from operators.channels.values import Mismatch, text_key
from operators.channels.yamltree import MappingFileError, Node, Problem, load_tree
from schemas.errors import ValidationError
from schemas.topics import CHANNEL_NAME
from schemas.validation import validate

LANGUAGE_VERSION = 1
EMITS = ("order.created",)
TOP_KEYS = ("fulfil_mapping", "channel", "emits", "description", "tables", "fields")
#: The mappings shipped with fulfil (package data).
BUILTIN_DIR = Path(__file__).resolve().parents[2] / "fulfil" / "data" / "channels"
_INDEX = re.compile(r"\[(\d+)\]")


@dataclass(frozen=True)
class ChannelMapping:
    """A compiled mapping file. Thread-safe: applying it only reads the compiled closures."""

    channel: str
    emits: str
    source: str
    description: str
    compiled: Compiled = field(repr=False)

    def map_bytes(self, raw: bytes | bytearray | memoryview | str | None) -> dict[str, Any]:
        """Decode (integers exact) and map one raw payload; raises ValidationError."""
        return self.apply(decode_payload(raw))

    def apply(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Map a decoded payload to a contract-valid event; raises ValidationError."""
        scope = Scope(payload, payload, 0, {"type": self.emits, "channel": self.channel}, "", {})
        try:
            event = self.compiled.build(scope)
        except MapFailure as exc:
            raise self._failure(exc) from None
        except (Mismatch, ArithmeticError) as exc:  # defensive: every rule wraps its own
            check = exc.check if isinstance(exc, Mismatch) else "number"
            raise ValidationError("schema", "", check, f"{exc} [{Path(self.source).name}]") \
                from None
        try:
            event = validate("order_event", event)
        except ValidationError as exc:
            raise self._explain(exc, scope) from None
        wide = _wide_int(event)
        if wide is not None:  # kept verbatim (an extra field): fulfil's topics carry int64 only
            raise ValidationError("schema", wide, "int64",
                                  f"{wide} is an integer beyond 64 bits; map it to text "
                                  f"[{Path(self.source).name}]")
        return event

    def _where(self, rule: Rule) -> str:
        return f"mapping rule {rule.name} ({Path(self.source).name}:{rule.line})"

    def _failure(self, exc: MapFailure) -> ValidationError:
        what = f"{exc.source}: " if exc.source and not exc.message.startswith(exc.source) else ""
        message = f"{what}{exc.message} [{self._where(exc.rule)}]"
        return ValidationError("schema", exc.source or exc.rule.name, exc.check, message)

    def _explain(self, exc: ValidationError, scope: Scope) -> ValidationError:
        """Name the rule that produced the offending output field, and the payload field."""
        out = exc.field
        normal = _INDEX.sub("[]", out)
        rule = None
        probe = normal
        while probe:
            rule = self.compiled.rules.get(probe)
            if rule is not None:
                break
            probe = re.sub(r"(\[\]|\.[^.\[]*|^[^.\[]*)$", "", probe)
        if rule is None:
            return ValidationError(exc.code, exc.field, exc.rule,
                                   f"{exc.message} [the mapped order; no rule of "
                                   f"{Path(self.source).name} produces {out or 'it'}]")
        payload_field = _payload_field(rule, probe, out, scope)
        origin = f", from {payload_field}" if payload_field else ""
        message = f"{exc.message} [{self._where(rule)}{origin}]"
        return ValidationError(exc.code, payload_field or exc.field, exc.rule, message)


def _payload_field(rule: Rule, probe: str, out: str, scope: Scope) -> str:
    """`line_items[3].sku` for output `lines[1].sku` (elements 0 and 2 skipped by `where`)."""
    if not rule.path or rule.path == "@index":
        return ""
    if rule.path.startswith("$."):
        return rule.path[2:]
    if not rule.each:
        return rule.path
    indices = [int(i) for i in _INDEX.findall(out)]
    lists = probe.split("[]")[:-1]  # output paths of the enclosing lists: "lines", ...
    template = f"{rule.each}[].{rule.path}"
    for level, idx in enumerate(indices[: template.count("[]")]):
        list_path = "[]".join(lists[: level + 1])
        kept = scope.kept.get(list_path)
        src = kept[idx] if kept is not None and idx < len(kept) else idx
        template = template.replace("[]", f"[{src}]", 1)
    return template


def _top(root: Node, problems: list[Problem]) -> tuple[str, str, str, dict[str, Any]]:
    """Check the file's top level; returns (channel, emits, description, tables)."""
    for key, line in root.key_lines.items():
        if key not in TOP_KEYS:
            problems.append(Problem(line, key, f"unknown top-level key; expected "
                                    f"{', '.join(TOP_KEYS)}"))
    top = root.value
    version = top.get("fulfil_mapping")
    if version is None or version.value != LANGUAGE_VERSION:
        problems.append(Problem(version.line if version else 1, "fulfil_mapping",
                                f"the file must start with fulfil_mapping: {LANGUAGE_VERSION} "
                                "(the mapping language version)"))
    channel_node = top.get("channel")
    channel = channel_node.value if channel_node else ""
    if not isinstance(channel, str) or not CHANNEL_NAME.fullmatch(channel):
        problems.append(Problem(channel_node.line if channel_node else 1, "channel",
                                "channel: a lower-case name (a-z, 0-9, - and _), e.g. shopify"))
        channel = "invalid"
    emits_node = top.get("emits")
    emits = emits_node.value if emits_node else "order.created"
    if emits not in EMITS:
        problems.append(Problem(emits_node.line if emits_node else 1, "emits",
                                f"emits must be one of {', '.join(EMITS)}"))
    desc = top["description"].value if "description" in top else ""
    tables: dict[str, Any] = {}
    tables_node = top.get("tables")
    if tables_node is not None:
        if tables_node.kind != "map":
            problems.append(Problem(tables_node.line, "tables", "tables is a mapping of names "
                                    "to tables"))
        else:
            for name, t in tables_node.value.items():
                if t.kind != "map" or not t.value:
                    problems.append(Problem(t.line, f"tables.{name}", "a table is a non-empty "
                                            "mapping of channel values to canonical values"))
                    continue
                tables[name] = {text_key(k) if not isinstance(k, str) else k: v.plain()
                                for k, v in t.value.items()}
    if "fields" not in top:
        problems.append(Problem(1, "fields", "the file needs fields: (the order to build)"))
    return channel, emits, str(desc or ""), tables


def compile_mapping(text: str, source: str = "<mapping>") -> ChannelMapping:
    """Compile mapping-file text; raises MappingFileError listing every problem with its line."""
    problems: list[Problem] = []
    root = load_tree(text, source, problems)
    if root.kind != "map":
        raise MappingFileError(source, [Problem(root.line, "", "a mapping file is a YAML "
                                                "mapping (fulfil_mapping:, channel:, fields:)")])
    channel, emits, desc, tables = _top(root, problems)
    fields = root.value.get("fields")
    compiled = None
    if fields is not None:
        if fields.kind == "map" and "type" in fields.value:
            problems.append(Problem(fields.key_lines["type"], "type",
                                    "type is set by emits:, not mapped"))
        compiled, more = compile_fields(fields, tables, preset=("type", "channel"))
        problems.extend(more)
    if problems or compiled is None:
        raise MappingFileError(source, problems)
    return ChannelMapping(channel, emits, source, desc, compiled)


def load_mapping(path: str | Path) -> ChannelMapping:
    """Compile a mapping file; `builtin:shopify` names one shipped with fulfil."""
    text_path = str(path)
    if text_path.startswith("builtin:"):
        path = BUILTIN_DIR / f"{text_path.removeprefix('builtin:')}.yaml"
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingFileError(str(p), [Problem(1, "", f"cannot read the file: {exc}")]) \
            from None
    return compile_mapping(text, str(p))


_INT64 = (-(2**63), 2**64 - 1)  # what orjson (and so every fulfil topic) can carry


def _wide_int(value: Any, path: str = "") -> str | None:
    """The path of the first integer outside 64 bits in a mapped event, or None. The exact
    decoder keeps a channel's long ids; a rule passing one through verbatim (an extra field,
    `unmapped: keep`) would otherwise make an event no producer can serialise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return path or "payload" if not _INT64[0] <= value <= _INT64[1] else None
    if isinstance(value, dict):
        for k, v in value.items():
            if (found := _wide_int(v, f"{path}.{k}" if path else str(k))) is not None:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if (found := _wide_int(v, f"{path}[{i}]")) is not None:
                return found
    return None
