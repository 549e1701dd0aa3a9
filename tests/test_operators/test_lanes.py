"""Lane health: keyed-state updates and their expansion onto the lane grid."""

from __future__ import annotations

import numpy as np

from operators.lanes import LaneHealth, health_arrays, lane_key, update_lane

REGIONS = {"RJ": 0, "SP": 1}
SERVICES = {"correios/pac": 0, "correios/sedex": 1, "jadlog/package": 2}


def ev(status: str, at: int, **kw) -> dict:
    return {"type": "lane.status", "carrier": "correios", "status": status, "occurred_at": at, **kw}


def test_latest_event_by_event_time_wins_and_replays_publish_nothing():
    state, out = update_lane(None, ev("delayed", 10, dest_region="RJ", delay_hours=6))
    assert out is not None and out.delay_hours == 6 and out.key == "correios|*|*|RJ"
    older, nothing = update_lane(state, ev("normal", 5, dest_region="RJ"))
    assert older == state and nothing is None  # out of order: ignored
    _, nothing = update_lane(state, ev("delayed", 10, dest_region="RJ", delay_hours=6))
    assert nothing is None  # a replay changes nothing
    _, out = update_lane(state, ev("normal", 20, dest_region="RJ", delay_hours=6))
    assert out is not None and out.delay_hours == 0.0


def test_wildcards_expand_and_outages_block_only_their_lanes():
    outage = LaneHealth(lane_key(ev("outage", 1, dest_region="RJ")), "outage", 0.0, 1.0, "", 1,
                        None)
    delay = LaneHealth("correios|sedex|SP|*", "delayed", 12.0, 1.0, "weather", 1, None)
    delay_hours, blocked = health_arrays([outage, delay], REGIONS, SERVICES, now_ms=2)
    assert blocked[:, 0, 0].all() and blocked[:, 0, 1].all()  # every correios service to RJ
    assert not blocked[:, 1, :].any() and not blocked[:, :, 2].any()  # SP and jadlog untouched
    assert delay_hours[1, :, 1].tolist() == [12.0, 12.0]  # sedex out of SP, to anywhere
    assert delay_hours[0, :, 1].tolist() == [0.0, 0.0]


def test_expired_and_unknown_records_are_ignored():
    expired = LaneHealth("correios|*|*|RJ", "outage", 0.0, 1.0, "", 1, valid_until=100)
    unknown = LaneHealth("dhl|*|*|RJ", "outage", 0.0, 1.0, "", 1, None)
    nowhere = LaneHealth("correios|*|*|XX", "outage", 0.0, 1.0, "", 1, None)
    delay_hours, blocked = health_arrays([expired, unknown, nowhere], REGIONS, SERVICES, 100)
    assert not blocked.any() and not np.any(delay_hours)


def test_a_routine_normal_never_erases_a_declared_forecast_but_an_explicit_one_lifts_it():
    t0 = 1_700_000_000_000
    hour = 3_600_000
    strike = {"type": "lane.status", "event_id": "s", "carrier": "jadlog", "status": "outage",
              "occurred_at": t0, "valid_from": t0 + 24 * hour, "valid_until": t0 + 72 * hour}
    state, published = update_lane(None, strike)
    assert published is not None and state is not None and state.status == "outage"
    heartbeat = {"type": "lane.status", "event_id": "h", "carrier": "jadlog", "status": "normal",
                 "occurred_at": t0 + hour}
    for at in (t0 + hour, t0 + 30 * hour):  # before the window, and while it runs
        kept, none = update_lane(state, {**heartbeat, "occurred_at": at})
        assert (kept, none) == (state, None)
    after, pub = update_lane(state, {**heartbeat, "occurred_at": t0 + 73 * hour})
    assert pub is not None and after.status == "normal"  # the window is over: normal again
    lifted, pub = update_lane(state, {**heartbeat, "occurred_at": t0 + 2 * hour,
                                      "valid_from": t0 + 2 * hour})
    assert pub is not None and lifted.status == "normal"  # an explicit "normal from now"
    open_ended = {**strike, "valid_from": None, "valid_until": None}
    current, _ = update_lane(None, open_ended)
    cleared, pub = update_lane(current, {**heartbeat, "occurred_at": t0 + hour})
    assert pub is not None and cleared.status == "normal"  # no window declared: normal clears
