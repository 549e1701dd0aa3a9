"""A TCP relay that stands in for the WAN between an edge site and the centre, and can be cut.

Why it exists: the edge must be proven to keep selling through a broken link and to converge when
the link returns, on real brokers and real Redis servers. The embedded broker keeps its log in
memory, so the link is broken *between* the processes, never by stopping a server: everything the
edge's links send to the centre passes through a `Relay`, and a test (or the outage benchmark)
calls `cut()` and `restore()` on it.

Kafka clients connect to the address a broker *advertises*, not to the one they bootstrapped
from, so the centre's broker advertises the relay's port (`fulfil.infra.start_broker(...,
advertised_port=...)`), and every Kafka client of the centre — its own engine included — goes
through the relay. To cut only the WAN, a Kafka relay classifies each connection by the
`client.id` in its first request (every Kafka request header starts with api key, api version,
correlation id and the client id as an int16-length string, whatever the request version):
connections whose client id starts with `wan_clients` are the edge's (cut and restored), the
others are the centre's own (never cut). A relay without `wan_clients` (the one in front of the
centre's Redis) treats every connection as WAN.

`cut()` aborts the WAN connections at once (the peer sees a reset, as when a router drops the
session) and refuses new ones until `restore()`; `flap(...)` alternates the two in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
import time
from dataclasses import dataclass, field

#: The first Kafka request of a connection (ApiVersions) is tiny; a bigger first frame is not a
#: Kafka client we know, and is classified as WAN.
_MAX_PEEK = 1 << 20
_CHUNK = 1 << 16


def kafka_client_id(frame: bytes) -> str | None:
    """The client id of one Kafka request frame body (without its 4-byte size), or None.

    >>> body = struct.pack(">hhih", 18, 3, 1, 4) + b"edge"
    >>> kafka_client_id(body)
    'edge'
    """
    if len(frame) < 10:
        return None
    (length,) = struct.unpack_from(">h", frame, 8)
    if length < 0 or 10 + length > len(frame):
        return None
    return frame[10:10 + length].decode("utf-8", "replace")


@dataclass
class RelayStats:
    """What went through the relay (for reports and for tests that prove the WAN was used)."""

    wan_connections: int = 0
    lan_connections: int = 0
    refused: int = 0
    aborted: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    cuts: list[float] = field(default_factory=list)


class Relay:
    """Forwards `listen_host:port` to `target`; see the module docstring.

    Runs its own asyncio loop in a daemon thread; every public method is thread-safe and
    synchronous (it returns once the change is in effect).
    """

    def __init__(self, target: tuple[str, int], *, listen_host: str = "127.0.0.1",
                 port: int = 0, wan_clients: str | None = None) -> None:
        self.target = target
        self.listen_host = listen_host
        self.port = port
        self.wan_clients = wan_clients
        self.stats = RelayStats()
        self._down = False
        self._wan: set[asyncio.StreamWriter] = set()
        self._all: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="relay", daemon=True)
        self._flapper: threading.Thread | None = None
        self._stop_flap = threading.Event()

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> Relay:
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        self.stop_flapping()
        with contextlib.suppress(Exception):
            self._call(self._close_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def is_down(self) -> bool:
        return self._down

    # -- the switch ---------------------------------------------------------------------------

    def cut(self) -> None:
        """Drop every WAN connection now and refuse new ones until `restore()`."""
        self.stats.cuts.append(time.monotonic())
        self._call(self._cut())

    def restore(self) -> None:
        """Let WAN connections through again (clients reconnect by themselves)."""
        self._down = False

    def flap(self, down_s: float, up_s: float, cycles: int | None = None) -> None:
        """Cut for `down_s`, restore for `up_s`, repeatedly (in a thread) until stopped."""
        self.stop_flapping()
        self._stop_flap.clear()

        def run() -> None:
            n = 0
            while not self._stop_flap.is_set() and (cycles is None or n < cycles):
                self.cut()
                self._stop_flap.wait(down_s)
                self.restore()
                self._stop_flap.wait(up_s)
                n += 1

        self._flapper = threading.Thread(target=run, name="relay-flap", daemon=True)
        self._flapper.start()

    def stop_flapping(self) -> None:
        """Stop a `flap` and leave the link up."""
        self._stop_flap.set()
        if self._flapper is not None:
            self._flapper.join(10)
            self._flapper = None
        self.restore()

    # -- inside the loop ----------------------------------------------------------------------

    def _call(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.listen_host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _cut(self) -> None:
        self._down = True
        for writer in list(self._wan):
            self.stats.aborted += 1
            writer.transport.abort()
        self._wan.clear()

    async def _close_all(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._all):
            writer.transport.abort()
        # aborted transports end every pump by themselves; cancelling the handlers instead trips
        # an asyncio 3.11 callback that cannot take a cancelled task
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if tasks:
            await asyncio.wait(tasks, timeout=2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = b""
        wan = self.wan_clients is None
        try:
            if not wan:
                head = await reader.readexactly(4)
                (size,) = struct.unpack(">i", head)
                body = await reader.readexactly(size) if 0 < size <= _MAX_PEEK else b""
                first = head + body
                client = kafka_client_id(body)
                wan = client is None or client.startswith(self.wan_clients or "")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.transport.abort()
            return
        if wan and self._down:
            self.stats.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._all.update((writer, up_writer))
        if wan:
            self.stats.wan_connections += 1
            self._wan.update((writer, up_writer))
        else:
            self.stats.lan_connections += 1
        if first:
            up_writer.write(first)
            self.stats.bytes_up += len(first)
        try:
            await asyncio.gather(self._pump(reader, up_writer, True),
                                 self._pump(up_reader, writer, False))
        finally:
            for w in (writer, up_writer):
                self._wan.discard(w)
                self._all.discard(w)
                w.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    up: bool) -> None:
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                writer.write(data)
                if up:
                    self.stats.bytes_up += len(data)
                else:
                    self.stats.bytes_down += len(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()
