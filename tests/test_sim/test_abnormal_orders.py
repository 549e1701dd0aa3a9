"""Scripted abnormal orders (`AbnormalOrders`): the simulator's ground truth for the watchtower's
abnormal-orders alerts and the router's flags, checked with the same pure checks both use."""

from __future__ import annotations

import orjson
import pytest

from fulfil.sim.catalogue import load_catalogue
from fulfil.sim.scenario import AbnormalOrders, Scenario, ScenarioError
from fulfil.sim.workload import Workload, stamp
from operators.network import load_default
from operators.watch.abnormal import address_problem, fingerprint
from operators.watch.facts import NetInfo
from operators.watch.settings import AbnormalSettings

NET = load_default()


def scripted(*disruptions: AbnormalOrders) -> tuple[Workload, dict[str, dict]]:
    sc = Scenario.steady(20.0, 12.0, invalid_rate=0.0, disruptions=disruptions)
    wl = Workload(NET, load_catalogue(sc.sku_count, sc.seed, zipf_s=sc.zipf_s), sc)
    events = wl.events_at(0.0, sc.duration_s)
    orders = {e.key: orjson.loads(stamp(e.value, 1)) for e in events if "-abn" in e.key}
    return wl, orders


def test_duplicates_repeat_customer_items_and_address_on_another_channel() -> None:
    wl, orders = scripted(AbnormalOrders("duplicate", 3, start_s=2.0, end_s=5.0))
    (truth,) = wl.ground_truth()
    assert truth["kind"] == "abnormal_orders" and len(truth["order_ids"]) == 3
    for dup in truth["order_ids"]:
        first, second = orders[dup[:-1]], orders[dup]
        assert first["channel"] != second["channel"]
        assert fingerprint(first["customer"]["id"], first["lines"], first["destination"]) == \
            fingerprint(second["customer"]["id"], second["lines"], second["destination"])


def test_quantity_outliers_and_inconsistent_addresses() -> None:
    wl, orders = scripted(AbnormalOrders("quantity", 2, start_s=1.0, qty=90),
                          AbnormalOrders("address", 4, start_s=6.0, end_s=10.0))
    qty, addr = wl.ground_truth()
    assert [orders[i]["lines"][0]["qty"] for i in qty["order_ids"]] == [90, 90]
    net, cfg = NetInfo(NET), AbnormalSettings()
    for i in addr["order_ids"]:
        why = address_problem(orders[i]["destination"], net, cfg)
        assert why is not None and why.startswith("inconsistent"), orders[i]["destination"]
    assert Scenario.from_dict(wl.scenario.to_dict()) == wl.scenario


def test_a_bad_abnormal_script_is_refused() -> None:
    with pytest.raises(ScenarioError, match="abnormal"):
        Scenario.steady(1.0, 1.0, disruptions=(AbnormalOrders("typo", 1, start_s=0.0),))
