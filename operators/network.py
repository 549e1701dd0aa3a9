"""The fulfilment network: nodes, carrier services, regional lanes and a postal-code locator.

The network is data, not code: it is loaded from a versioned JSON file (by default
``fulfil/data/network-olist-br.json``, built by :mod:`fulfil.netbuild`) so that a decision can
name the exact network it was made against (``network_version``) and a replay reproduces it.

Everything the router reads per candidate is laid out as contiguous numpy arrays indexed by
``node_index`` / ``region_index`` / ``service_index``, so numba kernels can take them directly.
``locate`` runs once per order on the hot path, so it only does dict lookups on plain tuples.

This module is pure (numpy, orjson, stdlib): no Kafka, no Redis.

Errors form one small tree::

    ValueError
     └── NetworkError      a network file or dict is malformed; the message names the field
"""

from __future__ import annotations

import functools
import math
import pathlib
from collections import Counter
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import orjson

__all__ = ["Network", "NetworkError", "Node", "Service", "default_network_path", "haversine_km",
           "load_default"]  # fmt: skip

EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius
NODE_KINDS = ("warehouse", "store")
SERVICE_LEVELS = ("standard", "express")
_REAL = (int, float)  # exact types accepted as coordinates by locate() (bool is excluded)


class NetworkError(ValueError):
    """A network file or dict is malformed; the message names the offending field."""


@dataclass(frozen=True, slots=True)
class Node:
    """A place that holds stock and ships parcels (a warehouse/DC or a ship-from-store)."""

    id: str
    name: str
    kind: str  # "warehouse" | "store"
    lat: float
    lng: float
    region: str
    capacity_per_day: int
    handling_cost: float
    handling_hours: float
    cutoff_hour: int  # local hour after which an order ships the next day
    utc_offset_hours: float


@dataclass(frozen=True, slots=True)
class Service:
    """One carrier product; its price is ``base_cost + per_kg*kg + per_100km*km/100``."""

    id: str  # "correios/pac"
    carrier: str
    service: str
    level: str  # "standard" | "express"
    base_cost: float
    per_kg: float
    per_100km: float
    co2e_g_per_tkm: float


def haversine_km(lat1: Any, lng1: Any, lat2: Any, lng2: Any) -> Any:
    """Great-circle distance in km; floats give a float, arrays broadcast (vectorized).

    The scalar path avoids numpy because per-order callers pay ~1 µs per numpy call.
    """
    if all(isinstance(v, (int, float)) for v in (lat1, lng1, lat2, lng2)):
        p1, p2 = math.radians(lat1), math.radians(lat2)
        dp, dl = p2 - p1, math.radians(lng2 - lng1)
        a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
        return 2.0 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.subtract(lng2, lng1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.minimum(1.0, np.sqrt(a)))


# ---------------------------------------------------------------- field validation helpers
# Messages name the field as a path ("nodes[3].lat: missing") so a bad file is fixed in one go.

_BOUNDS: dict[str, tuple[float, float]] = {
    "lat": (-90, 90),
    "lng": (-180, 180),
    "demand": (0, 1),
    "cutoff_hour": (0, 24),
    "handling_hours": (0, 24 * 14),
    "utc_offset_hours": (-12, 14),
    "transit_mean": (0, 365),
}
_CHOICES: dict[str, tuple[str, ...]] = {"kind": NODE_KINDS, "level": SERVICE_LEVELS}


def _get(d: Any, key: str, where: str) -> Any:
    if not isinstance(d, dict):
        raise NetworkError(f"{where}: must be an object; got {type(d).__name__}")
    if key not in d:
        raise NetworkError(f"{where}.{key}: missing")
    return d[key]


def _str(d: Any, key: str, where: str, choices: tuple[str, ...] | None = None) -> str:
    v = _get(d, key, where)
    if not isinstance(v, str) or not v:
        raise NetworkError(f"{where}.{key}: must be a non-empty string; got {v!r}")
    if choices is not None and v not in choices:
        shown = ", ".join(choices[:8]) + (", ..." if len(choices) > 8 else "")
        raise NetworkError(f"{where}.{key}: unknown value {v!r} (expected one of {shown})")
    return v


def _num(d: Any, key: str, where: str, lo: float | None = None, hi: float = math.inf) -> float:
    """A finite number within bounds (default: ``_BOUNDS[key]`` or non-negative)."""
    v = _get(d, key, where)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise NetworkError(f"{where}.{key}: must be a finite number; got {v!r}")
    if lo is None:
        lo, hi = _BOUNDS.get(key, (0, math.inf))
    if not lo <= v <= hi:
        raise NetworkError(f"{where}.{key}: must be within {lo}..{hi}; got {v!r}")
    return float(v)


def _int(d: Any, key: str, where: str) -> int:
    v = _get(d, key, where)
    lo, hi = _BOUNDS.get(key, (0, 10**9))
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise NetworkError(f"{where}.{key}: must be an integer within {lo}..{hi}; got {v!r}")
    return v


def _record(cls: Any, d: Any, where: str, **choices: tuple[str, ...]) -> Any:
    """Build dataclass ``cls`` from ``d``, checking every field by its declared type."""
    values: dict[str, Any] = {}
    for f in fields(cls):  # f.type is the annotation's text ("str"): annotations are postponed
        if f.type == "str":
            values[f.name] = _str(d, f.name, where, choices.get(f.name, _CHOICES.get(f.name)))
        else:
            values[f.name] = _int(d, f.name, where) if f.type == "int" else _num(d, f.name, where)
    return cls(**values)


def _list(d: Any, key: str, where: str) -> list:
    if not isinstance(v := _get(d, key, where), list) or not v:
        raise NetworkError(f"{where}.{key}: must be a non-empty list")
    return v


def _frozen(a: Any, dtype: Any = np.float64) -> np.ndarray:
    """A contiguous read-only array: the network is shared (cached) and must not drift."""
    arr = np.ascontiguousarray(a, dtype=dtype)
    arr.setflags(write=False)
    return arr


# ---------------------------------------------------------------- the model


class Network:
    """An immutable fulfilment network with array views for vectorized scoring.

    Build one with :meth:`from_dict` or :meth:`load` (both validate); the constructor trusts
    its arguments and only derives indexes, arrays and the postal fallback tables.
    """

    def __init__(
        self,
        *,
        version: str,
        nodes: tuple[Node, ...],
        services: tuple[Service, ...],
        regions: tuple[str, ...],
        region_lat: np.ndarray,
        region_lng: np.ndarray,
        region_demand: np.ndarray,
        lane_transit_mean: np.ndarray,
        lane_transit_p90: np.ndarray,
        postal_prefixes: dict[str, tuple[float, float, int]],
        attribution: str = "",
        built_from: dict | None = None,
    ) -> None:
        self.version = version
        self.attribution = attribution
        self.built_from = dict(built_from or {})
        self.nodes = tuple(nodes)
        self.services = tuple(services)
        self.regions = tuple(regions)
        self.node_index = {n.id: i for i, n in enumerate(self.nodes)}
        self.service_index = {s.id: i for i, s in enumerate(self.services)}
        self.region_index = {r: i for i, r in enumerate(self.regions)}

        ns = self.nodes
        self.node_lat = _frozen([n.lat for n in ns])
        self.node_lng = _frozen([n.lng for n in ns])
        self.node_capacity = _frozen([n.capacity_per_day for n in ns])
        self.node_handling_cost = _frozen([n.handling_cost for n in ns])
        self.node_handling_hours = _frozen([n.handling_hours for n in ns])
        self.node_cutoff_hour = _frozen([n.cutoff_hour for n in ns])
        self.node_utc_offset = _frozen([n.utc_offset_hours for n in ns])
        self.node_region = _frozen([self.region_index[n.region] for n in ns], np.int64)

        sv = self.services
        self.service_base_cost = _frozen([s.base_cost for s in sv])
        self.service_per_kg = _frozen([s.per_kg for s in sv])
        self.service_per_100km = _frozen([s.per_100km for s in sv])
        self.service_co2e = _frozen([s.co2e_g_per_tkm for s in sv])

        self.region_lat = _frozen(region_lat)
        self.region_lng = _frozen(region_lng)
        self.region_demand = _frozen(region_demand)
        self.lane_transit_mean = _frozen(lane_transit_mean)
        self.lane_transit_p90 = _frozen(lane_transit_p90)

        self.postal_prefixes = dict(postal_prefixes)
        # Plain-Python copies for locate(): indexing numpy per order costs more than the lookup.
        self._centroids = [
            (float(la), float(lo), i)
            for i, (la, lo) in enumerate(zip(region_lat, region_lng, strict=True))
        ]
        self._postal = self._postal_fallbacks(self.postal_prefixes)

    @staticmethod
    def _postal_fallbacks(
        table: dict[str, tuple[float, float, int]],
    ) -> dict[str, tuple[float, float, int]]:
        """3-digit entries plus 2- and 1-digit centroids (mean of entries, majority region).

        Keys of different lengths cannot collide, so one dict serves all three levels.
        """
        groups: dict[str, list[tuple[float, float, int]]] = {}
        for key, entry in table.items():
            for width in range(1, min(len(key), 3)):
                groups.setdefault(key[:width], []).append(entry)
        out = {}
        for short, entries in groups.items():
            votes = Counter(e[2] for e in entries)
            n = len(entries)
            region = min(votes, key=lambda r: (-votes[r], r))  # ties: the lower index
            out[short] = (sum(e[0] for e in entries) / n, sum(e[1] for e in entries) / n, region)
        return out | table

    def __repr__(self) -> str:
        return f"Network({self.version!r}, nodes={len(self.nodes)}, regions={len(self.regions)})"

    # ------------------------------------------------------------ locate (hot path)

    def _lookup_postal(self, code: Any) -> tuple[float, float, int] | None:
        """Longest-prefix match on a CEP (3, then 2, then 1 digit).

        Olist stores zip prefixes as integers, so leading zeros are lost ("1310" is "01310"):
        codes shorter than the 5-digit prefix are left-padded to 5; 6-7 digit codes are full
        8-digit CEPs that lost leading zeros the same way, so they are padded to 8.
        """
        if not isinstance(code, str):
            return None
        if not code.isdigit():  # tolerate "01310-100"
            code = "".join(c for c in code if c.isdigit())
            if not code:
                return None
        n = len(code)
        if n < 5:
            code = code.zfill(5)
        elif 5 < n < 8:
            code = code.zfill(8)
        table = self._postal
        return table.get(code[:3]) or table.get(code[:2]) or table.get(code[:1])

    def _nearest_region(self, lat: float, lng: float) -> int:
        """Nearest region centroid by an equirectangular distance (27 regions: a plain loop)."""
        k = math.cos(math.radians(lat))
        best, best_d = 0, math.inf
        for rlat, rlng, i in self._centroids:
            dx, dy = (lng - rlng) * k, lat - rlat
            d = dx * dx + dy * dy
            if d < best_d:
                best, best_d = i, d
        return best

    def locate(self, destination: dict) -> tuple[float, float, int] | None:
        """Resolve an order destination to ``(lat, lng, region_idx)``, or None.

        Coordinates win for position, an explicit known ``region`` wins for region; the postal
        table fills whatever is missing, then the nearest region centroid. A destination with
        only a known region resolves to that region's centroid.
        """
        region = destination.get("region")
        region_idx = self.region_index.get(region.upper()) if isinstance(region, str) else None
        lat, lng = destination.get("lat"), destination.get("lng")
        postal = destination.get("postal_code")
        hit = None
        if type(lat) in _REAL and type(lng) in _REAL:  # schema-validated upstream; not bool
            if region_idx is None:
                hit = self._lookup_postal(postal) if postal is not None else None
                region_idx = hit[2] if hit is not None else self._nearest_region(lat, lng)
            return float(lat), float(lng), region_idx
        if postal is not None:
            hit = self._lookup_postal(postal)
        if hit is not None:
            return hit if region_idx is None else (hit[0], hit[1], region_idx)
        if region_idx is not None:
            c = self._centroids[region_idx]
            return c[0], c[1], region_idx
        return None

    # ------------------------------------------------------------ (de)serialisation

    @classmethod
    def from_dict(cls, d: dict) -> Network:
        """Validate a network dict (the JSON layout) and build the model.

        Lanes absent from ``lanes`` (or with null transit) are uncovered: NaN in the arrays.
        """
        version = _str(d, "version", "network")
        attribution, built_from = d.get("attribution", ""), d.get("built_from", {})
        if not (isinstance(attribution, str) and isinstance(built_from, dict)):
            raise NetworkError("network.attribution/built_from: must be a string / an object")

        reg_rows: dict[str, tuple[float, float, float]] = {}
        for i, r in enumerate(_list(d, "regions", "network")):
            w = f"regions[{i}]"
            code = _str(r, "code", w)
            if code in reg_rows:
                raise NetworkError(f"{w}.code: duplicate region {code!r}")
            reg_rows[code] = (_num(r, "lat", w), _num(r, "lng", w), _num(r, "demand", w))
        regions = tuple(sorted(reg_rows))
        r_idx = {c: i for i, c in enumerate(regions)}
        demand = np.array([reg_rows[c][2] for c in regions])
        if abs(demand.sum() - 1.0) > 1e-6:
            raise NetworkError(f"regions[*].demand: must sum to 1; got {demand.sum():.9f}")

        nodes = [
            _record(Node, n, f"nodes[{i}]", region=regions)
            for i, n in enumerate(_list(d, "nodes", "network"))
        ]
        services = [
            _record(Service, s, f"services[{i}]")
            for i, s in enumerate(_list(d, "services", "network"))
        ]
        for kind, items in (("nodes", nodes), ("services", services)):
            ids = [x.id for x in items]
            for i, x in enumerate(items):
                if ids.index(x.id) != i:
                    raise NetworkError(f"{kind}[{i}].id: duplicate id {x.id!r}")
                if kind == "services" and x.id != f"{x.carrier}/{x.service}":
                    raise NetworkError(f"services[{i}].id: must be 'carrier/service'; got {x.id!r}")
        s_idx = {s.id: i for i, s in enumerate(services)}

        shape = (len(regions), len(regions), len(services))
        mean, p90 = np.full(shape, np.nan), np.full(shape, np.nan)
        lanes, table = d.get("lanes", []), d.get("postal_prefixes", {})
        if not (isinstance(lanes, list) and isinstance(table, dict)):
            raise NetworkError("network.lanes/postal_prefixes: must be a list / an object")
        seen: set[tuple[int, int, int]] = set()
        for i, lane in enumerate(lanes):
            w = f"lanes[{i}]"
            key = (
                r_idx[_str(lane, "origin", w, regions)],
                r_idx[_str(lane, "dest", w, regions)],
                s_idx[_str(lane, "service", w, tuple(s_idx))],
            )
            if key in seen:
                raise NetworkError(f"{w}: duplicate lane {lane['origin']}->{lane['dest']}")
            seen.add(key)
            if _get(lane, "transit_mean", w) is not None:  # null = explicitly uncovered
                mean[key] = _num(lane, "transit_mean", w)
                p90[key] = _num(lane, "transit_p90", w, mean[key], 365)

        postal: dict[str, tuple[float, float, int]] = {}
        for key, v in table.items():
            w = f"postal_prefixes[{key!r}]"
            if not (key.isdigit() and 1 <= len(key) <= 5):
                raise NetworkError(f"{w}: key must be 1-5 digits")
            if not (isinstance(v, list) and len(v) == 3):
                raise NetworkError(f"{w}: must be [lat, lng, region]")
            row = {"lat": v[0], "lng": v[1], "region": v[2]}
            region = r_idx[_str(row, "region", w, regions)]
            postal[key] = (_num(row, "lat", w), _num(row, "lng", w), region)

        return cls(
            version=version,
            nodes=tuple(nodes),
            services=tuple(services),
            regions=regions,
            region_lat=np.array([reg_rows[c][0] for c in regions]),
            region_lng=np.array([reg_rows[c][1] for c in regions]),
            region_demand=demand,
            lane_transit_mean=mean,
            lane_transit_p90=p90,
            postal_prefixes=postal,
            attribution=attribution,
            built_from=built_from,
        )

    def to_dict(self) -> dict:
        """The JSON layout (covered lanes only; an absent lane is an uncovered one)."""
        regs = self.regions
        lanes = [
            {
                "origin": regs[o],
                "dest": regs[t],
                "service": self.services[s].id,
                "transit_mean": float(self.lane_transit_mean[o, t, s]),
                "transit_p90": float(self.lane_transit_p90[o, t, s]),
            }
            for o, t, s in zip(*np.nonzero(~np.isnan(self.lane_transit_mean)), strict=True)
        ]
        return {
            "version": self.version,
            "attribution": self.attribution,
            "built_from": dict(self.built_from),
            "regions": [
                {
                    "code": c,
                    "lat": float(self.region_lat[i]),
                    "lng": float(self.region_lng[i]),
                    "demand": float(self.region_demand[i]),
                }
                for i, c in enumerate(regs)
            ],
            "nodes": [asdict(n) for n in self.nodes],
            "services": [asdict(s) for s in self.services],
            "lanes": lanes,
            "postal_prefixes": {
                k: [la, lo, regs[r]] for k, (la, lo, r) in sorted(self.postal_prefixes.items())
            },
        }

    @classmethod
    def load(cls, path: str | pathlib.Path) -> Network:
        """Read and validate a network file; any problem is a NetworkError naming the field."""
        p = pathlib.Path(path)
        try:
            raw = orjson.loads(p.read_bytes())
        except OSError as exc:
            raise NetworkError(f"{p}: cannot read network file: {exc}") from exc
        except orjson.JSONDecodeError as exc:
            raise NetworkError(f"{p}: not valid JSON: {exc}") from exc
        try:
            return cls.from_dict(raw)
        except NetworkError as exc:
            raise NetworkError(f"{p}: {exc}") from exc


def default_network_path() -> pathlib.Path:
    """``fulfil/data/network-olist-br.json`` beside this package (repo or site-packages)."""
    root = pathlib.Path(__file__).resolve().parent.parent
    return root / "fulfil" / "data" / "network-olist-br.json"


@functools.lru_cache(maxsize=1)
def load_default() -> Network:
    """The shipped network, loaded and validated once per process."""
    return Network.load(default_network_path())
