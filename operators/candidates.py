"""Batch candidate generation: every way to ship each order of a batch, as feature rows.

A *candidate* assigns every line of an order to a node (a line is never split across nodes) and
uses ONE carrier service for all its shipments. For a batch of orders (typically 100-1000 from
one Kafka fetch) ``build_candidates`` runs a single numba call (:mod:`operators.candidate_kernel`)
that writes the candidates CSR-style straight into the layout ``operators.scoring.score_batch``
reads. Python only packs the inputs (``pack_batch``) and, later, unpacks the winners.

Which candidates an order gets:

- single-node: among the nodes that hold every line (lines of one sku summed) and whose region
  some service covers towards the destination, the ``max_nodes`` best ranked: nodes that can ship
  at all (an open lane, capacity left when ``enforce_capacity``) first, then by distance. Ranking
  the unusable ones last keeps a saturated nearby node from crowding out feasible far ones, while
  still reporting it (masked) when slots remain.
- split (``max_splits`` > 0, only when fewer than ``min_single_nodes`` *usable* nodes can fill
  the order; default 1 = "only when needed"): greedily pick the usable node that can ship the most
  remaining lines whole (ties: nearest), until every line is assigned or ``max_splits + 1`` nodes
  are used (else no split candidate); a second variant excludes the first variant's first node.
- each assignment yields one candidate per service covering every shipment's lane.

Features (``operators.scoring.Feature`` order), per candidate:

- ready time per node: local hour = (now_ms / 3.6e6 + utc_offset) mod 24; before the cut-off
  ``now + handling_hours``, else next local midnight + 9 h + ``handling_hours``.
- shipment estimate = ready + ``lane_transit_mean`` days + ``lane_delay_hours``; the candidate's
  ``est_ms`` is the latest shipment's, rounded to the millisecond.
- LATE_HOURS = max(0, est_ms - promise_ms) / 3.6e6; TRANSIT_HOURS = (est_ms - now_ms) / 3.6e6
- COST = sum over shipments of handling_cost + base_cost + per_kg * kg + per_100km * km / 100
- DISTANCE_KM = max shipment haversine distance; LOAD = max over nodes of (load + 1) / capacity
  (a capacity below 1 counts as 1, keeping the feature finite); LANE_DELAY_HOURS = max over
  shipments; SPLITS = nodes - 1
- STOCK_COVER = min over lines of min((atp[node, sku] - qty of that sku at that node) / line qty,
  10)
- NOT_PREFERRED = 1 when a business rule prefers other nodes or services for the order and
  the candidate uses a node or service outside the preference, else 0
- CO2E_KG = sum over shipments of km x tonnes x the service's ``co2e_g_per_tkm`` / 1000
  (``operators.emissions.co2e_g``, the formula decisions and the evaluation use)
- ``mask`` is False when any shipment's lane is blocked, or ``enforce_capacity`` and a node has
  no capacity left today (load + 1 > capacity).

Business rules (``Constraints``, per order) remove nodes and services outright and cap splits
below ``max_splits``; restricted candidates are never generated, not merely masked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from operators.candidate_kernel import build_kernel, haversine_km, ready_ms
from operators.scoring import require_array

__all__ = [
    "BatchInput",
    "CandidateParams",
    "CandidateSet",
    "Constraints",
    "LaneArrays",
    "NetworkArrays",
    "OrderBatch",
    "build_candidates",
    "haversine_km",
    "pack_batch",
    "ready_ms",
]

OrderTuple = tuple[float, float, int, int, Sequence[tuple[str, int, float]]]


def _read_only(obj: Any, name: str, a: np.ndarray) -> None:
    """Store a read-only view (no copy) of a checked array.

    Checked inputs must not change behind the checks' back, and numba compiles one
    specialization per (dtype, layout, writeable) combination: making every kernel input
    read-only means one compile (and one cache entry) whatever the caller hands in, e.g.
    ``np.frombuffer`` views of Redis replies, which are read-only already.
    """
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    object.__setattr__(obj, name, a)


@dataclass(frozen=True, slots=True)
class NetworkArrays:
    """The network arrays the kernel reads (same names as ``operators.network.Network``).

    Built once per network version (``from_network``) and reused for every batch; the arrays
    are checked here, once, and kept as read-only views.
    """

    node_lat: np.ndarray  # f8[N]
    node_lng: np.ndarray  # f8[N]
    node_region: np.ndarray  # i8[N], index into regions
    node_capacity: np.ndarray  # f8[N], shipments per day
    node_handling_cost: np.ndarray  # f8[N]
    node_handling_hours: np.ndarray  # f8[N]
    node_cutoff_hour: np.ndarray  # f8[N], local hour
    node_utc_offset: np.ndarray  # f8[N], hours
    lane_transit_mean: np.ndarray  # f8[R, R, S], days; NaN = service does not cover the lane
    service_base_cost: np.ndarray  # f8[S]
    service_per_kg: np.ndarray  # f8[S]
    service_per_100km: np.ndarray  # f8[S]
    service_co2e: np.ndarray | None = None  # f8[S], g CO2e per tonne-km; None: all 0

    def __post_init__(self) -> None:
        f = "NetworkArrays"
        if self.service_co2e is None:  # a network without emission factors: CO2E_KG is 0
            n_svc = np.shape(self.service_per_100km)[0]
            object.__setattr__(self, "service_co2e", np.zeros(n_svc))
        n = require_array(f, "node_lat", self.node_lat, np.float64, 1, (None,)).shape[0]
        transit = require_array(
            f, "lane_transit_mean", self.lane_transit_mean, np.float64, 3, (None, None, None)
        )
        n_reg, _, n_svc = transit.shape
        if transit.shape[1] != n_reg:
            raise ValueError(f"{f}: argument 'lane_transit_mean' must be [R, R, S]")
        for fl in fields(self):
            if fl.name.startswith("node_"):
                dtype = np.int64 if fl.name == "node_region" else np.float64
                require_array(f, fl.name, getattr(self, fl.name), dtype, 1, (n,))
            elif fl.name.startswith("service_"):
                require_array(f, fl.name, getattr(self, fl.name), np.float64, 1, (n_svc,))
            _read_only(self, fl.name, getattr(self, fl.name))
        if n and (self.node_region.min() < 0 or self.node_region.max() >= n_reg):
            raise ValueError(f"{f}: argument 'node_region' has indices outside 0..{n_reg - 1}")

    @classmethod
    def from_network(cls, network: Any) -> NetworkArrays:
        """Take the arrays from a ``Network`` (read by attribute name; no import of it here)."""
        return cls(**{fl.name: getattr(network, fl.name) for fl in fields(cls)})

    @property
    def shape(self) -> tuple[int, int, int]:
        """(nodes, regions, services)."""
        n_reg, _, n_svc = self.lane_transit_mean.shape
        return self.node_lat.shape[0], n_reg, n_svc


@dataclass(frozen=True, slots=True)
class LaneArrays:
    """Lane health now, on the network's [origin region, dest region, service] grid.

    ``operators.lanes.health_arrays`` returns exactly ``(delay_hours, blocked)``.
    """

    delay_hours: np.ndarray  # f8[R, R, S]: extra hours expected on the lane now
    blocked: np.ndarray  # bool[R, R, S]: outage, candidates using the lane are infeasible

    def __post_init__(self) -> None:
        f = "LaneArrays"
        d = require_array(f, "delay_hours", self.delay_hours, np.float64, 3, (None, None, None))
        require_array(f, "blocked", self.blocked, np.bool_, 3, d.shape)
        if not np.isfinite(d).all():
            raise ValueError(f"{f}: argument 'delay_hours' must be finite")
        _read_only(self, "delay_hours", self.delay_hours)
        _read_only(self, "blocked", self.blocked)

    @classmethod
    def healthy(cls, n_regions: int, n_services: int) -> LaneArrays:
        """No delays, no outages (tests, start-up before the lane board is read)."""
        shape = (n_regions, n_regions, n_services)
        return cls(np.zeros(shape), np.zeros(shape, dtype=np.bool_))


@dataclass(frozen=True, slots=True)
class Constraints:
    """Per-order business rules for one batch (``operators.rules`` decides them).

    Row i belongs to batch order i. ``none`` is the unconstrained batch (every node and service
    allowed and preferred, the global split limit).
    """

    node_ok: np.ndarray  # bool[n, N]: node may ship order i
    svc_ok: np.ndarray  # bool[n, S]: service may carry order i
    node_pref: np.ndarray  # bool[n, N]: node is within order i's preference (all True: none)
    svc_pref: np.ndarray  # bool[n, S]
    max_splits: np.ndarray  # i8[n]: extra shipments allowed for order i

    def __post_init__(self) -> None:
        f = "Constraints"
        n, n_nodes = require_array(f, "node_ok", self.node_ok, np.bool_, 2, (None, None)).shape
        n_svc = require_array(f, "svc_ok", self.svc_ok, np.bool_, 2, (n, None)).shape[1]
        require_array(f, "node_pref", self.node_pref, np.bool_, 2, (n, n_nodes))
        require_array(f, "svc_pref", self.svc_pref, np.bool_, 2, (n, n_svc))
        require_array(f, "max_splits", self.max_splits, np.int64, 1, (n,))
        if n and self.max_splits.min() < 0:
            raise ValueError(f"{f}: argument 'max_splits' must be >= 0")
        for fl in fields(self):
            _read_only(self, fl.name, getattr(self, fl.name))

    @classmethod
    def none(cls, n: int, n_nodes: int, n_services: int, max_splits: int) -> Constraints:
        yes_n = np.ones((n, n_nodes), dtype=np.bool_)
        yes_s = np.ones((n, n_services), dtype=np.bool_)
        return cls(yes_n, yes_s, yes_n, yes_s, np.full(n, max_splits, dtype=np.int64))


@dataclass(frozen=True, slots=True)
class CandidateParams:
    """How many candidates to generate per order (see the module docstring)."""

    max_nodes: int = 8  # single-node candidates from the best-ranked nodes that fill the order
    max_splits: int = 2  # extra shipments allowed per order; 0 = never split
    min_single_nodes: int = 1  # split only when fewer usable nodes than this fill the order
    enforce_capacity: bool = True  # a node with no capacity left today is infeasible

    def __post_init__(self) -> None:
        for name in ("max_nodes", "max_splits", "min_single_nodes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"CandidateParams.{name} must be an integer >= 0; got {v!r}")
        if not isinstance(self.enforce_capacity, bool):
            raise ValueError(
                f"CandidateParams.enforce_capacity must be a bool; got {self.enforce_capacity!r}"
            )


@dataclass(frozen=True, slots=True)
class OrderBatch:
    """The orders of a batch without stock: what ``pack_batch`` builds.

    Lines are CSR: order i owns lines ``line_offsets[i]:line_offsets[i + 1]``; ``line_sku``
    indexes the batch's sku list (so ATP is read for exactly those skus).
    """

    dest_lat: np.ndarray  # f8[n]
    dest_lng: np.ndarray  # f8[n]
    dest_region: np.ndarray  # i8[n]
    promise_ms: np.ndarray  # i8[n], epoch ms UTC
    line_offsets: np.ndarray  # i8[n + 1]
    line_sku: np.ndarray  # i8[L], batch-local sku index
    line_qty: np.ndarray  # i8[L], >= 1
    line_kg: np.ndarray  # f8[L], the line's total weight (all units)

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        f = type(self).__name__
        n = require_array(f, "dest_lat", self.dest_lat, np.float64, 1, (None,)).shape[0]
        require_array(f, "dest_lng", self.dest_lng, np.float64, 1, (n,))
        require_array(f, "dest_region", self.dest_region, np.int64, 1, (n,))
        require_array(f, "promise_ms", self.promise_ms, np.int64, 1, (n,))
        offs = require_array(f, "line_offsets", self.line_offsets, np.int64, 1, (n + 1,))
        n_lines = require_array(f, "line_sku", self.line_sku, np.int64, 1, (None,)).shape[0]
        require_array(f, "line_qty", self.line_qty, np.int64, 1, (n_lines,))
        require_array(f, "line_kg", self.line_kg, np.float64, 1, (n_lines,))
        if offs[0] != 0 or offs[-1] != n_lines or bool((offs[1:] < offs[:-1]).any()):
            raise ValueError(
                f"{f}: argument 'line_offsets' must rise from 0 to len(line_sku)={n_lines}"
            )
        if n and self.dest_region.min() < 0:
            raise ValueError(f"{f}: argument 'dest_region' must be >= 0")
        if n_lines and (self.line_qty.min() < 1 or self.line_sku.min() < 0):
            raise ValueError(f"{f}: arguments 'line_qty' must be >= 1 and 'line_sku' >= 0")
        for fl in fields(OrderBatch):
            _read_only(self, fl.name, getattr(self, fl.name))

    @property
    def n_orders(self) -> int:
        return self.dest_lat.shape[0]

    def with_stock(self, atp: np.ndarray, load: np.ndarray) -> BatchInput:
        """Attach the stock read for this batch's skus: ``atp`` i8[N, U], ``load`` i8[N]."""
        values = {fl.name: getattr(self, fl.name) for fl in fields(OrderBatch)}
        return BatchInput(**values, atp=atp, load=load)


@dataclass(frozen=True, slots=True)
class BatchInput(OrderBatch):
    """An ``OrderBatch`` plus the stock it is routed against."""

    atp: np.ndarray  # i8[N, U]: available-to-promise per node x batch sku
    load: np.ndarray  # i8[N]: shipments already reserved today per node

    def _validate(self) -> None:
        OrderBatch._validate(self)
        atp = require_array("BatchInput", "atp", self.atp, np.int64, 2, (None, None))
        require_array("BatchInput", "load", self.load, np.int64, 1, (atp.shape[0],))
        if self.line_sku.shape[0] and self.line_sku.max() >= atp.shape[1]:
            raise ValueError(
                f"BatchInput: argument 'line_sku' indexes sku {self.line_sku.max()} "
                f"but 'atp' has {atp.shape[1]} sku columns"
            )
        _read_only(self, "atp", self.atp)
        _read_only(self, "load", self.load)


@dataclass(frozen=True, slots=True)
class CandidateSet:
    """All candidates of a batch, CSR by order; the first four arrays feed ``score_batch``.

    Candidate m serves order i for ``offsets[i] <= m < offsets[i + 1]``; its line-to-node
    assignment is ``assign[assign_offsets[m]:assign_offsets[m + 1]]`` in the order's line order.
    The arrays are views into the kernel's preallocated buffers (no copies).
    """

    X: np.ndarray  # f8[M, N_FEATURES]
    offsets: np.ndarray  # i8[n + 1]
    mask: np.ndarray  # bool[M]
    service: np.ndarray  # i8[M]
    est_ms: np.ndarray  # i8[M]: latest shipment's estimated delivery
    assign: np.ndarray  # i8[sum of line counts]: node per line
    assign_offsets: np.ndarray  # i8[M + 1]
    n_nodes: np.ndarray  # i8[M]

    def __len__(self) -> int:
        return self.X.shape[0]

    def assignment(self, m: int) -> np.ndarray:
        """Node index of each line of candidate ``m`` (a view)."""
        return self.assign[self.assign_offsets[m] : self.assign_offsets[m + 1]]

    def nodes(self, m: int) -> list[int]:
        """Distinct nodes of candidate ``m``, in order of first use (one shipment each)."""
        return list(dict.fromkeys(self.assignment(m).tolist()))


def pack_batch(orders: Sequence[OrderTuple]) -> tuple[OrderBatch, list[str]]:
    """Pack ``(lat, lng, region_idx, promise_ms, [(sku, qty, kg), ...])`` tuples into arrays.

    Returns the batch and its sku list: ``line_sku`` indexes that list, so the caller reads ATP
    for exactly those skus, in that order, as ``atp[N, len(skus)]``. ``kg`` is the line's
    total weight. A plain loop: it runs once per batch and per-order numpy calls would cost more.
    """
    sku_index: dict[str, int] = {}
    lat: list[float] = []
    lng: list[float] = []
    region: list[int] = []
    promise: list[int] = []
    offs = [0]
    line_sku: list[int] = []
    line_qty: list[int] = []
    line_kg: list[float] = []
    for o, (la, lo, reg, prom, lines) in enumerate(orders):
        lat.append(la)
        lng.append(lo)
        region.append(reg)
        promise.append(prom)
        for j, (sku, qty, kg) in enumerate(lines):
            if qty < 1:
                raise ValueError(f"pack_batch: orders[{o}] line {j} ({sku!r}) has qty {qty} < 1")
            u = sku_index.get(sku)
            if u is None:
                u = sku_index[sku] = len(sku_index)
            line_sku.append(u)
            line_qty.append(qty)
            line_kg.append(kg)
        offs.append(len(line_sku))
    batch = OrderBatch(
        dest_lat=np.array(lat, dtype=np.float64),
        dest_lng=np.array(lng, dtype=np.float64),
        dest_region=np.array(region, dtype=np.int64),
        promise_ms=np.array(promise, dtype=np.int64),
        line_offsets=np.array(offs, dtype=np.int64),
        line_sku=np.array(line_sku, dtype=np.int64),
        line_qty=np.array(line_qty, dtype=np.int64),
        line_kg=np.array(line_kg, dtype=np.float64),
    )
    return batch, list(sku_index)


def build_candidates(
    batch: BatchInput,
    network: NetworkArrays,
    lanes: LaneArrays,
    now_ms: int,
    params: CandidateParams = CandidateParams(),  # frozen, so safe as a default
    rules: Constraints | None = None,
) -> CandidateSet:
    """Generate and featurize every candidate of ``batch`` in one numba call.

    All arrays were checked when their dataclasses were built; this only checks that they fit
    together (node, region and service counts) before handing them to the kernel.
    """
    n_nodes, n_reg, n_svc = network.shape
    if rules is None:
        rules = Constraints.none(batch.n_orders, n_nodes, n_svc, params.max_splits)
    elif rules.node_ok.shape != (batch.n_orders, n_nodes) or rules.svc_ok.shape[1] != n_svc:
        raise ValueError(
            f"build_candidates: argument 'rules' has shape {rules.node_ok.shape} x "
            f"{rules.svc_ok.shape[1]} services; the batch needs {(batch.n_orders, n_nodes)} x "
            f"{n_svc}"
        )
    if batch.atp.shape[0] != n_nodes:
        raise ValueError(
            f"build_candidates: argument 'batch.atp' has {batch.atp.shape[0]} node rows; "
            f"the network has {n_nodes} nodes"
        )
    if lanes.delay_hours.shape != (n_reg, n_reg, n_svc):
        raise ValueError(
            f"build_candidates: argument 'lanes' has shape {lanes.delay_hours.shape}; "
            f"the network's lane grid is {(n_reg, n_reg, n_svc)}"
        )
    if batch.n_orders and batch.dest_region.max() >= n_reg:
        raise ValueError(
            f"build_candidates: argument 'batch.dest_region' has indices outside 0..{n_reg - 1}"
        )
    X, offsets, mask, service, est, nn, assign, assign_offsets, m, a = build_kernel(
        batch.dest_lat, batch.dest_lng, batch.dest_region, batch.promise_ms,
        batch.line_offsets, batch.line_sku, batch.line_qty, batch.line_kg,
        batch.atp, batch.load,
        network.node_lat, network.node_lng, network.node_region, network.node_capacity,
        network.node_handling_cost, network.node_handling_hours, network.node_cutoff_hour,
        network.node_utc_offset,
        network.lane_transit_mean, network.service_base_cost, network.service_per_kg,
        network.service_per_100km, network.service_co2e,
        lanes.delay_hours, lanes.blocked,
        int(now_ms), params.max_nodes, params.max_splits, params.min_single_nodes,
        params.enforce_capacity,
        rules.node_ok, rules.svc_ok, rules.node_pref, rules.svc_pref, rules.max_splits,
    )  # fmt: skip
    return CandidateSet(
        X=X[:m],
        offsets=offsets,
        mask=mask[:m],
        service=service[:m],
        est_ms=est[:m],
        assign=assign[:a],
        assign_offsets=assign_offsets[: m + 1],
        n_nodes=nn[:m],
    )
