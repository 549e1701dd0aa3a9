"""`channels.yaml`: which sales channels exist, how each signs, and where its mapping lives.

One file configures both the webhook gateway (endpoints, signatures, secrets, replay window)
and the channels flow (one raw topic and one mapping per channel); docs/channels.md describes
every key. Loaded with line numbers, like mapping files, so a mistake is reported as
`channels.yaml:12: channels.shopify: ...`.

Secrets are named, not written: `secret_env: FULFIL_SHOPIFY_SECRET` (or `secret_file:`); a
literal `secret:` is accepted for tests. They are resolved only by the gateway, at start-up,
held in `Secret` objects whose repr is `Secret(***)`, and never logged or printed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from operators.channels.mapper import BUILTIN_DIR, ChannelMapping, load_mapping
from operators.channels.paths import PathError, compile_path
from operators.channels.signatures import PRESETS, SignatureScheme
from operators.channels.yamltree import MappingFileError, Node, Problem, load_tree
from schemas.topics import CHANNEL_NAME, channel_topic

DEFAULT_FILE = BUILTIN_DIR / "channels.yaml"
DURABILITY = ("acked", "enqueued")
_CHANNEL_KEYS = ("mapping", "signature", "signature_header", "signature_digest",
                 "signature_encoding", "signature_prefix", "webhook_id_header", "topic_header",
                 "accept_topics", "secret_env", "secret_file", "secret", "key_path", "partitions")
_GATEWAY_KEYS = ("listen", "port", "max_body_bytes", "replay_ttl_s", "durability",
                 "ack_timeout_ms", "linger_ms")


class ChannelsConfigError(ValueError):
    """A secret that cannot be resolved (the message names its source, never its value)."""


class Secret:
    """A secret's bytes that never show themselves (repr, str, logs, tracebacks)."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def reveal(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__


@dataclass(frozen=True)
class GatewaySettings:
    """The HTTP side: loopback by default; `acked` = answer once the broker has the payload."""

    listen: str = "127.0.0.1"
    port: int = 9470
    max_body_bytes: int = 5 * 1024 * 1024
    replay_ttl_s: int = 3 * 86_400  # Shopify retries for up to 48 h; a day's margin
    durability: str = "acked"
    ack_timeout_ms: int = 3000  # under Shopify's 5 s timeout: a slow broker gets a 503, a retry
    linger_ms: int = 1


@dataclass(frozen=True)
class ChannelSpec:
    """One configured channel (an endpoint, a raw topic and a mapping)."""

    name: str
    mapping_path: str
    scheme: SignatureScheme
    #: ("env", NAME) | ("file", PATH) | ("value", Secret): a literal is wrapped at once, so
    #: not even this object's repr can show it
    secret_sources: tuple[tuple[str, str | Secret], ...] = ()
    accept_topics: tuple[str, ...] = ()
    key_path: str = ""
    partitions: int = 4

    def topic_name(self) -> str:
        """Short topic name for `Config.topic()`: 'channel.<name>'."""
        return channel_topic(self.name, self.partitions).name

    def load_mapping(self) -> ChannelMapping:
        return load_mapping(self.mapping_path)

    def secrets(self, env: Mapping[str, str] | None = None) -> tuple[Secret, ...]:
        """Resolve the secrets now; raises ChannelsConfigError naming what is missing."""
        env = os.environ if env is None else env
        found: list[Secret] = []
        for kind, ref in self.secret_sources:
            if kind == "env" and isinstance(ref, str):
                value = env.get(ref, "")
                if not value:
                    raise ChannelsConfigError(f"channel {self.name}: environment variable {ref} "
                                              "(its webhook secret) is not set")
                found.append(Secret(value.encode()))
            elif kind == "file" and isinstance(ref, str):
                try:
                    data = Path(ref).read_bytes().strip()
                except OSError as exc:
                    raise ChannelsConfigError(f"channel {self.name}: cannot read secret_file "
                                              f"{ref}: {exc.strerror}") from None
                if not data:
                    raise ChannelsConfigError(f"channel {self.name}: secret_file {ref} is empty")
                found.append(Secret(data))
            elif isinstance(ref, Secret):
                found.append(ref)
        if not found:
            raise ChannelsConfigError(f"channel {self.name}: no secret configured (secret_env, "
                                      "secret_file or secret)")
        return tuple(found)


@dataclass(frozen=True)
class ChannelsConfig:
    source: str
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    channels: dict[str, ChannelSpec] = field(default_factory=dict)


def _names(node: Node) -> list[str]:
    if node.kind == "seq":
        return [str(n.value) for n in node.value]
    return [str(node.value)]


def _channel(name: str, node: Node, base: Path, problems: list[Problem]) -> ChannelSpec | None:
    where = f"channels.{name}"
    if not CHANNEL_NAME.fullmatch(name):
        problems.append(Problem(node.line, where, "a channel name is lower-case letters, "
                                "digits, '-' and '_'"))
        return None
    if node.kind != "map":
        problems.append(Problem(node.line, where, "a channel is a mapping (mapping:, "
                                "signature:, secret_env: ...)"))
        return None
    opts = node.value
    for key, line in node.key_lines.items():
        if key not in _CHANNEL_KEYS:
            problems.append(Problem(line, where, f"unknown key {key!r}; expected "
                                    f"{', '.join(_CHANNEL_KEYS)}"))
    if "mapping" not in opts:
        problems.append(Problem(node.line, where, "mapping: (the mapping file) is required"))
        return None
    mapping = str(opts["mapping"].value)
    if not mapping.startswith("builtin:"):
        mapping = str((base / mapping).resolve())
    preset_name = str(opts["signature"].value) if "signature" in opts else "hmac"
    if preset_name not in PRESETS:
        problems.append(Problem(opts["signature"].line, where, f"signature must be one of "
                                f"{', '.join(PRESETS)}"))
        return None
    overrides = {attr: str(opts[key].value) for key, attr in (
        ("signature_header", "header"), ("signature_digest", "digest"),
        ("signature_encoding", "encoding"), ("signature_prefix", "prefix"),
        ("webhook_id_header", "webhook_id_header"), ("topic_header", "topic_header"))
        if key in opts}
    try:
        scheme = replace(PRESETS[preset_name], **overrides)
    except ValueError as exc:
        problems.append(Problem(node.line, where, str(exc)))
        return None
    sources: list[tuple[str, str | Secret]] = []
    for key, kind in (("secret_env", "env"), ("secret_file", "file"), ("secret", "value")):
        for ref in _names(opts[key]) if key in opts else ():
            if kind == "file":
                sources.append((kind, str((base / ref).resolve())))
            else:
                sources.append((kind, Secret(ref.encode()) if kind == "value" else ref))
    if not sources:
        problems.append(Problem(node.line, where, "a channel needs secret_env: (or "
                                "secret_file:) to verify signatures"))
    key_path = str(opts["key_path"].value) if "key_path" in opts else ""
    if key_path:
        try:
            compile_path(key_path)
        except PathError as exc:
            problems.append(Problem(opts["key_path"].line, where, str(exc)))
    partitions = opts["partitions"].value if "partitions" in opts else 4
    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
        problems.append(Problem(opts["partitions"].line, where, "partitions: a number >= 1"))
        partitions = 4
    topics = tuple(_names(opts["accept_topics"])) if "accept_topics" in opts else ()
    return ChannelSpec(name, mapping, scheme, tuple(sources), topics, key_path, partitions)


def _gateway(node: Node | None, problems: list[Problem]) -> GatewaySettings:
    if node is None:
        return GatewaySettings()
    if node.kind != "map":
        problems.append(Problem(node.line, "gateway", "gateway is a mapping (listen:, port:...)"))
        return GatewaySettings()
    values: dict[str, Any] = {}
    for key, child in node.value.items():
        if key not in _GATEWAY_KEYS:
            problems.append(Problem(child.line, "gateway", f"unknown key {key!r}; expected "
                                    f"{', '.join(_GATEWAY_KEYS)}"))
            continue
        want = str if key in ("listen", "durability") else int
        if not isinstance(child.value, want) or isinstance(child.value, bool):
            problems.append(Problem(child.line, f"gateway.{key}", f"must be {want.__name__}"))
            continue
        values[key] = child.value
    if values.get("durability", "acked") not in DURABILITY:
        problems.append(Problem(node.value["durability"].line, "gateway.durability",
                                f"must be one of {', '.join(DURABILITY)}"))
        values.pop("durability")
    return GatewaySettings(**values)


def load_channels(path: str | os.PathLike[str] | None = None) -> ChannelsConfig:
    """Read channels.yaml (the shipped example when `path` is None); raises MappingFileError
    listing every problem with its line."""
    p = Path(path) if path else DEFAULT_FILE
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingFileError(str(p), [Problem(1, "", f"cannot read the file: {exc}")]) \
            from None
    problems: list[Problem] = []
    root = load_tree(text, str(p), problems)
    if root.kind != "map" or "channels" not in root.value:
        raise MappingFileError(str(p), [Problem(root.line, "", "expected channels: (one entry "
                                                "per channel) and optionally gateway:")])
    for key, line in root.key_lines.items():
        if key not in ("fulfil_channels", "gateway", "channels"):
            problems.append(Problem(line, key, "unknown top-level key; expected fulfil_channels, "
                                    "gateway, channels"))
    gateway = _gateway(root.value.get("gateway"), problems)
    channels_node = root.value["channels"]
    channels: dict[str, ChannelSpec] = {}
    if channels_node.kind != "map" or not channels_node.value:
        problems.append(Problem(channels_node.line, "channels", "channels: needs at least one "
                                "channel"))
    else:
        for name, node in channels_node.value.items():
            spec = _channel(name, node, p.resolve().parent, problems)
            if spec is not None:
                channels[name] = spec
    if problems:
        raise MappingFileError(str(p), problems)
    return ChannelsConfig(str(p), gateway, channels)
