"""The query surfaces over a real Redis: `GET /orders/<id>` on a real HTTP server, and the
`fulfil order` command, text and JSON."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import orjson
import pytest

from fulfil.cli import main
from fulfil.order_query import OrderServer, lookup
from operators.lifecycle import Source, parse
from state.lifecycle import LifecycleStore
from state.redis_client import connect
from tests.test_tracking.helpers import T0, decision, order_event, tracking

PREFIX = "fq"


@pytest.fixture
def store(redis_url) -> LifecycleStore:
    """o-1 created, routed, shipped — as the tracking flow would have stored it."""
    s = LifecycleStore(connect(redis_url), PREFIX)
    src = Source("t", 0, 0, T0)
    parsed = [parse("orders", orjson.dumps(order_event("order.created", "o-1", T0, "e-1")), src),
              parse("decisions", orjson.dumps(decision("o-1", 1, "routed", T0 + 20)), src),
              parse("carrier-status", orjson.dumps(tracking("o-1", "picked_up", T0 + 9000, "t")),
                    src),
              parse("orders", orjson.dumps(order_event("order.created", "a/b c", T0, "e-2")),
                    src)]
    s.write([e for p in parsed for e in p.entries], [p.decision for p in parsed if p.decision])
    return s


def _utc(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(ms / 1000))


def _get(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            assert resp.headers["Content-Type"] == "application/json"
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, orjson.loads(err.read())


def test_should_answer_an_orders_timeline_as_json_and_404_for_an_unknown_one(store):
    with OrderServer(store, "127.0.0.1", 0) as server:
        assert server.server_address[0] == "127.0.0.1"
        status, body = _get(server.port, "/orders/o-1")
        assert status == 200
        assert set(body) == {"order_id", "events", "status", "current_decision"}
        assert body["order_id"] == "o-1" and body["status"] == "shipped"
        assert [e["step"] for e in body["events"]] == ["received", "routed", "shipped"]
        assert body["events"][1] == {
            "at": T0 + 20, "step": "routed", "version": 1, "status": "routed", "nodes": ["N01"],
            "carriers": ["correios/pac"], "reasons": ["single-node", "on-time"],
            "note": f"eta {_utc(T0 + 20 + 2 * 86_400_000)} on time", "source": "decisions",
            "ref": "o-1:v1"}
        assert body["current_decision"]["decision_id"] == "o-1:v1"
        assert body["current_decision"]["shipments"][0]["node_id"] == "N01"
        assert _get(server.port, "/orders/a%2Fb%20c")[1]["order_id"] == "a/b c"  # any id
        assert _get(server.port, "/orders/nope") == (
            404, {"error": "unknown order", "order_id": "nope"})
        assert _get(server.port, "/orders/bad%09id")[0] == 400
        assert _get(server.port, "/nothing")[0] == 404
        assert _get(server.port, "/healthz") == (200, {"ok": True})


def test_should_say_503_without_details_when_redis_is_gone():
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis(host="127.0.0.1", port=1, password="hunter2",
                         socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    dead_store = LifecycleStore(client, PREFIX)
    with OrderServer(dead_store, "127.0.0.1", 0) as server:
        status, body = _get(server.port, "/orders/o-1")
    assert (status, body) == (503, {"error": "read model unavailable"})


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    return info.value.code, out, err


def test_should_print_the_timeline_as_a_table_or_as_the_endpoints_json(store, redis_url,
                                                                       capsys, monkeypatch):
    monkeypatch.setenv("FULFIL_REDIS_PREFIX", PREFIX)
    code, out, _ = _cli(capsys, "order", "o-1", "--redis", redis_url)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("order o-1  status shipped  current decision o-1:v1 (routed)")
    assert lines[1].split()[:3] == ["time", "(UTC)", "step"]
    assert [ln.split()[2] for ln in lines[2:]] == ["received", "routed", "shipped"]
    assert "N01 correios/pac" in lines[3] and "single-node" in lines[3]
    code, out, _ = _cli(capsys, "order", "o-1", "--redis", redis_url, "--json")
    assert code == 0 and orjson.loads(out) == lookup(store, "o-1")
    code, out, err = _cli(capsys, "order", "nope", "--redis", redis_url)
    assert code == 1 and out == "" and "no trace of order 'nope'" in err
