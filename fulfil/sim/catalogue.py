"""The simulated SKU catalogue: real Olist products with a Zipf-like popularity.

Real products make weights and categories (and therefore parcel costs) realistic; a seeded
subset keeps runs small and reproducible. Popularity follows ``p(rank) ~ 1 / rank**s`` (s ≈ 1.1),
the long tail typical of marketplace demand, over a seeded permutation of the subset: index 0 of
a `Catalogue` is always the most popular sku, so "the #1 sku" is simply ``skus[0]``.

The Olist files are read in place from the shared data folder (never copied into the repo). On a
machine without them a synthetic catalogue of the same shape is generated, with a warning, so the
demo still runs.

`stock_plan` places the catalogue on a network (who stocks which sku, how many), and
`initial_inventory` turns that plan into the inventory snapshots a run starts from.
"""

from __future__ import annotations

import csv
import logging
import os
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fulfil.sim.scenario import HOURLY_RHYTHM, Scenario
from operators.network import Network, haversine_km
from schemas.enums import InventoryEventType

__all__ = [
    "Catalogue",
    "default_shared_dir",
    "initial_inventory",
    "load_catalogue",
    "resolve_nodes",
    "stock_plan",
]

log = logging.getLogger(__name__)

PRODUCTS_CSV = "data/olist/olist_products_dataset.csv"
CATEGORIES_CSV = "data/olist/product_category_name_translation.csv"
_SYNTHETIC_CATEGORIES = (
    "bed_bath_table", "health_beauty", "sports_leisure", "furniture_decor", "computers_accessories",
    "housewares", "watches_gifts", "telephony", "garden_tools", "auto", "toys", "perfumery",
)  # fmt: skip


def default_shared_dir() -> Path:
    """``$FULFIL_SHARED_DIR`` or ``<repo>/../shared`` (the shared data beside the checkout)."""
    env = os.environ.get("FULFIL_SHARED_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared"


@dataclass(frozen=True, eq=False)
class Catalogue:
    """SKUs in popularity order (index 0 = most popular) with per-sku attributes.

    Arrays are read-only and aligned with ``skus``; ``cdf`` is the cumulative popularity used
    to draw skus with ``np.searchsorted(cdf, u, side="right")``.
    """

    skus: tuple[str, ...]
    categories: tuple[str, ...]
    weight_g: np.ndarray  # i8[K]
    price: np.ndarray  # f8[K], BRL; synthetic (Olist products carry no price)
    popularity: np.ndarray  # f8[K], sums to 1, non-increasing
    source: str  # "olist" | "synthetic"

    def __post_init__(self) -> None:
        for a in (self.weight_g, self.price, self.popularity):
            a.setflags(write=False)

    def __len__(self) -> int:
        return len(self.skus)

    @property
    def cdf(self) -> np.ndarray:
        c = np.cumsum(self.popularity)
        c[-1] = 1.0
        return c

    def rank_of(self, sku: str) -> int:
        """1-based popularity rank of ``sku`` (1 = most popular)."""
        return self.skus.index(sku) + 1

    def top(self, share: float) -> int:
        """How many skus make up the most popular ``share`` of the catalogue (at least 1)."""
        return max(1, round(len(self.skus) * share))


def zipf_popularity(n: int, s: float) -> np.ndarray:
    """Normalised ``1 / rank**s`` for ranks 1..n."""
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** s
    return w / w.sum()


def _read_olist(shared: Path) -> tuple[list[str], list[str], list[int]]:
    """Product ids, English categories and weights (missing -> category median, then global)."""
    english: dict[str, str] = {}
    with open(shared / CATEGORIES_CSV, newline="", encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            english[row["product_category_name"]] = row["product_category_name_english"]
    ids: list[str] = []
    cats: list[str] = []
    raw_w: list[float | None] = []
    with open(shared / PRODUCTS_CSV, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            ids.append(row["product_id"])
            pt = row["product_category_name"]
            cats.append(english.get(pt, pt) if pt else "unknown")
            w = row["product_weight_g"]
            raw_w.append(float(w) if w else None)
    by_cat: dict[str, list[float]] = {}
    for c, w in zip(cats, raw_w, strict=True):
        if w is not None:
            by_cat.setdefault(c, []).append(w)
    overall = statistics.median(w for w in raw_w if w is not None)
    medians = {c: statistics.median(v) for c, v in by_cat.items()}
    weights = [
        round(w if w is not None else medians.get(c, overall))
        for c, w in zip(cats, raw_w, strict=True)
    ]
    return ids, cats, weights


def _synthetic(n: int, rng: np.random.Generator) -> tuple[list[str], list[str], list[int]]:
    """A stand-in with Olist-like weights (log-normal, median ~700 g)."""
    ids = [f"sku-{i:06d}" for i in range(n)]
    cats = [_SYNTHETIC_CATEGORIES[i] for i in rng.integers(0, len(_SYNTHETIC_CATEGORIES), n)]
    weights = np.clip(rng.lognormal(np.log(700), 1.1, n), 50, 30_000).round().astype(int)
    return ids, cats, weights.tolist()


def load_catalogue(
    size: int = 2_000,
    seed: int = 7,
    *,
    zipf_s: float = 1.1,
    shared_dir: str | Path | None = None,
) -> Catalogue:
    """A seeded subset of ``size`` skus, most popular first.

    Which products are picked and their popularity order both come from ``seed``; the same
    arguments always give the same catalogue.
    """
    if size < 1:
        raise ValueError(f"load_catalogue: size must be >= 1; got {size}")
    rng = np.random.default_rng([seed, 0xCA7A])
    shared = Path(shared_dir) if shared_dir is not None else default_shared_dir()
    try:
        ids, cats, weights = _read_olist(shared)
        source = "olist"
    except OSError as exc:
        log.warning("Olist products not readable under %s (%s): using a synthetic catalogue",
                    shared, exc)  # fmt: skip
        ids, cats, weights = _synthetic(size, rng)
        source = "synthetic"
    order = rng.permutation(len(ids))[:size]
    n = len(order)
    # Price: heavier goods cost more, with a wide spread (BRL, 2 decimals).
    w = np.array([weights[i] for i in order], dtype=np.int64)
    price = np.round(np.exp(rng.normal(np.log(40 + 0.03 * w), 0.6)), 2)
    return Catalogue(
        skus=tuple(ids[i] for i in order),
        categories=tuple(cats[i] for i in order),
        weight_g=w,
        price=price,
        popularity=zipf_popularity(n, zipf_s),
        source=source,
    )


# ---------------------------------------------------------------- stock: the catalogue on a network


def resolve_nodes(network: Network, spec: tuple[str, ...] | str) -> list[int]:
    """Node indexes for a StockOut selector: ids, "all" or "nearest:<REGION>:<k>" warehouses."""
    if spec == "all":
        return list(range(len(network.nodes)))
    if isinstance(spec, str) and spec.startswith("nearest:"):
        _, region, k = spec.split(":")
        r = network.region_index[region]
        wh = [i for i, n in enumerate(network.nodes) if n.kind == "warehouse"]
        d = haversine_km(network.node_lat[wh], network.node_lng[wh],
                         network.region_lat[r], network.region_lng[r])  # fmt: skip
        order = sorted(range(len(wh)), key=lambda j: (float(d[j]), network.nodes[wh[j]].id))
        return [wh[j] for j in order[: int(k)]]
    ids = (spec,) if isinstance(spec, str) else spec
    try:
        return [network.node_index[i] for i in ids]
    except KeyError as exc:
        raise ValueError(f"StockOut.nodes: unknown node id {exc.args[0]!r}") from None


def _mean(probs: tuple[float, ...]) -> float:
    return sum((i + 1) * p for i, p in enumerate(probs))


def stock_plan(
    network: Network, catalogue: Catalogue, scenario: Scenario
) -> dict[tuple[int, int], int]:
    """Initial on-hand per (node index, sku index).

    Warehouses carry every sku, stores the top ``store_share``. Each node alone can serve
    ``stock_cover`` of the whole network's expected demand for a sku over ``stock_horizon_s``
    at the peak of the rhythm, so popular skus last the run unless a StockOut empties them.
    """
    rng = np.random.default_rng([scenario.seed, 0x570C])
    peak = max(HOURLY_RHYTHM) if scenario.daily_rhythm else 1.0
    units = scenario.rate * peak * scenario.stock_horizon_s
    units *= _mean(scenario.lines) * _mean(scenario.qty)
    demand = units * catalogue.popularity
    n_store = catalogue.top(scenario.store_share)
    plan: dict[tuple[int, int], int] = {}
    for j, node in enumerate(network.nodes):
        k = len(catalogue) if node.kind == "warehouse" else n_store
        share = scenario.stock_cover * (1.0 if node.kind == "warehouse" else 0.5)
        qty = np.ceil(demand[:k] * share * rng.uniform(0.8, 1.2, k)).astype(np.int64)
        qty = np.maximum(qty, scenario.min_on_hand).tolist()
        for s in range(k):
            plan[(j, s)] = qty[s]
    return plan


def initial_inventory(
    network: Network, catalogue: Catalogue, scenario: Scenario, *, at_ms: int | None = None
) -> Iterator[dict[str, Any]]:
    """``inventory.snapshot`` events (version 1) for every stocked node x sku.

    ``at_ms`` is their occurred_at (the publisher passes the wall clock; default sim start).
    """
    at = scenario.sim_start_ms if at_ms is None else at_ms
    seed = f"{scenario.seed:x}"
    kind = InventoryEventType.SNAPSHOT.value
    for i, ((j, s), qty) in enumerate(stock_plan(network, catalogue, scenario).items()):
        yield {
            "type": kind, "event_id": f"{seed}-s{i}", "node_id": network.nodes[j].id,
            "sku": catalogue.skus[s], "version": 1, "on_hand": qty, "occurred_at": at,
        }  # fmt: skip
