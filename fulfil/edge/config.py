"""One edge site's settings: who it is, its own broker and Redis, and how it reaches the centre.

A site file (JSON) holds both sides' connection settings as `fulfil.config.Config` fields, so
the edge engine is exactly `fulfil run` against the edge's own infrastructure:

```json
{"site": "sul", "nodes": ["N20", "N23"],
 "edge":   {"kafka_bootstrap": "127.0.0.1:9092", "redis_url": "redis://127.0.0.1:6379/0"},
 "centre": {"kafka_bootstrap": "central.example:9092", "redis_url": "rediss://...",
            "kafka": {"security.protocol": "SASL_SSL"}},
 "network": "fulfil/data/network-olist-br.json", "state_dir": "/var/lib/fulfil-edge",
 "link": {"batch_size": 500, "link_timeout_s": 2.0}}
```

`edge.network_path` is derived (the site network, written under `state_dir`) unless given.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import orjson

from fulfil.config import Config, ConfigError, load_config
from operators.edge.routes import Site
from operators.edge.site import check_site_id, site_network
from operators.network import Network, NetworkError, load_default


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """How the links behave (defaults suit a WAN of a few hundred ms)."""

    #: Prefix of the `client.id` of every Kafka client that crosses the WAN (the test relay cuts
    #: exactly those; production networks may use it in broker quotas and logs).
    wan_client_id: str = "fulfil-edge-link"
    batch_size: int = 500
    #: A round trip to the other side slower than this marks the link down (status, metrics).
    link_timeout_s: float = 2.0
    #: Pause between attempts while the other side cannot be reached.
    retry_s: float = 0.25
    #: Where the downlink starts in central topics it has no progress for (a new site).
    downlink_start: str = "earliest"
    #: The downlink applies the centre's claims only once the uplink has sent everything the
    #: edge did meanwhile (docs/edge.md#conflicts); off only for tests of the gate itself.
    gate_claims: bool = True
    #: How long the link state of an order that holds nothing at a site node any more is kept
    #: (docs/edge.md#bounded-link-state). Must exceed the retention of the topics the links
    #: read (a link can re-send only what they still hold); 7 days by default.
    state_retention_s: float = 7 * 86_400.0
    #: How often each link prunes the link state of the side it applies effects on.
    prune_every_s: float = 60.0


@dataclass(frozen=True, slots=True)
class EdgeSettings:
    """Everything `fulfil edge run|link|status` needs; built by `load_site`."""

    site: str
    nodes: tuple[str, ...]
    edge: Config
    centre: Config
    network: str | None = None  # the central network file (default: the shipped one)
    state_dir: str = "."
    link: LinkSettings = LinkSettings()

    def view(self) -> Site:
        """The site as the pure link logic sees it."""
        return Site(self.site, frozenset(self.nodes), self.edge.topic_prefix,
                    self.centre.topic_prefix)

    def central_network(self) -> Network:
        return Network.load(self.network) if self.network else load_default()

    def site_network_path(self) -> Path:
        return Path(self.state_dir) / f"network-{self.site}.json"

    def write_site_network(self) -> Path:
        """Derive the site network from the central one and write it (atomically)."""
        net = site_network(self.central_network(), self.nodes, self.site)
        path = self.site_network_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(net.to_dict()))
        tmp.replace(path)
        return path

    def edge_engine_config(self) -> Config:
        """The edge's own Config, pointing at the site network, derived afresh from the central
        one (so a new central network reaches the site at the engine's next start) unless the
        site file names a network of its own."""
        if self.edge.network_path:
            return self.edge
        return replace(self.edge, network_path=str(self.write_site_network()))


def _config(data: Any, where: str) -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be an object of fulfil settings")
    return load_config(env={}, **data)


def settings_from_dict(data: dict[str, Any], where: str = "site file") -> EdgeSettings:
    """Validate a site description (see the module docstring); errors name the field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: top level must be an object")
    known = {f.name for f in fields(EdgeSettings)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {unknown}")
    try:
        site = check_site_id(data.get("site"))  # type: ignore[arg-type]
    except NetworkError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    nodes = data.get("nodes")
    if not isinstance(nodes, list) or not nodes or not all(isinstance(n, str) for n in nodes):
        raise ConfigError(f"{where}: nodes must be a non-empty list of node ids")
    link_data = data.get("link") or {}
    link_names = {f.name for f in fields(LinkSettings)}
    if not isinstance(link_data, dict) or set(link_data) - link_names:
        raise ConfigError(f"{where}: link takes only {sorted(link_names)}")
    link = LinkSettings(**link_data)
    if link.downlink_start not in ("earliest", "latest"):
        raise ConfigError(f"{where}: link.downlink_start must be earliest|latest")
    settings = EdgeSettings(
        site=site, nodes=tuple(dict.fromkeys(nodes)),
        edge=_config(data.get("edge", {}), f"{where}: edge"),
        centre=_config(data.get("centre", {}), f"{where}: centre"),
        network=data.get("network"), state_dir=str(data.get("state_dir", ".")), link=link,
    )
    try:
        site_network(settings.central_network(), settings.nodes, site)  # nodes must exist
    except NetworkError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return settings


def load_site(path: str | Path) -> EdgeSettings:
    """Read and validate a site file."""
    try:
        data = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigError(f"site file {path}: {exc}") from None
    return settings_from_dict(data, f"site file {path}")
