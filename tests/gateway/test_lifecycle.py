"""Starting and stopping the gateway: ports, health check, shutdown, startup notes."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator

import aiohttp
import pytest
from websockets.asyncio.client import connect as websockets_connect
from websockets.exceptions import ConnectionClosed

from emulator.config import Options
from emulator.errors import EmulatorError
from emulator.gateway import Gateway
from emulator.gateway.listeners import bind_listeners, is_loopback_host

from .clients import RawWebSocket
from .conftest import GatewayFactory
from .fakes import Event, FakeInvoker, hang, make_app

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def occupied_port() -> Iterator[int]:
    """A port that another socket listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("emulator.gateway") and record.levelno == level
    ]


async def test_ports_after_start(gateway: Gateway) -> None:
    assert gateway.port > 0
    assert gateway.internal_port > 0
    assert gateway.port != gateway.internal_port
    assert gateway.management_url == f"http://127.0.0.1:{gateway.port}"
    assert gateway.connection_count == 0


def test_ports_before_start(invoker: FakeInvoker) -> None:
    gateway = Gateway(make_app(), Options(port=0, internal_port=0), invoker)
    with pytest.raises(RuntimeError):
        _ = gateway.port
    with pytest.raises(RuntimeError):
        _ = gateway.internal_port


async def test_health_check(
    gateway: Gateway, invoker: FakeInvoker, http: aiohttp.ClientSession
) -> None:
    url = f"http://127.0.0.1:{gateway.port}/_emulator/health"
    async with http.get(url) as reply:
        assert reply.status == 200
        assert await reply.json() == {"status": "ok", "app": "gateway-test", "connections": 0}
    async with http.ws_connect(f"http://127.0.0.1:{gateway.port}/"):
        await invoker.next_event("connect")
        async with http.get(url) as reply:
            assert (await reply.json())["connections"] == 1


async def test_health_check_extra_fields(invoker: FakeInvoker, http: aiohttp.ClientSession) -> None:
    options = Options(port=0, internal_port=0)
    gateway = Gateway(
        make_app(), options, invoker, health_extra=lambda: {"workers": 3}, ipv6_loopback=False
    )
    await gateway.start()
    try:
        async with http.get(f"http://127.0.0.1:{gateway.port}/_emulator/health") as reply:
            body = await reply.json()
        assert body["workers"] == 3
        assert body["status"] == "ok"
    finally:
        await gateway.stop()


async def test_main_port_in_use(
    start_gateway: GatewayFactory, occupied_port: int, invoker: FakeInvoker
) -> None:
    with pytest.raises(EmulatorError) as caught:
        await start_gateway(port=occupied_port)
    assert f"port {occupied_port} is already in use" in str(caught.value)
    assert "--port" in str(caught.value)


async def test_internal_port_in_use(
    start_gateway: GatewayFactory, occupied_port: int, invoker: FakeInvoker
) -> None:
    main = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    main.bind(("127.0.0.1", 0))
    main_port = main.getsockname()[1]
    main.close()

    with pytest.raises(EmulatorError) as caught:
        await start_gateway(port=main_port, internal_port=occupied_port)
    assert f"port {occupied_port} is already in use" in str(caught.value)
    assert "ARC_INTERNAL_PORT" in str(caught.value)
    # The main port was released again.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", main_port))


def test_bind_listeners_port_zero() -> None:
    sockets = bind_listeners("127.0.0.1", 0, "--port", ipv6_loopback=False)
    try:
        assert len(sockets) == 1
        assert sockets[0].getsockname()[0] == "127.0.0.1"
        assert sockets[0].getsockname()[1] > 0
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("example.internal", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


async def test_non_loopback_host_warns(
    invoker: FakeInvoker, caplog: pytest.LogCaptureFixture
) -> None:
    # 192.0.2.1 (TEST-NET-1) is on no interface here, so nothing listens.
    gateway = Gateway(make_app(), Options(host="192.0.2.1", port=0, internal_port=0), invoker)
    with pytest.raises(EmulatorError) as caught:
        await gateway.start()
    assert "cannot listen on 192.0.2.1" in str(caught.value)
    assert any("reachable from the network" in line for line in messages(caplog, logging.WARNING))


async def test_startup_logs(
    start_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="emulator.gateway")
    gateway = await start_gateway(make_app(other_pragmas=("http", "tables")))
    infos = messages(caplog, logging.INFO)
    assert infos.count("@http, @tables: parsed but not emulated (only @ws is)") == 1
    assert any(f"ws://127.0.0.1:{gateway.port}" in line for line in infos)
    assert messages(caplog, logging.WARNING) == []
    await gateway.stop()
    assert messages(caplog, logging.INFO)[-1] == "gateway stopped"


async def test_stop_closes_all_with_1001(
    gateway: Gateway, invoker: FakeInvoker, http: aiohttp.ClientSession
) -> None:
    raw = await RawWebSocket.open(gateway.port)
    aiohttp_ws = await http.ws_connect(f"http://127.0.0.1:{gateway.port}/")
    async with websockets_connect(f"ws://127.0.0.1:{gateway.port}/") as websockets_ws:
        for _ in range(3):
            await invoker.next_event("connect")
        assert gateway.connection_count == 3

        stopping = asyncio.create_task(gateway.stop())

        assert await raw.answer_close() == (1001, "Going away")
        message = await aiohttp_ws.receive()
        assert message.type is aiohttp.WSMsgType.CLOSE
        assert message.data == 1001
        assert message.extra == "Going away"
        with pytest.raises(ConnectionClosed) as caught:
            await websockets_ws.recv()
        assert caught.value.rcvd is not None
        assert caught.value.rcvd.code == 1001
        await stopping
    raw.drop()

    events = invoker.events_of("disconnect")
    assert len(events) == 3
    assert {event["requestContext"]["disconnectStatusCode"] for event in events} == {1001}
    assert gateway.connection_count == 0
    with pytest.raises(aiohttp.ClientConnectionError):
        await http.ws_connect(f"http://127.0.0.1:{gateway.port}/")


async def test_stop_respects_shutdown_timeout(
    start_gateway: GatewayFactory, invoker: FakeInvoker, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await start_gateway(shutdown_timeout=0.5)
    invoker.on("disconnect", hang)
    clients = [await RawWebSocket.open(gateway.port) for _ in range(2)]

    started = time.monotonic()
    await gateway.stop()
    elapsed = time.monotonic() - started

    assert 0.5 <= elapsed < 3.0
    assert len(invoker.events_of("disconnect")) == 2
    assert any(
        "2 connections did not finish closing" in line for line in messages(caplog, logging.WARNING)
    )
    for client in clients:
        client.drop()


async def test_stop_during_connect(start_gateway: GatewayFactory, invoker: FakeInvoker) -> None:
    gateway = await start_gateway(shutdown_timeout=0.3)
    invoker.on("connect", hang)
    opening = asyncio.create_task(RawWebSocket.open(gateway.port))
    await invoker.next_event("connect")

    started = time.monotonic()
    await gateway.stop()
    assert time.monotonic() - started < 3.0
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
        await opening
    assert invoker.events_of("disconnect") == []


async def test_connection_opened_while_stopping_is_closed(
    start_gateway: GatewayFactory, invoker: FakeInvoker
) -> None:
    gateway = await start_gateway(shutdown_timeout=2.0)
    release = asyncio.Event()

    async def slow_connect(event: Event) -> object:
        await release.wait()
        return {"statusCode": 200}

    invoker.on("connect", slow_connect)
    opening = asyncio.create_task(RawWebSocket.open(gateway.port))
    await invoker.next_event("connect")

    stopping = asyncio.create_task(gateway.stop())
    await asyncio.sleep(0)
    release.set()
    client = await opening
    assert client.handshake.status == 101
    assert await client.answer_close() == (1001, "Going away")
    await stopping
    client.drop()
    assert len(invoker.events_of("disconnect")) == 1


async def test_stop_twice_is_harmless(gateway: Gateway) -> None:
    await gateway.stop()
    await gateway.stop()
