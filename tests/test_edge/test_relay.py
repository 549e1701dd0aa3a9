"""The test relay itself: it forwards, it cuts only the WAN, and it lets the WAN back."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from fulfil.edge.relay import Relay, kafka_client_id


def _echo_server() -> tuple[socket.socket, int]:
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=_echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


def _echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(4096):
            conn.sendall(data)


def _frame(client_id: str, body: bytes = b"") -> bytes:
    payload = struct.pack(">hhih", 18, 3, 7, len(client_id)) + client_id.encode() + body
    return struct.pack(">i", len(payload)) + payload


def _roundtrip(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = s.recv(4096)
            if not chunk:
                raise ConnectionError("closed by the relay")
            got += chunk
        return got


def test_the_client_id_is_read_from_any_kafka_request_header():
    assert kafka_client_id(_frame("fulfil-edge-link-sul-up")[4:]) == "fulfil-edge-link-sul-up"
    assert kafka_client_id(struct.pack(">hhih", 18, 3, 7, -1)) is None  # null client id
    assert kafka_client_id(b"\x00\x12") is None


def test_a_cut_drops_the_wan_and_keeps_the_lan():
    srv, port = _echo_server()
    with Relay(("127.0.0.1", port), wan_clients="fulfil-edge") as relay:
        wan, lan = _frame("fulfil-edge-up", b"x" * 100), _frame("rdkafka", b"y" * 100)
        assert _roundtrip(relay.port, wan) == wan and _roundtrip(relay.port, lan) == lan
        with socket.create_connection(("127.0.0.1", relay.port), timeout=2) as held:
            held.sendall(wan)
            assert held.recv(4096)
            relay.cut()
            assert relay.is_down
            assert held.recv(4096) == b""  # the open WAN connection was dropped
        with pytest.raises(ConnectionError):
            _roundtrip(relay.port, wan)  # and new ones are refused
        assert _roundtrip(relay.port, lan) == lan  # the centre's own clients never notice
        relay.restore()
        assert _roundtrip(relay.port, wan) == wan
        assert relay.stats.refused >= 1 and relay.stats.aborted >= 1
    srv.close()


def test_a_plain_relay_treats_every_connection_as_wan():
    srv, port = _echo_server()
    with Relay(("127.0.0.1", port)) as relay:
        assert _roundtrip(relay.port, b"PING\r\n") == b"PING\r\n"
        relay.cut()
        with pytest.raises(ConnectionError):
            _roundtrip(relay.port, b"PING\r\n")
        relay.restore()
        assert _roundtrip(relay.port, b"PING\r\n") == b"PING\r\n"
    srv.close()
