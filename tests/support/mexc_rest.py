"""A local HTTP server that answers as MEXC's futures REST API documents (test support).

It is a protocol-speaking peer, not a mock of our code: it checks signatures and the time window
the way MEXC describes them (written here from the documentation, not by calling our signer),
keeps an in-memory book of orders keyed by ``externalOid`` (resubmitting the same id returns the
same order) and positions, and answers in MEXC's envelopes. Knobs let a test make it behave like
the real exchange on a bad day: ``apiAllowed=false``, a rejected key (602), the order API switched
off (1002), rate limiting (510), slow answers, a key that has withdrawal rights.

Bound to 127.0.0.1 on a port the OS picks; ``requests`` records what arrived (for tests that check
nothing was sent, or that no secret travelled where it should not).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from aiohttp import web

from tests.support.mexc_book import MexcBook
from tests.support.mexc_shapes import LocalContract, Refused

__all__ = ["LocalContract", "LocalMexcRest", "Seen"]


def _sorted_query(pairs: list[tuple[str, str]]) -> str:
    """The documented GET parameter string: sorted ``k=v``, values URL-encoded (Java-style)."""
    encoded = sorted((k, quote(v, safe="-_.*").replace("~", "%7E")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def _hmac(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


@dataclass
class Seen:
    """One request as it arrived (headers included: tests grep them for leaked secrets)."""

    method: str
    path: str
    query: str
    body: str
    headers: dict[str, str]


@dataclass(kw_only=True)
class LocalMexcRest(MexcBook):
    """The server and its knobs (its book's too, see ``MexcBook``); change any knob between (or
    during) requests."""

    accounts: dict[str, str] = field(default_factory=dict)  # api key -> secret
    #: endpoint ("order/create", "account/assets", "*" for every private contract one, or the
    #: spot probe's "capital/config/getall") -> (code, message)
    forced_errors: dict[str, tuple[int, str]] = field(default_factory=dict)
    rate_limited: bool = False
    withdraw_permission: bool = False
    #: endpoint -> seconds to wait *after* doing the work and before answering, every time
    slow: dict[str, float] = field(default_factory=dict)
    _garbled: dict[str, int] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    _once: dict[str, deque[float]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    url: str = ""

    def slow_once(self, endpoint: str, seconds: float, times: int = 1) -> None:
        """The next ``times`` answers of ``endpoint`` come ``seconds`` late (work done first)."""
        self._once.setdefault(endpoint, deque()).extend([seconds] * times)

    def garble_once(self, endpoint: str, times: int = 1) -> None:
        """The next ``times`` answers of ``endpoint`` are not JSON (the work is done first)."""
        self._garbled[endpoint] = self._garbled.get(endpoint, 0) + times

    def count(self, endpoint: str) -> int:
        """How many requests reached an endpoint (e.g. ``order/create``)."""
        return sum(1 for seen in self.requests if seen.path.endswith(endpoint))

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> LocalMexcRest:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ----------------------------------------------------------------- dispatch

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.text()
        path = request.path
        self.requests.append(
            Seen(request.method, path, request.query_string, body, dict(request.headers))
        )
        if path == "/api/v3/capital/config/getall":
            return self._spot_withdraw_probe(request)
        public = {"/api/v1/contract/ping": self._ping, "/api/v1/contract/detail": self._detail}
        if path in public:
            return self._ok(public[path](request))
        prefix = "/api/v1/private/"
        if not path.startswith(prefix):
            return web.json_response({"success": False, "code": 404, "message": "Not Found"})
        endpoint = path[len(prefix) :]
        failure = self._check_private(request, body)
        if failure is None and self.rate_limited:
            failure = (510, "Requests are too frequent!")
        forced = self.forced_errors.get(self._route_name(endpoint)) or self.forced_errors.get("*")
        if failure is None and forced is not None:
            failure = forced
        if failure is not None:
            return self._fail(*failure)
        try:
            result = self._private(request.method, endpoint, body, dict(request.query))
        except Refused as refused:
            return self._fail(refused.code, refused.message)
        await self._delay(self._route_name(endpoint))
        name = self._route_name(endpoint)
        if self._garbled.get(name, 0) > 0:
            self._garbled[name] -= 1
            return web.Response(text="<html>502 Bad Gateway</html>", content_type="text/html")
        return self._ok(result)

    @staticmethod
    def _route_name(endpoint: str) -> str:
        for name in ("order/list/open_orders", "order/external", "order/get"):
            if endpoint.startswith(name):
                return name
        return endpoint

    async def _delay(self, name: str) -> None:
        queued = self._once.get(name)
        seconds = queued.popleft() if queued else self.slow.get(name, 0.0)
        if seconds:
            await asyncio.sleep(seconds)

    @staticmethod
    def _ok(data: Any) -> web.Response:
        return web.json_response({"success": True, "code": 0, "data": data})

    @staticmethod
    def _fail(code: int, message: str) -> web.Response:
        return web.json_response({"success": False, "code": code, "message": message})

    def _check_private(self, request: web.Request, body: str) -> tuple[int, str] | None:
        """MEXC's "Authentication method": key, signature over key+time+params, time window."""
        key = request.headers.get("ApiKey")
        request_time = request.headers.get("Request-Time", "")
        signature = request.headers.get("Signature")
        if not key or not signature or not request_time.isdigit():
            return (401, "Not logged in")
        secret = self.accounts.get(key)
        if request.method in ("GET", "DELETE"):
            pairs = [(k, v) for k, v in request.query.items()]
            params = _sorted_query(pairs)
        else:
            params = body
        expected = _hmac(secret, f"{key}{request_time}{params}") if secret else None
        if expected is None or not hmac.compare_digest(expected, signature):
            return (602, "Signature verification failed!")
        window_s = request.headers.get("Recv-Window", "10")
        window_ms = min(int(window_s) if window_s.isdigit() else 10, 60) * 1000
        if abs(self._now() - int(request_time)) > window_ms:
            return (513, "Invalid request time!")
        return None

    # ----------------------------------------------------------------- public

    def _ping(self, request: web.Request) -> int:
        return self._now()

    def _detail(self, request: web.Request) -> Any:
        symbol = request.query.get("symbol")
        if symbol:
            contract = self.contracts.get(symbol)
            return contract.as_json() if contract else None
        return [c.as_json() for c in self.contracts.values()]

    # ----------------------------------------------------------------- spot probe

    def _spot_withdraw_probe(self, request: web.Request) -> web.Response:
        """Spot v3 signing: HMAC of the query string before ``&signature=``; key in a header."""
        key = request.headers.get("X-MEXC-APIKEY", "")
        unsigned, _, signature = request.query_string.rpartition("&signature=")
        secret = self.accounts.get(key)
        if secret is None:
            return web.json_response({"code": 10072, "msg": "Api key info invalid"}, status=400)
        if not hmac.compare_digest(_hmac(secret, unsigned), signature):
            body = {"code": 700002, "msg": "Signature for this request is not valid."}
            return web.json_response(body, status=400)
        forced = self.forced_errors.get("capital/config/getall")
        if forced is not None:
            return web.json_response({"code": forced[0], "msg": forced[1]}, status=400)
        if not self.withdraw_permission:
            body = {"code": 700007, "msg": "No permission to access the endpoint."}
            return web.json_response(body, status=403)
        return web.json_response([{"coin": "USDT", "name": "Tether", "networkList": []}])
