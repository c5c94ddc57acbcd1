"""The signed wire format against the local MEXC server: what it accepts, what it refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import aiohttp
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.mexc import signing
from adapters.mexc.errors import MexcAuthError
from adapters.mexc.live import LiveModeEnabled, LiveTradingRefused, LiveVenue
from adapters.mexc.rest import MexcRestClient
from adapters.mexc.rest_types import ContractDetail, CreateOrder
from adapters.secrets import Secret
from tests.support.mexc_rest import LocalContract, LocalMexcRest

API_KEY = "mx0vglWIREKEY0001"
API_SECRET = "WIRESECRET-abcdef0123456789"


@pytest.fixture
async def server() -> AsyncIterator[LocalMexcRest]:
    async with LocalMexcRest(accounts={API_KEY: API_SECRET}) as local:
        yield local


@pytest.fixture
async def client(server: LocalMexcRest) -> AsyncIterator[MexcRestClient]:
    async with MexcRestClient(
        server.url, Secret(API_KEY), Secret(API_SECRET), retry_backoff_s=0.01
    ) as rest:
        yield rest


@pytest.fixture(scope="module")
async def shared_server() -> AsyncIterator[LocalMexcRest]:
    async with LocalMexcRest(accounts={API_KEY: API_SECRET}) as local:
        yield local


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(symbol=st.one_of(st.none(), st.text(max_size=24)))
async def test_signed_get_when_any_param_value_then_server_verifies_it(
    shared_server: LocalMexcRest, symbol: str | None
) -> None:
    # Our signer and the server's independent reading of the documented rule must agree on
    # every value, including spaces, '+', '~', '&', '=' and non-ASCII text.
    async with MexcRestClient(shared_server.url, Secret(API_KEY), Secret(API_SECRET)) as rest:
        assert await rest.open_positions(symbol) == []


async def test_signed_get_when_query_tampered_then_signature_refused(server: LocalMexcRest) -> None:
    signed_for = signing.param_string("GET", {"symbol": "BTC_USDT"})
    headers = signing.signed_headers(API_KEY, API_SECRET, server._now(), signed_for, 10)
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{server.url}/api/v1/private/position/open_positions?symbol=ETH_USDT",
            headers=headers,
        ) as response,
    ):
        reply = await response.json()
    assert reply == {"success": False, "code": 602, "message": "Signature verification failed!"}


async def test_signed_post_when_body_changed_after_signing_then_refused(
    server: LocalMexcRest,
) -> None:
    body = b'{"symbol":"BTC_USDT","price":65000,"vol":1,"side":1,"type":5,"openType":2}'
    headers = signing.signed_headers(API_KEY, API_SECRET, server._now(), body.decode(), 10)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.url}/api/v1/private/order/create",
            data=body.replace(b'"vol":1', b'"vol":9'),
            headers=headers,
        ) as response,
    ):
        reply = await response.json()
    assert reply["code"] == 602
    assert server.orders == {}


async def test_private_get_when_headers_missing_then_unauthorized(server: LocalMexcRest) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/api/v1/private/account/assets") as response,
    ):
        reply = await response.json()
    assert (reply["success"], reply["code"]) == (False, 401)


async def test_client_when_server_says_ip_not_whitelisted_then_auth_error(
    server: LocalMexcRest, client: MexcRestClient
) -> None:
    server.forced_errors["*"] = (406, "IP not in whitelist")
    with pytest.raises(MexcAuthError, match="406"):
        await client.assets()


async def test_start_when_every_private_call_refused_then_key_rejected(
    server: LocalMexcRest,
) -> None:
    server.forced_errors["*"] = (402, "Api key expired")
    enabled = LiveModeEnabled.from_settings(
        trading_mode="live",
        live_trading_confirmed="yes",
        api_key=Secret(API_KEY),
        api_secret=Secret(API_SECRET),
    )
    async with LiveVenue(enabled, ["BTC_USDT"], base_url=server.url) as venue:
        with pytest.raises(LiveTradingRefused, match="402") as refused:
            await venue.start()
    assert refused.value.reason == "key_rejected"


async def test_contract_details_when_one_symbol_asked_then_single_object_parsed(
    client: MexcRestClient,
) -> None:
    [detail] = await client.contract_details("ETH_USDT")
    assert detail.symbol == "ETH_USDT"
    assert detail.price_unit == Decimal("0.1") and detail.api_allowed is True


def test_contract_detail_when_api_allowed_missing_then_not_allowed() -> None:
    reply = LocalContract("BTC_USDT").as_json()
    del reply["apiAllowed"]
    assert msgspec.convert(reply, ContractDetail).api_allowed is False


@pytest.mark.parametrize("shape", ["list", "page"])
async def test_open_orders_when_many_pages_then_every_order_once(
    server: LocalMexcRest, client: MexcRestClient, shape: str
) -> None:
    server.open_orders_reply = shape
    for number in range(23):
        await client.submit_order(
            CreateOrder(
                symbol="BTC_USDT",
                price=Decimal("60000"),
                vol=Decimal(1),
                side=1,
                type=1,
                open_type=2,
                external_oid=f"page-{number}",
            )
        )
    orders = await client.open_orders("BTC_USDT", page_size=10)
    assert sorted(o.external_oid or "" for o in orders) == sorted(f"page-{n}" for n in range(23))
    assert server.count("order/list/open_orders/BTC_USDT") == 3
