"""A real WebSocket server on 127.0.0.1 that speaks MEXC's contract protocol.

The network is closed here, and tests must not mock the exchange's socket, so this server plays
MEXC's part for tests, ``claire demo`` and benchmarks: it answers ``{"method":"ping"}`` with
``{"channel":"pong","data":<ms>}``, acknowledges ``sub.*``/``unsub.*`` with ``rs.<method>``, refuses
unknown contracts with ``rs.error``, drops a client that has not pinged for ``ping_timeout``
seconds, sends text or gzip-compressed binary frames, and plays a tape to subscribers at a speed
factor (from the ``autoplay_after``-th subscription on). :class:`Faults` are knobs for the
failures real exchanges produce; they may be changed while clients are connected.

    async with LocalMexcServer(tape=DEMO_TAPE, speed=60) as server:
        feed = MexcFeed(sink, config=FeedConfig(url=server.url))
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from adapters.mexc.tape import TapeEntry, read_tape
from aggregates.events import SYMBOL

log = logging.getLogger("claire.mexc.local_server")

_INTERVALS = {
    "Min1",
    "Min5",
    "Min15",
    "Min30",
    "Min60",
    "Hour4",
    "Hour8",
    "Day1",
    "Week1",
    "Month1",
}
_ROUTED = {"push.deal", "push.kline", "push.ticker", "push.depth", "push.funding.rate"}
Compression = Literal["request", "gzip", "text"]
Key = tuple[str, str | None]  # (topic, symbol): ("deal", "BTC_USDT"), ("tickers", None)


@dataclass
class Faults:
    """Failure knobs. ``disconnect_after``: cut each connection after that many pushes, at most
    ``disconnects`` times in all (None: always) — a disconnect storm. ``stall``: send nothing at
    all (no pushes, acks or pongs) yet keep the socket open. ``malformed_every``: send a broken
    frame before every Nth push. ``refuse_symbols``: answer their subscriptions with ``rs.error``.
    """

    disconnect_after: int | None = None
    disconnects: int | None = None
    abort: bool = False
    stall: bool = False
    answer_pings: bool = True
    malformed_every: int | None = None
    malformed_frame: str | bytes = '{"channel":"push.deal","symbol":"BTC_USDT","data":{"p":-1}}'
    refuse_symbols: set[str] = field(default_factory=set)


@dataclass
class ServerStats:
    connections: int = 0
    disconnects_injected: int = 0
    dropped_for_silence: int = 0
    pings: int = 0
    pushes: int = 0
    malformed_sent: int = 0
    subscribe_requests: int = 0
    refused: int = 0
    tape_position: int = 0


class _Route(msgspec.Struct):
    channel: str
    symbol: str | None = None
    data: msgspec.Raw = msgspec.Raw(b"null")


class _KlineRoute(msgspec.Struct):
    interval: str = ""


class _Request(msgspec.Struct):
    method: str = ""
    param: dict[str, Any] | None = None
    params: dict[str, Any] | None = None  # ccxt's spelling
    gzip: bool | None = None


_route_decoder = msgspec.json.Decoder(_Route)
_kline_route_decoder = msgspec.json.Decoder(_KlineRoute)
_request_decoder = msgspec.json.Decoder(_Request)
_encoder = msgspec.json.Encoder()


@dataclass(eq=False)
class _Client:
    ws: ServerConnection
    last_ping: float
    subs: dict[Key, bool] = field(default_factory=dict)  # key -> gzip frames?
    kline_interval: dict[str, str] = field(default_factory=dict)
    pushes: int = 0


class LocalMexcServer:
    """MEXC's WebSocket on an OS-assigned local port; ``url`` once started."""

    def __init__(
        self,
        *,
        tape: Path | str | Iterable[TapeEntry] | None = None,
        speed: float | None = 1.0,
        symbols: Iterable[str] | None = None,
        compression: Compression = "request",
        ping_timeout: float = 60.0,
        autoplay: bool = True,
        autoplay_after: int = 1,
        repeat: int = 1,
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.speed = speed
        self.compression = compression
        self.ping_timeout = ping_timeout
        self.autoplay = autoplay
        self.autoplay_after = autoplay_after
        self.repeat = repeat
        self.faults = faults or Faults()
        self.stats = ServerStats()
        self.played = asyncio.Event()
        self._host, self._port = host, port
        if isinstance(tape, str | Path):
            tape = read_tape(tape)
        self._tape: Iterable[TapeEntry] = tape if tape is not None else ()
        if symbols is None and isinstance(self._tape, list | tuple):
            symbols = _symbols_of(self._tape)
        self.symbols: set[str] | None = set(symbols) if symbols is not None else None
        self._clients: set[_Client] = set()
        self._server: Server | None = None
        self._player: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None

    # ---- lifecycle

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the server is not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"ws://{host}:{port}/edge"

    async def start(self) -> LocalMexcServer:
        self._server = await serve(
            self._handle,
            self._host,
            self._port,
            ping_interval=None,
            compression=None,
            max_size=1 << 20,
        )
        self._watchdog = asyncio.create_task(self._drop_silent(), name="mexc-local-watchdog")
        return self

    async def stop(self) -> None:
        for task in (self._player, self._watchdog):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> LocalMexcServer:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def play(self) -> None:
        """Start playing the tape (idempotent); autoplay calls it on the first subscription."""
        if self._player is None:
            self._player = asyncio.create_task(self._play(), name="mexc-local-player")

    # ---- what tests look at

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def subscribers(self, topic: str, symbol: str | None = None) -> int:
        return sum(1 for client in self._clients if (topic, symbol) in client.subs)

    def subscriptions(self) -> list[set[Key]]:
        return [set(client.subs) for client in self._clients]

    # ---- sending

    async def push(
        self,
        msg: dict[str, Any] | str | bytes,
        *,
        binary: bool | None = None,
        everyone: bool = False,
    ) -> int:
        """Send one push to its subscribers (``everyone``: to every subscribed client, unrouted;
        a frame that is not a push goes to everyone too); returns how many got it."""
        if isinstance(msg, dict):
            msg = _encoder.encode(msg)
        if everyone or (isinstance(msg, bytes) and not msg.startswith(b"{")):
            return await self._send_raw(msg)
        text = msg.decode() if isinstance(msg, bytes) else msg
        try:
            route = _route_decoder.decode(text)
        except msgspec.DecodeError:
            return await self._send_raw(text)
        return await self._send_push(text, route, binary)

    async def drop_all(self) -> None:
        """Close every connection now (one burst of a storm)."""
        for client in list(self._clients):
            await self._disconnect(client)

    async def _send_push(self, text: str, route: _Route, binary: bool | None) -> int:
        key: Key
        if route.channel == "push.tickers":
            key = ("tickers", None)
        elif route.channel in _ROUTED:
            key = (route.channel.removeprefix("push."), route.symbol)
        else:  # a channel nobody subscribes to (or junk): everyone with a subscription gets it
            return await self._send_raw(text)
        zipped: bytes | None = None
        sent = 0
        for client in list(self._clients):
            use_gzip = client.subs.get(key)
            if use_gzip is None:
                continue
            if key[0] == "kline":
                interval = _kline_route_decoder.decode(route.data).interval
                if client.kline_interval.get(key[1] or "") != interval:
                    continue
            if binary is not None:
                use_gzip = binary
            if use_gzip and zipped is None:
                zipped = gzip.compress(text.encode(), compresslevel=1, mtime=0)
            if await self._deliver(client, zipped if use_gzip else text):
                sent += 1
        return sent

    async def _send_raw(self, frame: str | bytes) -> int:
        sent = 0
        for client in list(self._clients):
            if client.subs and await self._deliver(client, frame, count=False):
                sent += 1
        return sent

    async def _deliver(
        self, client: _Client, frame: str | bytes | None, count: bool = True
    ) -> bool:
        faults = self.faults
        if faults.stall or frame is None:
            return False
        try:
            if (
                count
                and faults.malformed_every
                and (client.pushes + 1) % faults.malformed_every == 0
            ):
                self.stats.malformed_sent += 1
                await client.ws.send(faults.malformed_frame)
            await client.ws.send(frame)
        except ConnectionClosed:
            return False
        if count:
            client.pushes += 1
            self.stats.pushes += 1
            if self._storm_hits(client):
                self.stats.disconnects_injected += 1
                await self._disconnect(client)
        return True

    def _storm_hits(self, client: _Client) -> bool:
        limit, left = self.faults.disconnect_after, self.faults.disconnects
        if limit is None or client.pushes < limit:
            return False
        return left is None or self.stats.disconnects_injected < left

    async def _disconnect(self, client: _Client) -> None:
        self._clients.discard(client)
        if self.faults.abort and client.ws.transport is not None:
            client.ws.transport.abort()
        else:
            await client.ws.close(1001, "going away")

    # ---- the tape

    async def _play(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(self.repeat):
            started = loop.time()
            first_ms: int | None = None
            for index, entry in enumerate(self._tape):
                if first_ms is None:
                    first_ms = entry.at_ms
                if self.speed:
                    due = started + (entry.at_ms - first_ms) / 1000 / self.speed
                    delay = due - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                elif index % 256 == 0:
                    await asyncio.sleep(0)
                self.stats.tape_position = index + 1
                if entry.raw is not None:
                    await self._send_raw(entry.raw)
                else:
                    await self.push(entry.frame)
        self.played.set()

    # ---- connections

    async def _handle(self, ws: ServerConnection) -> None:
        client = _Client(ws=ws, last_ping=asyncio.get_running_loop().time())
        self._clients.add(client)
        self.stats.connections += 1
        try:
            async for message in ws:
                await self._answer(client, message)
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(client)

    async def _answer(self, client: _Client, message: str | bytes) -> None:
        try:
            request = _request_decoder.decode(message)
        except msgspec.DecodeError:
            return  # MEXC ignores what it cannot read
        method = request.method
        param = request.param if request.param is not None else (request.params or {})
        if method == "ping":
            client.last_ping = asyncio.get_running_loop().time()
            self.stats.pings += 1
            if self.faults.answer_pings:
                await self._reply(client, {"channel": "pong", "data": _now_ms()})
            return
        topic = method.partition(".")[2]
        if method.startswith("sub."):
            self.stats.subscribe_requests += 1
            problem = self._check(topic, param)
            if problem:
                self.stats.refused += 1
                await self._reply(client, {"channel": "rs.error", "data": problem, "ts": _ts()})
                return
            plain = request.gzip is False or param.get("gzip") is False
            use_gzip = self.compression == "gzip" or (self.compression == "request" and not plain)
            symbol = param.get("symbol") if topic != "tickers" else None
            client.subs[(topic, symbol)] = use_gzip
            if topic == "kline" and symbol is not None:
                client.kline_interval[symbol] = param.get("interval", "Min1")
            await self._reply(client, {"channel": f"rs.{method}", "data": "success", "ts": _ts()})
            if (
                self.autoplay
                and self.stats.subscribe_requests - self.stats.refused >= self.autoplay_after
            ):
                self.play()
        elif method.startswith(("unsub.", "usub.")):
            symbol = param.get("symbol") if topic != "tickers" else None
            client.subs.pop((topic, symbol), None)
            await self._reply(client, {"channel": f"rs.{method}", "data": "success", "ts": _ts()})
        else:
            await self._reply(
                client, {"channel": "rs.error", "data": "Method not found", "ts": _ts()}
            )

    def _check(self, topic: str, param: dict[str, Any]) -> str:
        if topic == "tickers":
            return ""
        if topic not in ("deal", "kline", "ticker", "depth", "funding.rate"):
            return "Method not found"
        symbol = param.get("symbol")
        if not isinstance(symbol, str) or not SYMBOL.match(symbol):
            return "Contract doesn't exist!"
        if symbol in self.faults.refuse_symbols:
            return "Contract doesn't exist!"
        if self.symbols is not None and symbol not in self.symbols:
            return "Contract doesn't exist!"
        if topic == "kline" and param.get("interval", "Min1") not in _INTERVALS:
            return "Invalid interval"
        return ""

    async def _reply(self, client: _Client, msg: dict[str, Any]) -> None:
        if self.faults.stall:
            return
        with contextlib.suppress(ConnectionClosed):
            await client.ws.send(_encoder.encode(msg).decode())

    async def _drop_silent(self) -> None:
        """MEXC disconnects a client that has not pinged within its timeout (one minute)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, self.ping_timeout / 4))
            for client in list(self._clients):
                if loop.time() - client.last_ping > self.ping_timeout:
                    self.stats.dropped_for_silence += 1
                    self._clients.discard(client)
                    await client.ws.close(1000, "no ping")


def _symbols_of(tape: Iterable[TapeEntry]) -> set[str]:
    """Every contract a tape mentions: in deal/kline pushes and in ticker lines."""
    symbols: set[str] = set()
    for entry in tape:
        if entry.raw is not None:
            continue
        try:
            route = _route_decoder.decode(entry.msg)
        except msgspec.DecodeError:
            continue
        if route.symbol:
            symbols.add(route.symbol)
        if route.channel == "push.tickers":
            lines = msgspec.json.decode(route.data)
            symbols.update(line["symbol"] for line in lines if isinstance(line, dict))
    return {symbol for symbol in symbols if SYMBOL.match(symbol)}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _ts() -> str:
    return str(_now_ms())


async def _serve_forever(args: argparse.Namespace) -> None:
    server = LocalMexcServer(
        tape=args.tape,
        speed=args.speed or None,
        port=args.port,
        compression=args.compression,
        autoplay_after=args.autoplay_after,
    )
    async with server:
        print(server.url, flush=True)
        await server.played.wait()
        await asyncio.sleep(args.linger)


def main(argv: list[str] | None = None) -> int:
    """``python -m adapters.mexc.local_server --tape FILE``: serve a tape, print the URL."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--tape", type=Path, required=True)
    parser.add_argument("--speed", type=float, default=1.0, help="0: as fast as possible")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--compression", choices=["request", "gzip", "text"], default="request")
    parser.add_argument("--autoplay-after", type=int, default=1, help="subscriptions to wait for")
    parser.add_argument("--linger", type=float, default=5.0, help="seconds to stay up after")
    asyncio.run(_serve_forever(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
