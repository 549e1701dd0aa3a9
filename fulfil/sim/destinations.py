"""Customer addresses for the simulator's orders, drawn from the real postal prefixes of a region.

A region is drawn from the network's demand, then one of its known postal prefixes, and the
address gets a 5-digit code inside that prefix, plus (for a ``coords_share`` of them) the
prefix centroid jittered by up to ``_JITTER_DEG``. Split out of `fulfil.sim.workload`, which
draws one block of addresses per block of orders from its seeded RNG.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from operators.network import Network

__all__ = ["Destinations"]

_JITTER_DEG = 0.05


class Destinations:
    """Prefix tables of one network; `draw` address columns from an RNG, `to_dicts` them."""

    def __init__(self, network: Network, region_cdf: np.ndarray, coords_share: float) -> None:
        self.network = network
        self._region_cdf = region_cdf
        self._coords_share = coords_share
        self._index_prefixes()

    def _index_prefixes(self) -> None:
        """Flat prefix tables (code, lat, lng, region) with a [start, count) range per region.

        A region with no known prefix gets one empty-code row at its centroid (see
        `to_dicts`), so every region the demand can draw is addressable.
        """
        net = self.network
        rows: list[list[tuple[str, float, float]]] = [[] for _ in net.regions]
        for key, (lat, lng, r) in sorted(net.postal_prefixes.items()):
            rows[r].append((key.zfill(3), lat, lng))
        for r, lst in enumerate(rows):
            if not lst:
                lst.append(("", float(net.region_lat[r]), float(net.region_lng[r])))
        flat = [(code, lat, lng, r) for r, lst in enumerate(rows) for code, lat, lng in lst]
        self._pre_code = [f[0] for f in flat]
        self._pre_lat = np.array([f[1] for f in flat])
        self._pre_lng = np.array([f[2] for f in flat])
        self._pre_region = [f[3] for f in flat]
        self._pre_count = np.array([len(lst) for lst in rows])
        self._pre_start = np.concatenate(([0], np.cumsum(self._pre_count)[:-1]))

    def draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
        """(prefix row, suffix, has-coords, jitter-lat, jitter-lng) columns for n addresses."""
        region = np.minimum(np.searchsorted(self._region_cdf, rng.random(n), side="right"),
                            len(self.network.regions) - 1)  # fmt: skip
        row = self._pre_start[region] + (rng.random(n) * self._pre_count[region]).astype(np.int64)
        return (
            row,
            rng.integers(0, 100_000, n),
            rng.random(n) < self._coords_share,
            rng.uniform(-_JITTER_DEG, _JITTER_DEG, n),
            rng.uniform(-_JITTER_DEG, _JITTER_DEG, n),
        )

    def to_dicts(self, row: np.ndarray, suffix: np.ndarray, coords: np.ndarray,
                    jlat: np.ndarray, jlng: np.ndarray) -> list[dict[str, Any]]:  # fmt: skip
        """Destination dicts: a 5-digit postal code inside a real prefix of the drawn region,
        plus jittered prefix-centroid coordinates for a ``coords_share`` of them."""
        lat = np.round(self._pre_lat[row] + jlat, 5).tolist()
        lng = np.round(self._pre_lng[row] + jlng, 5).tolist()
        codes = [
            p + str(x).zfill(5)[len(p):] if 0 < len(p) < 5 else p
            for p, x in zip([self._pre_code[r] for r in row.tolist()], suffix.tolist(), strict=True)
        ]
        out: list[dict[str, Any]] = [
            {"postal_code": code, "country": "BR", "lat": la, "lng": lo} if c
            else {"postal_code": code, "country": "BR"}
            for code, c, la, lo in zip(codes, coords.tolist(), lat, lng, strict=True)
        ]  # fmt: skip
        for i, r in enumerate(row.tolist()):
            if not codes[i]:  # a region without known prefixes: its centroid, named explicitly
                out[i] = {"region": self.network.regions[self._pre_region[r]], "country": "BR",
                          "lat": lat[i], "lng": lng[i]}  # fmt: skip
        return out
