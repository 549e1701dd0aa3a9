"""Where is my order, and why: the read model's two query surfaces.

* `fulfil order ORDER_ID [--json]` — `lookup` + `render_text` (or the JSON view);
* `GET /orders/<id>` served by `OrderServer` (run by `fulfil track`), answering
  `{"order_id", "status", "current_decision", "events": [...]}`, 404 for an unknown order.

The server is the standard library's threading HTTP server in a daemon thread: a handful of
lookups per second from customer-service tools needs nothing more, and it adds no dependency. It
binds to loopback unless told otherwise (`--http-addr`): the timeline names customers' orders and
destinations, so exposing it is a deliberate choice. Errors answer with a status and a short JSON
body; Redis URLs and passwords never appear in them.
"""

from __future__ import annotations

import logging
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from fulfil import tracking_metrics as tm
from operators.lifecycle import order_view, valid_id
from state.lifecycle import LifecycleStore

log = logging.getLogger("fulfil.orders")
ORDERS_PATH = "/orders/"


def lookup(store: LifecycleStore, order_id: str) -> dict[str, Any] | None:
    """The order's view (see `operators.lifecycle.order_view`), or None when it is unknown."""
    entries, decisions = store.read(order_id)
    if not entries and not decisions:
        return None
    return order_view(order_id, entries, decisions)


def _when(ms: int | None) -> str:
    if not isinstance(ms, int):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}"


def render_text(view: dict[str, Any]) -> str:
    """A table for people: one line per event, oldest first, times in UTC."""
    cur = view.get("current_decision")
    head = f"order {view['order_id']}  status {view.get('status') or '-'}"
    if cur:
        head += f"  current decision {cur['decision_id']} ({cur['status']})"
        if cur.get("estimated_delivery"):
            head += f"  eta {_when(cur['estimated_delivery'])} UTC"
        if cur.get("promised_by"):
            head += f"  promised {_when(cur['promised_by'])} UTC"
    rows = [("time (UTC)", "step", "v", "status", "where", "reasons / note")]
    for e in view["events"]:
        where = " ".join([*e["nodes"], *e["carriers"]])
        why = " ".join([*e["reasons"], *([e["note"]] if e["note"] else [])])
        rows.append((_when(e["at"]), e["step"], "" if e["version"] is None else str(e["version"]),
                     e["status"] or "", where, why))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [head]
    lines.extend("  " + "  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  "
                 + r[5] for r in rows)
    return "\n".join(line.rstrip() for line in lines)


class _Handler(BaseHTTPRequestHandler):
    server: OrderServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/healthz":
            self._send(HTTPStatus.OK, {"ok": True})
            return
        if not path.startswith(ORDERS_PATH):
            self._send(HTTPStatus.NOT_FOUND, {"error": "not found; use GET /orders/<order_id>"})
            return
        order_id = unquote(path[len(ORDERS_PATH):])
        if not valid_id(order_id):
            tm.ORDER_QUERIES.labels(outcome="bad-request").inc()
            self._send(HTTPStatus.BAD_REQUEST, {"error": "order id must be 1-256 characters "
                                                         "without control characters"})
            return
        try:
            view = lookup(self.server.store, order_id)
        except Exception as exc:  # Redis down: say so without details that could hold secrets
            tm.ORDER_QUERIES.labels(outcome="error").inc()
            log.warning("order lookup failed: %s", type(exc).__name__,
                        extra={"order_id": order_id, "step": "order-query"})
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "read model unavailable"})
            return
        if view is None:
            tm.ORDER_QUERIES.labels(outcome="unknown").inc()
            self._send(HTTPStatus.NOT_FOUND, {"error": "unknown order", "order_id": order_id})
            return
        tm.ORDER_QUERIES.labels(outcome="found").inc()
        self._send(HTTPStatus.OK, view)

    def _send(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        data = orjson.dumps(body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s", format % args)  # per request: DEBUG only


class OrderServer(ThreadingHTTPServer):
    """`GET /orders/<id>` and `GET /healthz` over one LifecycleStore, served in a daemon thread.

    `port=0` picks a free port (read `.port`). Use as a context manager or call `close()`.
    """

    daemon_threads = True

    def __init__(self, store: LifecycleStore, addr: str = "127.0.0.1", port: int = 9480) -> None:
        super().__init__((addr, port), _Handler)
        self.store = store
        self.port: int = self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, name="fulfil-orders-http",
                                        daemon=True)

    def start(self) -> OrderServer:
        self._thread.start()
        log.info("serving GET /orders/<id> on %s:%d", self.server_address[0], self.port,
                 extra={"step": "order-query"})
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self.shutdown()
            self._thread.join(timeout=5)
        self.server_close()

    def __enter__(self) -> OrderServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
