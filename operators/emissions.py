"""Estimated CO2e of a shipment: distance x weight x the carrier service's emission factor.

Why this simple form: it is the tonne-km method of the GLEC Framework (Smart Freight Centre) and
of the UK DEFRA/DESNZ conversion factors, which is what carriers and shippers report against;
a parcel's share of a vehicle's emissions is taken as proportional to its weight and distance.

Factors are data, not code: each ``operators.network.Service`` carries ``co2e_g_per_tkm`` (grams
of CO2e per tonne-km), read from the network file (``fulfil/data/network-olist-br.json``). They
come from ``fulfil/netbuild.py`` (``SERVICES``): road parcel / LTL trucking about 100 g/tkm (GLEC
Framework default road factors; DEFRA/DESNZ "HGV average laden" about 107 g/tkm) for the
standard services, and about 600 g/tkm for the express services, which move roughly a fifth of
their line-haul by domestic air freight (about 1,100-2,500 g/tkm in DEFRA/DESNZ). Distance is
the great-circle distance the planner already uses for cost (no road-distance uplift), so the
figures are estimates for comparing routings, not an emissions inventory.

One formula, three users: ``co2e_g`` is compiled (numba) so the candidate kernel computes the
CO2E_KG feature with it (``operators/candidate_kernel.py``), the planner gives every shipment its
``co2e_kg`` with it (``Planner.shipments``), decisions carry that figure rounded to the gram
(``round_kg``) and the evaluation sums the same shipments' figures: a routing is scored, reported
and judged on one number.

    >>> from operators.network import Service
    >>> pac = Service("correios/pac", "correios", "pac", "standard", 17.5, 2.1, 0.95, 100.0)
    >>> shipment_co2e_g(500.0, 2.0, pac)  # 500 km x 0.002 t x 100 g/tkm
    100.0
"""

from __future__ import annotations

import math
from typing import Protocol

from numba import njit

__all__ = ["G_PER_KG", "KG_PER_TONNE", "co2e_g", "round_kg", "shipment_co2e_g"]

KG_PER_TONNE = 1000.0
G_PER_KG = 1000.0


@njit(cache=True, nogil=True)
def co2e_g(distance_km: float, weight_kg: float, g_per_tkm: float) -> float:
    """km x tonnes x g/tkm: the tonne-km formula, unchecked (the kernel's inner loop calls it)."""
    return distance_km * (weight_kg / KG_PER_TONNE) * g_per_tkm


def round_kg(kg: float) -> float:
    """kg CO2e to the gram: finer digits are noise next to the factors' own precision."""
    return round(kg, 3)


class HasFactor(Protocol):
    """Anything with an emission factor: ``operators.network.Service`` is one."""

    @property
    def co2e_g_per_tkm(self) -> float: ...


def shipment_co2e_g(distance_km: float, weight_kg: float, service: HasFactor) -> float:
    """Grams of CO2e to carry ``weight_kg`` over ``distance_km`` with ``service``.

    Negative or non-finite inputs raise ``ValueError``: a silent negative emission would make a
    routing look greener than it is.
    """
    factor = service.co2e_g_per_tkm
    for name, v in (("distance_km", distance_km), ("weight_kg", weight_kg), ("factor", factor)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ValueError(f"shipment_co2e_g: {name} must be a finite number >= 0; got {v!r}")
    return float(co2e_g(float(distance_km), float(weight_kg), float(factor)))
