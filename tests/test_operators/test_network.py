"""The network model (operators.network) and the shipped Olist network (fulfil.netbuild).

Expectations are written independently of the code under test (coverage sets, reference
distances, hand-computed fallbacks), so a regression in either shows up as a failure.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest

from fulfil import netbuild
from operators.network import (
    Network,
    NetworkError,
    default_network_path,
    haversine_km,
    load_default,
)

LOGGI = {"SP", "RJ", "MG", "ES", "PR", "SC", "RS", "DF"}
NOT_JADLOG = {"AC", "AP", "RR"}
SAO_PAULO = (-23.5505, -46.6333)
RIO = (-22.9068, -43.1729)
MANAUS = (-3.1190, -60.0217)


@pytest.fixture(scope="module")
def net() -> Network:
    return load_default()


@pytest.fixture
def network_dict_factory():
    """A fresh, mutable copy of the shipped network's dict, to break in one place per test."""
    raw = default_network_path().read_bytes()
    return lambda: orjson.loads(raw)


# ---------------------------------------------------------------- the shipped file


def test_default_network_loads_with_forty_nodes_in_known_regions(net: Network) -> None:
    assert len(net.nodes) == 40
    assert [n.id for n in net.nodes] == [f"N{i:02d}" for i in range(1, 41)]
    assert Counter(n.kind for n in net.nodes) == {"warehouse": 12, "store": 28}
    assert len(net.regions) == 27 and list(net.regions) == sorted(net.regions)
    assert all(n.region in net.region_index for n in net.nodes)
    # Warehouses are the largest clusters: their capacity is never below a store's.
    caps = {
        k: [n.capacity_per_day for n in net.nodes if n.kind == k] for k in ("warehouse", "store")
    }
    assert min(caps["warehouse"]) >= 2000 and min(caps["store"]) >= 300
    assert min(caps["warehouse"]) >= max(caps["store"])
    assert re.fullmatch(r"olist-br-[0-9a-f]{10}", net.version)
    assert "Olist" in net.attribution and "CC BY-NC-SA 4.0" in net.attribution


def test_default_network_nodes_have_state_timezones(net: Network) -> None:
    expected = {"AM": -4, "RR": -4, "RO": -4, "MT": -4, "MS": -4, "AC": -5}
    for node in net.nodes:
        assert node.utc_offset_hours == expected.get(node.region, -3), node
        assert -34 < node.lat < 6 and -74 < node.lng < -28, node


def test_arrays_have_the_documented_shapes_and_dtypes(net: Network) -> None:
    n, r, s = len(net.nodes), len(net.regions), len(net.services)
    assert s == 6
    node_arrays = [
        net.node_lat, net.node_lng, net.node_capacity, net.node_handling_cost,
        net.node_handling_hours, net.node_cutoff_hour, net.node_utc_offset,
    ]  # fmt: skip
    for a in node_arrays:
        assert a.shape == (n,) and a.dtype == np.float64 and a.flags.c_contiguous
    assert net.node_region.shape == (n,) and net.node_region.dtype == np.int64
    for a in (net.service_base_cost, net.service_per_kg, net.service_per_100km, net.service_co2e):
        assert a.shape == (s,) and a.dtype == np.float64
    for a in (net.region_lat, net.region_lng, net.region_demand):
        assert a.shape == (r,) and a.dtype == np.float64
    for a in (net.lane_transit_mean, net.lane_transit_p90):
        assert a.shape == (r, r, s) and a.dtype == np.float64 and a.flags.c_contiguous
    assert net.region_demand.sum() == pytest.approx(1.0, abs=1e-9)
    assert net.node_region[0] == net.region_index[net.nodes[0].region]
    assert net.node_lat[5] == net.nodes[5].lat
    with pytest.raises(ValueError):  # shared through load_default's cache: must not drift
        net.node_lat[0] = 0.0


def test_lanes_are_nan_exactly_where_the_service_does_not_cover(net: Network) -> None:
    regions = set(net.regions)
    coverage = {
        "correios": regions,
        "jadlog": regions - NOT_JADLOG,
        "loggi": LOGGI,
    }
    for si, svc in enumerate(net.services):
        served = coverage[svc.carrier]
        for oi, o in enumerate(net.regions):
            for ti, t in enumerate(net.regions):
                covered = o in served and t in served
                assert np.isnan(net.lane_transit_mean[oi, ti, si]) == (not covered), (o, t, svc.id)
    assert np.array_equal(np.isnan(net.lane_transit_mean), np.isnan(net.lane_transit_p90))
    am, loggi = (
        net.region_index["AM"],
        [net.service_index["loggi/standard"], net.service_index["loggi/express"]],
    )
    assert np.isnan(net.lane_transit_mean[am][:, loggi]).all()


def test_lane_times_follow_distance_and_level(net: Network) -> None:
    m, p = net.lane_transit_mean, net.lane_transit_p90
    ok = ~np.isnan(m)
    assert (p[ok] >= m[ok]).all()
    sp, rj, am = (net.region_index[c] for c in ("SP", "RJ", "AM"))
    pac, sedex = net.service_index["correios/pac"], net.service_index["correios/sedex"]
    assert m[sp, sp, pac] == 2.0 and m[sp, sp, sedex] == 1.0
    assert m[sp, rj, pac] < m[sp, am, pac]  # farther is slower
    assert m[sp, am, sedex] < m[sp, am, pac]  # express is faster
    # The North is less predictable: a wider p90 band than the formula alone gives.
    assert p[sp, am, pac] == pytest.approx(round(m[sp, am, pac] * 1.35 + 1.5, 1))
    assert p[sp, rj, pac] == pytest.approx(round(m[sp, rj, pac] * 1.35 + 0.5, 1))


def test_shipped_version_is_the_content_hash(net: Network) -> None:
    body = net.to_dict()
    del body["version"]
    digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
    assert net.version == f"olist-br-{digest[:10]}"  # a hand edit without a rebuild fails here


# ---------------------------------------------------------------- locate


def test_locate_postal_only_finds_sao_paulo(net: Network) -> None:
    lat, lng, region = net.locate({"postal_code": "01310"})
    assert net.regions[region] == "SP"
    assert haversine_km(lat, lng, *SAO_PAULO) < 50


def test_locate_restores_leading_zeros_dropped_by_olist(net: Network) -> None:
    assert net.locate({"postal_code": "1310"}) == net.locate({"postal_code": "01310"})
    assert net.locate({"postal_code": "01310100"}) == net.locate({"postal_code": "01310"})
    assert net.locate({"postal_code": "1310100"}) == net.locate({"postal_code": "01310"})


def test_locate_postal_only_finds_rio(net: Network) -> None:
    lat, lng, region = net.locate({"postal_code": "20040020"})  # centro, Rio de Janeiro
    assert net.regions[region] == "RJ"
    assert haversine_km(lat, lng, *RIO) < 50


def test_locate_falls_back_to_two_then_one_digit(net: Network) -> None:
    table = net.postal_prefixes
    two = {k[:2] for k in table}
    missing = next(
        f"{i:03d}" for i in range(1000) if f"{i:03d}" not in table and f"{i:03d}"[:2] in two
    )
    siblings = [v for k, v in table.items() if k[:2] == missing[:2]]
    votes = Counter(v[2] for v in siblings)
    lat, lng, region = net.locate({"postal_code": missing + "00"})
    assert lat == pytest.approx(sum(v[0] for v in siblings) / len(siblings))
    assert lng == pytest.approx(sum(v[1] for v in siblings) / len(siblings))
    assert votes[region] == max(votes.values())

    ones = {k[:1] for k in table}
    no_two = next(
        (f"{i:02d}" for i in range(100) if f"{i:02d}" not in two and f"{i:02d}"[0] in ones), None
    )
    if no_two is not None:
        cousins = [v for k, v in table.items() if k[0] == no_two[0]]
        got = net.locate({"postal_code": no_two + "000"})
        assert got is not None
        assert got[0] == pytest.approx(sum(v[0] for v in cousins) / len(cousins))


def test_locate_with_coordinates(net: Network) -> None:
    # Coordinates alone: the nearest region centroid gives the region.
    lat, lng, region = net.locate({"lat": MANAUS[0], "lng": MANAUS[1]})
    assert (lat, lng, net.regions[region]) == (MANAUS[0], MANAUS[1], "AM")
    # Coordinates + postal code: the postal table gives the region.
    got = net.locate({"lat": -23.56, "lng": -46.65, "postal_code": "01310", "country": "BR"})
    assert got == (-23.56, -46.65, net.region_index["SP"])
    assert all(type(x) is t for x, t in zip(got, (float, float, int), strict=True))


def test_locate_explicit_region_wins(net: Network) -> None:
    rj = net.region_index["RJ"]
    assert net.locate({"lat": -23.56, "lng": -46.65, "region": "RJ"})[2] == rj
    lat, lng, region = net.locate({"postal_code": "01310", "region": "RJ"})
    assert region == rj and haversine_km(lat, lng, *SAO_PAULO) < 50
    # An unknown region code is ignored rather than trusted.
    assert net.locate({"postal_code": "01310", "region": "ZZ"})[2] == net.region_index["SP"]
    # A known region alone resolves to its centroid.
    ac = net.region_index["AC"]
    assert net.locate({"region": "AC"}) == (net.region_lat[ac], net.region_lng[ac], ac)


@pytest.mark.parametrize(
    "destination",
    [{}, {"country": "BR"}, {"postal_code": "abc"}, {"postal_code": ""}, {"region": "ZZ"},
     {"lat": -23.5}],
)  # fmt: skip
def test_locate_unknown_is_none(net: Network, destination: dict) -> None:
    assert net.locate(destination) is None


# ---------------------------------------------------------------- haversine


def test_haversine_sao_paulo_rio() -> None:
    assert haversine_km(*SAO_PAULO, *RIO) == pytest.approx(357, abs=5)
    assert haversine_km(*SAO_PAULO, *SAO_PAULO) == 0.0
    assert isinstance(haversine_km(*SAO_PAULO, *RIO), float)


def test_haversine_vectorized_matches_scalar() -> None:
    rng = np.random.default_rng(1)
    lat1, lat2 = rng.uniform(-34, 5, 50), rng.uniform(-34, 5, 50)
    lng1, lng2 = rng.uniform(-74, -34, 50), rng.uniform(-74, -34, 50)
    vec = haversine_km(lat1, lng1, lat2, lng2)
    ref = [
        haversine_km(float(a), float(b), float(c), float(d))
        for a, b, c, d in zip(lat1, lng1, lat2, lng2, strict=True)
    ]
    np.testing.assert_allclose(vec, ref, rtol=1e-12)
    # Broadcasting one point against many, as the router does per order.
    np.testing.assert_allclose(
        haversine_km(lat1, lng1, *SAO_PAULO),
        [haversine_km(float(a), float(b), *SAO_PAULO) for a, b in zip(lat1, lng1, strict=True)],
    )


# ---------------------------------------------------------------- validation and round trip


def _drop_lat(d: dict) -> None:
    del d["nodes"][0]["lat"]


def _unknown_service(d: dict) -> None:
    d["lanes"][3]["service"] = "dhl/overnight"


def _unknown_node_region(d: dict) -> None:
    d["nodes"][2]["region"] = "XX"


def _bad_capacity(d: dict) -> None:
    d["nodes"][1]["capacity_per_day"] = -5


def _duplicate_node(d: dict) -> None:
    d["nodes"][7]["id"] = d["nodes"][0]["id"]


def _demand_sum(d: dict) -> None:
    d["regions"][0]["demand"] += 0.1


def _p90_below_mean(d: dict) -> None:
    d["lanes"][0]["transit_p90"] = d["lanes"][0]["transit_mean"] - 1


def _bad_level(d: dict) -> None:
    d["services"][0]["level"] = "overnight"


def _postal_region(d: dict) -> None:
    d["postal_prefixes"]["013"] = [-23.5, -46.6, "XX"]


@pytest.mark.parametrize(
    ("breaker", "field"),
    [
        (_drop_lat, "nodes[0].lat"),
        (_unknown_service, "lanes[3].service"),
        (_unknown_node_region, "nodes[2].region"),
        (_bad_capacity, "nodes[1].capacity_per_day"),
        (_duplicate_node, "nodes[7].id"),
        (_demand_sum, "demand"),
        (_p90_below_mean, "lanes[0].transit_p90"),
        (_bad_level, "services[0].level"),
        (_postal_region, "postal_prefixes['013']"),
    ],
)
def test_load_rejects_a_broken_file_naming_the_field(
    tmp_path: Path, network_dict_factory, breaker, field: str
) -> None:
    d = network_dict_factory()
    breaker(d)
    path = tmp_path / "net.json"
    path.write_bytes(orjson.dumps(d))
    with pytest.raises(NetworkError, match=re.escape(field)):
        Network.load(path)


def test_load_rejects_non_json(tmp_path: Path) -> None:
    path = tmp_path / "net.json"
    path.write_text('{"version": ')
    with pytest.raises(NetworkError, match="not valid JSON"):
        Network.load(path)
    with pytest.raises(NetworkError, match="cannot read"):
        Network.load(tmp_path / "absent.json")


def test_from_dict_to_dict_round_trips(net: Network) -> None:
    again = Network.from_dict(net.to_dict())
    assert again.to_dict() == net.to_dict()
    assert again.nodes == net.nodes and again.services == net.services
    np.testing.assert_array_equal(again.lane_transit_mean, net.lane_transit_mean)
    np.testing.assert_array_equal(again.lane_transit_p90, net.lane_transit_p90)
    assert again.postal_prefixes == net.postal_prefixes


def test_null_lane_means_uncovered(network_dict_factory) -> None:
    d = network_dict_factory()
    lane = d["lanes"][0]
    lane["transit_mean"] = lane["transit_p90"] = None
    n = Network.from_dict(d)
    o, t, s = (n.region_index[lane["origin"]], n.region_index[lane["dest"]],
               n.service_index[lane["service"]])  # fmt: skip
    assert np.isnan(n.lane_transit_mean[o, t, s]) and np.isnan(n.lane_transit_p90[o, t, s])


# ---------------------------------------------------------------- the builder


def test_kmeans_recovers_separated_blobs_deterministically() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    xy = np.concatenate([c + rng.normal(0, 1, (30, 2)) for c in centres])
    labels = netbuild.kmeans(xy, 3, seed=7)
    assert len(set(labels.tolist())) == 3
    for b in range(3):
        assert len(set(labels[b * 30 : (b + 1) * 30].tolist())) == 1
    np.testing.assert_array_equal(labels, netbuild.kmeans(xy, 3, seed=7))


def test_builder_is_deterministic_and_reproduces_the_shipped_file(
    shared_dir: Path, tmp_path: Path
) -> None:
    olist = shared_dir / "data" / "olist"
    out = tmp_path / "net.json"
    assert (
        netbuild.main(["--olist", str(olist), "--out", str(out), "--nodes", "40", "--seed", "7"])
        == 0
    )
    assert out.read_bytes() == default_network_path().read_bytes()
    assert netbuild.dumps(netbuild.build(olist)) == out.read_bytes()
    again = tmp_path / "again.json"  # as `fulfil network build ...` passes it on
    assert netbuild.main(["build", "--olist", str(olist), "--out", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()
    assert len(out.read_bytes()) < 400_000


def test_builder_other_seed_changes_only_the_nodes(shared_dir: Path) -> None:
    a = netbuild.build(shared_dir / "data" / "olist", nodes=10, seed=3)
    assert len(a.nodes) == 10 and sum(n.kind == "warehouse" for n in a.nodes) == 10
    default = load_default()
    assert a.regions == default.regions and a.postal_prefixes == default.postal_prefixes
    assert a.version != default.version
    assert not math.isnan(a.lane_transit_mean[0, 0, 0])
