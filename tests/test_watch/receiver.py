"""A real local HTTP server that records every request, standing in for the alert receivers.

Each path answers like the service it stands for (PagerDuty 202 + status, Slack "ok", the bots
200 + code 0), can be switched down (503) and back up, can fail its first N requests, and can
answer slowly, so tests exercise the bridge's retries, recovery and restarts over real sockets.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

OK = {"pd": (202, b'{"status":"success","message":"Event processed","dedup_key":"x"}'),
      "slack": (200, b"ok"), "feishu": (200, b'{"code":0,"msg":"success","data":{}}'),
      "dingtalk": (200, b'{"errcode":0,"errmsg":"ok"}'),
      "wecom": (200, b'{"errcode":0,"errmsg":"ok"}'), "hook": (204, b"")}


@dataclass
class Request:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    status: int
    at: float

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Behaviour:
    down: bool = False
    fail_first: int = 0
    delay_s: float = 0.0
    calls: int = 0


@dataclass
class Receiver:
    """Start with `with Receiver() as r:`; `r.url("slack")` is the webhook of the slack path."""

    requests: list[Request] = field(default_factory=list)
    behaviour: dict[str, Behaviour] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Receiver:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                name = parts.path.strip("/").split("/")[0]
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                b = owner.behaviour.setdefault(name, Behaviour())
                with owner._lock:
                    b.calls += 1
                    failing = b.down or b.calls <= b.fail_first
                if b.delay_s:
                    time.sleep(b.delay_s)
                status, answer = (503, b"unavailable") if failing else OK.get(name, (200, b"{}"))
                with owner._lock:
                    owner.requests.append(Request(parts.path, parse_qs(parts.query),
                                                  dict(self.headers), body, status, time.time()))
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, name: str, query: str = "") -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/{name}{query}"

    def set(self, name: str, **kw: Any) -> None:
        b = self.behaviour.setdefault(name, Behaviour())
        for key, value in kw.items():
            setattr(b, key, value)

    def accepted(self, name: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.strip("/").split("/")[0] == name
                    and r.status < 300]

    def failed(self, name: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.strip("/").split("/")[0] == name
                    and r.status >= 300]
