"""Route selection by the message's `action`."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from emulator.gateway import Gateway
from emulator.gateway.routing import select_route

from .conftest import GatewayFactory
from .fakes import Event, FakeInvoker, make_app

pytestmark = pytest.mark.timeout(20)

ROUTES = frozenset({"echo", "rooms/join", "7", "true", "null", '{"a":1}'})


@pytest.mark.parametrize(
    ("body", "route"),
    [
        ('{"action": "echo"}', "echo"),
        ('{"action": "rooms/join", "room": 1}', "rooms/join"),
        ('{"action": 7}', "7"),
        ('{"action": true}', "true"),
        ('{"action": null}', "null"),
        ('{"action": {"a": 1}}', '{"a":1}'),
        ('{"action": "Echo"}', "default"),
        ('{"action": "missing"}', "default"),
        ('{"action": "connect"}', "default"),
        ('{"action": "disconnect"}', "default"),
        ('{"action": "default"}', "default"),
        ('{"action": "$default"}', "default"),
        ('{"other": "echo"}', "default"),
        ('["echo"]', "default"),
        ('"echo"', "default"),
        ("echo", "default"),
        ("{not json", "default"),
        ("", "default"),
        ("[" * 100_000 + "]" * 100_000, "default"),
    ],
)
def test_select_route(body: str, route: str) -> None:
    assert select_route(body, ROUTES) == route


async def test_messages_reach_their_routes(
    gateway: Gateway, invoker: FakeInvoker, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"http://127.0.0.1:{gateway.port}/") as ws:
        await ws.send_str('{"action": "rooms/join"}')
        joined = await invoker.next_event("rooms/join")
        await ws.send_str('{"action": 7}')
        seven = await invoker.next_event("7")
        await ws.send_str('{"action": "connect"}')
        fallback = await invoker.next_event("default")

    assert joined["requestContext"]["routeKey"] == "rooms/join"
    assert seven["requestContext"]["routeKey"] == "7"
    assert fallback["requestContext"]["routeKey"] == "$default"
    assert fallback["body"] == '{"action": "connect"}'
    assert len(invoker.events_of("connect")) == 1


async def test_messages_run_concurrently(
    gateway: Gateway, invoker: FakeInvoker, http: aiohttp.ClientSession
) -> None:
    release = asyncio.Event()

    async def blocked(event: Event) -> object:
        await release.wait()
        return {"statusCode": 200}

    invoker.on("echo", blocked)
    async with http.ws_connect(f"http://127.0.0.1:{gateway.port}/") as ws:
        await ws.send_str('{"action": "echo", "n": 1}')
        await ws.send_str('{"action": "echo", "n": 2}')
        # Both invocations start while the first one is still blocked.
        first = await invoker.next_event("echo")
        second = await invoker.next_event("echo")
        release.set()
    assert first["body"].endswith("1}")
    assert second["body"].endswith("2}")


async def test_update_app_changes_routes_without_closing(
    start_gateway: GatewayFactory, invoker: FakeInvoker, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(make_app(custom_routes=("echo",)))
    async with http.ws_connect(f"http://127.0.0.1:{gateway.port}/") as ws:
        await ws.send_str('{"action": "shout"}')
        assert (await invoker.next_event("default"))["body"] == '{"action": "shout"}'

        gateway.update_app(make_app(custom_routes=("shout",)))
        await ws.send_str('{"action": "shout"}')
        assert (await invoker.next_event("shout"))["requestContext"]["routeKey"] == "shout"
        await ws.send_str('{"action": "echo"}')
        assert (await invoker.next_event("default"))["body"] == '{"action": "echo"}'
        assert not ws.closed
    assert len(invoker.events_of("connect")) == 1
