"""Build the default network (``fulfil/data/network-olist-br.json``) from the Olist data set.

Source: Brazilian E-Commerce Public Dataset by Olist (Kaggle ``olistbr/brazilian-ecommerce``),
CC BY-NC-SA 4.0. Only derived aggregates are written (cluster centroids, counts, shares, prefix
means), never rows of the CSVs; the file carries an ``attribution`` field.

Why each number is what it is:

* **Geolocation clean-up.** ``geolocation_one_point_per_zip_prefix.csv`` has a few points far
  outside Brazil (and some inside it but in the wrong state). Points outside Brazil's bounding
  box are dropped; then, per state, points farther from the state's median point than
  ``max(500 km, 2.5 x the 90th-percentile distance)`` are dropped (33 of ~19,000).
* **Regions** are the 27 states present. Centroid = mean of the state's zip-prefix points:
  prefixes are denser where people live, so this is a demand-weighted centroid.
  Demand share = 50/50 blend of (a) the state's share of zip prefixes and (b) the state's share
  of the 200 customers in ``olist_customers_dataset.head.csv``, Laplace-smoothed (+1 per state)
  because 200 rows leave most northern states at zero. (a) alone underweights São Paulo's
  real order share; (b) alone is too noisy: the blend is the honest middle.
* **Postal prefixes**: the 3-digit prefix of each (left-padded to 5) zip prefix -> mean point of
  the majority state's points within it, and that state.
* **Nodes**: sellers located by their zip prefix (or its 3-digit mean when the prefix is not in
  the geolocation file; the state too comes from the prefix, as the free-text state column is
  sometimes wrong), clustered with a seeded k-means++ / Lloyd k-means (numpy, equirectangular
  km coordinates). Ids ``N01..`` by descending seller count; the 12 largest are warehouses.
  Region = the cluster's most common seller state; name = its most common seller city within
  that state (so a "Brasilia DC" never sits in GO). Capacity scales with seller count (a seller
  is a proxy for the assortment and volume a location handles), floored at 2,000/day
  (warehouse) and 300/day (store).
* **Services** and their prices are plausible BRL parcel tariffs (see ``SERVICES``). Lane transit
  = base days + centroid distance / service speed; p90 = mean x 1.35 + 0.5 (+1 day when either
  end is in the North, where river and long-haul legs make delivery times more variable).
* **Version** = ``olist-br-`` + the first 10 hex digits of the SHA-256 of the canonical JSON body
  (sorted keys, version left out): the same inputs and seed give a byte-identical file.

Usage: ``python -m fulfil.netbuild --olist ../shared/data/olist --out FILE --nodes 40 --seed 7``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from operators.network import Network, default_network_path, haversine_km

ATTRIBUTION = (
    "Derived from the Brazilian E-Commerce Public Dataset by Olist "
    "(Kaggle olistbr/brazilian-ecommerce), CC BY-NC-SA 4.0. "
    "Aggregates only; this file is shared under the same licence."
)
GEO_FILE = "geolocation_one_point_per_zip_prefix.csv"
SELLERS_FILE = "olist_sellers_dataset.csv"
CUSTOMERS_FILE = "olist_customers_dataset.head.csv"

BRAZIL_BBOX = (-34.0, 5.5, -74.5, -28.5)  # lat min/max, lng min/max (incl. Atlantic islands)
NORTH = frozenset({"AC", "AP", "AM", "PA", "RO", "RR", "TO"})
UTC_OFFSET = {"AM": -4.0, "RR": -4.0, "RO": -4.0, "MT": -4.0, "MS": -4.0, "AC": -5.0}  # else -3
WAREHOUSES = 12
PARTICLES = frozenset({"da", "das", "de", "do", "dos", "e"})

# Node parameters per kind: capacity floor and rounding step, orders/day per seller (stores run
# smaller back rooms), handling cost (BRL/shipment), handling hours, local cut-off hour.
KIND_PARAMS = {
    "warehouse": {"floor": 2000, "step": 500, "per_seller": 30, "cost": 2.5, "hours": 6, "cut": 15},
    "store": {"floor": 300, "step": 100, "per_seller": 20, "cost": 4.0, "hours": 3, "cut": 18},
}


@dataclass(frozen=True)
class ServiceSpec:
    """A carrier product: its tariff, its emissions and how fast and where it runs."""

    id: str
    level: str
    base_cost: float  # BRL per shipment
    per_kg: float  # BRL per kg
    per_100km: float  # BRL per 100 km
    co2e_g_per_tkm: float
    base_days: float  # same-state transit
    km_per_day: float  # line-haul speed between region centroids
    coverage: frozenset[str]  # states served, as origin and as destination


# fmt: off
STATES = frozenset({"AC", "AL", "AM", "AP", "BA", "CE", "DF", "ES", "GO", "MA", "MG", "MS", "MT",
                    "PA", "PB", "PE", "PI", "PR", "RJ", "RN", "RO", "RR", "RS", "SC", "SE", "SP",
                    "TO"})
# fmt: on
_LOGGI = frozenset({"SP", "RJ", "MG", "ES", "PR", "SC", "RS", "DF"})  # South-East, South, DF
_JADLOG = STATES - {"AC", "AP", "RR"}
# Emission factors (g CO2e per tonne-km), typical published values rounded: road parcel/LTL
# trucking ~100 (GLEC Framework default road factors; UK DEFRA/DESNZ "HGV average laden"
# ~107); express moves a share of its line-haul by air (domestic air freight ~1,100-2,500 in
# DEFRA/DESNZ), so a ~20 % air share gives ~600.
SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("correios/pac", "standard", 17.5, 2.1, 0.95, 100.0, 2.0, 450.0, STATES),
    ServiceSpec("correios/sedex", "express", 29.9, 3.9, 1.7, 600.0, 1.0, 900.0, STATES),
    ServiceSpec("jadlog/package", "standard", 16.0, 1.9, 0.9, 100.0, 2.0, 430.0, _JADLOG),
    ServiceSpec("jadlog/expresso", "express", 27.5, 3.5, 1.6, 600.0, 1.0, 850.0, _JADLOG),
    ServiceSpec("loggi/standard", "standard", 14.5, 2.3, 1.1, 100.0, 2.0, 480.0, _LOGGI),
    ServiceSpec("loggi/express", "express", 24.9, 4.0, 1.9, 600.0, 1.0, 950.0, _LOGGI),
)


# ---------------------------------------------------------------- reading and cleaning


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def _zip5(raw: str) -> str:
    """Olist stores zip prefixes as integers: restore the leading zeros."""
    return raw.strip().strip('"').zfill(5)


def load_geo(path: Path) -> tuple[dict[str, tuple[float, float, str]], int]:
    """Zip prefix -> (lat, lng, state), cleaned as the module docstring says; and #dropped."""
    raw: dict[str, tuple[float, float, str]] = {}
    rows = _rows(path)
    for r in rows:
        lat, lng = float(r["geolocation_lat"]), float(r["geolocation_lng"])
        if BRAZIL_BBOX[0] <= lat <= BRAZIL_BBOX[1] and BRAZIL_BBOX[2] <= lng <= BRAZIL_BBOX[3]:
            raw[_zip5(r["geolocation_zip_code_prefix"])] = (lat, lng, r["geolocation_state"])
    by_state: dict[str, list[str]] = defaultdict(list)
    for z in sorted(raw):
        by_state[raw[z][2]].append(z)
    keep: dict[str, tuple[float, float, str]] = {}
    for zips in by_state.values():
        pts = np.array([raw[z][:2] for z in zips])
        med = np.median(pts, axis=0)
        dist = haversine_km(pts[:, 0], pts[:, 1], med[0], med[1])
        limit = max(500.0, 2.5 * float(np.percentile(dist, 90)))
        keep.update({z: raw[z] for z, d in zip(zips, dist, strict=True) if d <= limit})
    return dict(sorted(keep.items())), len(rows) - len(keep)


def postal_table(geo: dict[str, tuple[float, float, str]]) -> dict[str, tuple[float, float, str]]:
    """3-digit prefix -> (mean lat, mean lng, majority state) over the majority state's points."""
    groups: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for z, point in geo.items():
        groups[z[:3]].append(point)
    table = {}
    for key in sorted(groups):
        votes = Counter(p[2] for p in groups[key])
        state = min(votes, key=lambda s: (-votes[s], s))
        pts = np.array([p[:2] for p in groups[key] if p[2] == state])
        table[key] = (round(float(pts[:, 0].mean()), 4), round(float(pts[:, 1].mean()), 4), state)
    return table


def regions_from(
    geo: dict[str, tuple[float, float, str]], customers: list[dict[str, str]]
) -> list[dict]:
    """Per state: centroid of its zip-prefix points and the blended, smoothed demand share."""
    points: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for lat, lng, state in geo.values():
        points[state].append((lat, lng))
    codes = sorted(points)
    cust = Counter(c["customer_state"].strip().upper() for c in customers)
    n_geo, n_cust = len(geo), sum(cust[c] for c in codes)
    share = {
        c: 0.5 * len(points[c]) / n_geo + 0.5 * (cust[c] + 1) / (n_cust + len(codes)) for c in codes
    }
    demand = {c: round(share[c], 6) for c in codes}
    top = max(codes, key=lambda c: demand[c])
    demand[top] = round(demand[top] + 1.0 - sum(demand.values()), 6)  # rounding residue
    out = []
    for c in codes:
        pts = np.array(points[c])
        lat, lng = float(pts[:, 0].mean()), float(pts[:, 1].mean())
        out.append({"code": c, "lat": round(lat, 4), "lng": round(lng, 4), "demand": demand[c]})
    return out


# ---------------------------------------------------------------- clustering and nodes


def kmeans(xy: np.ndarray, k: int, seed: int, iters: int = 300) -> np.ndarray:
    """Seeded k-means++ then Lloyd iterations; returns a cluster label per row.

    Deterministic: one seeded generator, index-ordered argmin ties, and an empty cluster is
    re-seeded with the point farthest from its centre (no random restarts).
    """
    rng = np.random.default_rng(seed)
    n = len(xy)
    if not 1 <= k <= n:
        raise ValueError(f"kmeans: need 1 <= k <= {n} points; got k={k}")
    centres = [xy[int(rng.integers(n))]]
    d2 = ((xy - centres[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        nxt = int(rng.choice(n, p=d2 / d2.sum())) if d2.sum() > 0 else int(np.argmax(d2))
        centres.append(xy[nxt])
        d2 = np.minimum(d2, ((xy - xy[nxt]) ** 2).sum(axis=1))
    c = np.array(centres)
    labels = np.full(n, -1)
    for _ in range(iters):
        dist = ((xy[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)
        new = np.argmin(dist, axis=1)
        for j in range(k):
            if not (new == j).any():
                far = int(np.argmax(dist[np.arange(n), new]))
                new[far] = j
        if np.array_equal(new, labels):
            break
        labels = new
        c = np.array([xy[labels == j].mean(axis=0) for j in range(k)])
    return labels


def _city(raw: str) -> str:
    """Normalise a free-text Olist city ("sao paulo / sp", "são paulo") to "sao paulo"."""
    s = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode().lower()
    for sep in ("/", "\\", ",", "(", " - ", "-"):
        s = s.split(sep)[0]
    s = " ".join(s.replace("´", "'").split())
    return s if len(s) > 2 and all(ch.isalpha() or ch in " '" for ch in s) else ""


def _title(city: str) -> str:
    words = city.split()
    out = []
    for i, w in enumerate(words):
        if i and w in PARTICLES:
            out.append(w)
        elif w.startswith("d'"):
            out.append("d'" + w[2:].capitalize())
        else:
            out.append(w.capitalize())
    return " ".join(out)


def _capacity(kind: str, sellers: int) -> int:
    p = KIND_PARAMS[kind]
    step = p["step"]
    return max(p["floor"], -(-sellers * p["per_seller"] // step) * step)


def build_nodes(
    sellers: list[dict[str, str]],
    geo: dict[str, tuple[float, float, str]],
    postal: dict[str, tuple[float, float, str]],
    k: int,
    seed: int,
) -> tuple[list[dict], int]:
    """Cluster located sellers into ``k`` nodes; returns the nodes and #sellers not located."""
    located: list[tuple[float, float, str, str]] = []
    for s in sellers:
        z = _zip5(s["seller_zip_code_prefix"])
        point = geo.get(z) or postal.get(z[:3])
        if point is None:
            continue
        # The CEP fixes the state; the free-text seller_state is sometimes wrong (Vila Velha, SP).
        located.append((point[0], point[1], point[2], _city(s["seller_city"])))
    ll = np.array([p[:2] for p in located])
    lat0 = np.radians(ll[:, 0].mean())
    xy = np.column_stack([ll[:, 1] * 111.32 * np.cos(lat0), ll[:, 0] * 110.57])  # km
    labels = kmeans(xy, k, seed)

    clusters = []
    for j in range(k):
        members = [located[i] for i in np.nonzero(labels == j)[0]]
        lat = round(float(ll[labels == j, 0].mean()), 4)
        lng = round(float(ll[labels == j, 1].mean()), 4)
        clusters.append((len(members), lat, lng, members))
    clusters.sort(key=lambda c: (-c[0], c[1], c[2]))

    nodes, names = [], Counter()
    width = max(2, len(str(k)))
    for rank, (count, lat, lng, members) in enumerate(clusters):
        kind = "warehouse" if rank < WAREHOUSES else "store"
        p = KIND_PARAMS[kind]
        states = Counter(m[2] for m in members)
        region = min(states, key=lambda s: (-states[s], s))
        # The name comes from the node's own state, so "X DC" never sits in another state.
        cities = Counter(m[3] for m in members if m[3] and m[2] == region)
        city = min(cities, key=lambda c: (-cities[c], c)) if cities else region.lower()
        name = f"{_title(city)} {'DC' if kind == 'warehouse' else 'Store'}"
        names[name] += 1
        nodes.append(
            {
                "id": f"N{rank + 1:0{width}d}",
                "name": name if names[name] == 1 else f"{name} {names[name]}",
                "kind": kind,
                "lat": lat,
                "lng": lng,
                "region": region,
                "capacity_per_day": _capacity(kind, count),
                "handling_cost": p["cost"],
                "handling_hours": float(p["hours"]),
                "cutoff_hour": p["cut"],
                "utc_offset_hours": UTC_OFFSET.get(region, -3.0),
            }
        )
    return nodes, len(sellers) - len(located)


# ---------------------------------------------------------------- services and lanes


def build_lanes(regions: list[dict]) -> list[dict]:
    """Every covered (origin, dest, service) with mean and p90 transit days."""
    lanes = []
    for o in regions:
        for t in regions:
            km = float(haversine_km(o["lat"], o["lng"], t["lat"], t["lng"]))
            north = o["code"] in NORTH or t["code"] in NORTH
            for spec in SERVICES:
                if o["code"] not in spec.coverage or t["code"] not in spec.coverage:
                    continue
                mean = round(spec.base_days + km / spec.km_per_day, 1)
                p90 = round(mean * 1.35 + 0.5 + (1.0 if north else 0.0), 1)
                lanes.append(
                    {
                        "origin": o["code"],
                        "dest": t["code"],
                        "service": spec.id,
                        "transit_mean": mean,
                        "transit_p90": p90,
                    }
                )
    return lanes


def _service_dict(spec: ServiceSpec) -> dict:
    carrier, service = spec.id.split("/")
    return {
        "id": spec.id,
        "carrier": carrier,
        "service": service,
        "level": spec.level,
        "base_cost": spec.base_cost,
        "per_kg": spec.per_kg,
        "per_100km": spec.per_100km,
        "co2e_g_per_tkm": spec.co2e_g_per_tkm,
    }


# ---------------------------------------------------------------- assembling and writing


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(olist_dir: Path, nodes: int = 40, seed: int = 7) -> Network:
    """Build (and validate, through ``Network.from_dict``) the network from the Olist CSVs."""
    olist_dir = Path(olist_dir)
    geo, geo_dropped = load_geo(olist_dir / GEO_FILE)
    customers = _rows(olist_dir / CUSTOMERS_FILE)
    sellers = _rows(olist_dir / SELLERS_FILE)
    postal = postal_table(geo)
    regions = regions_from(geo, customers)
    node_rows, unlocated = build_nodes(sellers, geo, postal, nodes, seed)
    body = {
        "version": "unversioned",
        "attribution": ATTRIBUTION,
        "built_from": {
            "builder": "fulfil.netbuild",
            "nodes": nodes,
            "seed": seed,
            "files": {
                name: _sha256(olist_dir / name) for name in (GEO_FILE, SELLERS_FILE, CUSTOMERS_FILE)
            },
            "sellers": len(sellers),
            "sellers_unlocated": unlocated,
            "geo_points_dropped": geo_dropped,
        },
        "regions": regions,
        "nodes": node_rows,
        "services": [_service_dict(s) for s in SERVICES],
        "lanes": build_lanes(regions),
        "postal_prefixes": {k: list(v) for k, v in postal.items()},
    }
    canonical = Network.from_dict(body).to_dict()
    del canonical["version"]
    digest = hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()
    body["version"] = f"olist-br-{digest[:10]}"
    return Network.from_dict(body)


def dumps(network: Network) -> bytes:
    """Readable, deterministic JSON: top-level keys on their own lines, one item per line.

    A rebuilt network then diffs line by line while the file stays small.
    """
    d = network.to_dict()
    parts = []
    for key, value in d.items():
        head = b"  " + orjson.dumps(key) + b": "
        if isinstance(value, list) and value:
            items = b",\n".join(b"    " + orjson.dumps(v) for v in value)
            parts.append(head + b"[\n" + items + b"\n  ]")
        elif isinstance(value, dict) and value and key == "postal_prefixes":
            items = b",\n".join(
                b"    " + orjson.dumps(k) + b": " + orjson.dumps(v) for k, v in value.items()
            )
            parts.append(head + b"{\n" + items + b"\n  }")
        else:
            parts.append(head + orjson.dumps(value))
    return b"{\n" + b",\n".join(parts) + b"\n}\n"


def main(argv: list[str] | None = None) -> int:
    """CLI entry: build the network and write it; prints a one-line summary."""
    ap = argparse.ArgumentParser(prog="python -m fulfil.netbuild", description=main.__doc__)
    ap.add_argument("--olist", type=Path, required=True, help="directory with the Olist CSVs")
    ap.add_argument("--out", type=Path, default=default_network_path(), help="output JSON file")
    ap.add_argument("--nodes", type=int, default=40, help="number of nodes (k-means clusters)")
    ap.add_argument("--seed", type=int, default=7, help="k-means seed")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["build"]:  # reached as `fulfil network build ...`
        argv = argv[1:]
    args = ap.parse_args(argv)
    net = build(args.olist, nodes=args.nodes, seed=args.seed)
    data = dumps(net)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    kinds = Counter(n.kind for n in net.nodes)
    print(
        f"{args.out}: {net.version}, {kinds['warehouse']} warehouses + {kinds['store']} stores, "
        f"{len(net.regions)} regions, {len(net.postal_prefixes)} postal prefixes, "
        f"{len(data) / 1024:.0f} KiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
