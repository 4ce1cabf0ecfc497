"""`$disconnect`: once per connection, after the socket closed, with the right code."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from emulator.gateway import Gateway

from .clients import OP_BINARY, OP_PING, OP_TEXT, RawWebSocket, frame_header
from .conftest import GatewayFactory
from .fakes import Event, FakeInvoker, hang

pytestmark = pytest.mark.timeout(20)


async def open_raw(gateway: Gateway, invoker: FakeInvoker) -> tuple[RawWebSocket, str]:
    client = await RawWebSocket.open(gateway.port)
    assert client.handshake.status == 101
    connect = await invoker.next_event("connect")
    return client, connect["requestContext"]["connectionId"]


Ending = Callable[[RawWebSocket, Gateway, str, aiohttp.ClientSession], Awaitable[int | None]]


async def client_close_with_code(
    client: RawWebSocket, gateway: Gateway, connection_id: str, http: aiohttp.ClientSession
) -> int | None:
    await client.close(4000, "bye")
    return None


async def client_close_without_code(
    client: RawWebSocket, gateway: Gateway, connection_id: str, http: aiohttp.ClientSession
) -> int | None:
    await client.close(None)
    return None


async def tcp_drop(
    client: RawWebSocket, gateway: Gateway, connection_id: str, http: aiohttp.ClientSession
) -> int | None:
    client.drop()
    return None


async def idle(
    client: RawWebSocket, gateway: Gateway, connection_id: str, http: aiohttp.ClientSession
) -> int | None:
    return (await client.answer_close())[0]


async def too_old(
    client: RawWebSocket, gateway: Gateway, connection_id: str, http: aiohttp.ClientSession
) -> int | None:
    # Pings keep the connection from being idle, so only the duration limit applies.
    async def keep_pinging() -> None:
        while True:
            await client.send(OP_PING, b"")
            await asyncio.sleep(0.1)

    pinging = asyncio.create_task(keep_pinging())
    try:
        code, _ = await client.read_close()
    finally:
        pinging.cancel()
    await client.close_reply(code or 1000)
    return code


async def deleted(
    client: RawWebSocket, gateway: Gateway, connection_id: str, http: aiohttp.ClientSession
) -> int | None:
    url = f"http://127.0.0.1:{gateway.port}/@connections/{connection_id}"
    async with http.delete(url) as reply:
        assert reply.status == 204
    return (await client.answer_close())[0]


async def binary_frame(
    client: RawWebSocket, gateway: Gateway, connection_id: str, http: aiohttp.ClientSession
) -> int | None:
    await client.send(OP_BINARY, b"\x01")
    return (await client.answer_close())[0]


async def oversized_frame(
    client: RawWebSocket, gateway: Gateway, connection_id: str, http: aiohttp.ClientSession
) -> int | None:
    client.send_raw(frame_header(OP_TEXT, 1_000_000, mask=b"abcd"))
    return (await client.answer_close())[0]


async def oversized_message(
    client: RawWebSocket, gateway: Gateway, connection_id: str, http: aiohttp.ClientSession
) -> int | None:
    for index in range(5):
        await client.send(OP_TEXT if index == 0 else 0x0, b"x" * 32 * 1024, fin=False)
    return (await client.answer_close())[0]


async def shutdown(
    client: RawWebSocket, gateway: Gateway, connection_id: str, http: aiohttp.ClientSession
) -> int | None:
    stopping = asyncio.create_task(gateway.stop())
    code = (await client.answer_close())[0]
    await stopping
    return code


@pytest.mark.parametrize(
    ("ending", "sent_code", "status_code", "reason"),
    [
        (client_close_with_code, None, 4000, "bye"),
        (client_close_without_code, None, 1005, "Client-side close frame status not set"),
        (tcp_drop, None, 1006, ""),
        (idle, 1001, 1001, "Going away"),
        (too_old, 1001, 1001, "Going away"),
        (deleted, 1000, 1000, ""),
        (binary_frame, 1003, 1003, "Binary frames are not supported"),
        (oversized_frame, 1009, 1009, "Message too big"),
        (oversized_message, 1009, 1009, "Message too big"),
        (shutdown, 1001, 1001, "Going away"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
async def test_disconnect_once_per_ending(
    start_gateway: GatewayFactory,
    invoker: FakeInvoker,
    http: aiohttp.ClientSession,
    ending: Ending,
    sent_code: int | None,
    status_code: int,
    reason: str,
) -> None:
    gateway = await start_gateway(
        idle_timeout=0.3 if ending is idle else 30,
        max_connection_duration=0.6 if ending is too_old else 60,
    )
    client, connection_id = await open_raw(gateway, invoker)

    assert await ending(client, gateway, connection_id, http) == sent_code
    event = await invoker.next_event("disconnect")
    client.drop()

    context = event["requestContext"]
    assert context["connectionId"] == connection_id
    assert context["disconnectStatusCode"] == status_code
    assert context["disconnectReason"] == reason
    assert gateway.connection_count == 0

    # Stopping waits for every session, so a second `$disconnect` would show now.
    await gateway.stop()
    assert len(invoker.events_of("disconnect")) == 1


async def test_disconnect_runs_after_socket_closed(
    gateway: Gateway, invoker: FakeInvoker, http: aiohttp.ClientSession
) -> None:
    seen: list[int] = []

    async def on_disconnect(event: Event) -> object:
        seen.append(gateway.connection_count)
        url = f"http://127.0.0.1:{gateway.port}/@connections/{event['requestContext']['connectionId']}"
        async with http.post(url, data=b"late") as reply:
            seen.append(reply.status)
        return None

    invoker.on("disconnect", on_disconnect)
    async with http.ws_connect(f"http://127.0.0.1:{gateway.port}/") as ws:
        await invoker.next_event("connect")
        await ws.close()
    await invoker.next_finished("disconnect")
    assert seen == [0, 410]


async def test_disconnect_failure_is_only_logged(
    start_gateway: GatewayFactory, invoker: FakeInvoker, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await start_gateway(integration_timeout=0.2)
    invoker.on("disconnect", hang)
    client, connection_id = await open_raw(gateway, invoker)
    await client.close()
    await invoker.next_finished("disconnect")
    await gateway.stop()
    assert any(
        "$disconnect of connection" in record.getMessage()
        and connection_id in record.getMessage()
        and "integration timeout" in record.getMessage()
        for record in caplog.records
    )


async def test_ten_idle_connections_close(
    start_gateway: GatewayFactory, invoker: FakeInvoker
) -> None:
    gateway = await start_gateway(idle_timeout=0.3)
    started = time.monotonic()
    clients = [await RawWebSocket.open(gateway.port) for _ in range(10)]
    codes = await asyncio.gather(*(client.answer_close() for client in clients))
    elapsed = time.monotonic() - started
    assert codes == [(1001, "Going away")] * 10
    assert elapsed >= 0.3
    for client in clients:
        client.drop()
    await gateway.stop()
    events = invoker.events_of("disconnect")
    assert len(events) == 10
    assert len({event["requestContext"]["connectionId"] for event in events}) == 10


async def test_frames_either_way_keep_connection_open(
    start_gateway: GatewayFactory, invoker: FakeInvoker, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(idle_timeout=0.6)
    pinging, _ = await open_raw(gateway, invoker)
    receiving, receiving_id = await open_raw(gateway, invoker)
    started = time.monotonic()

    # For two idle timeouts, one client sends pings and the other gets messages.
    url = f"http://127.0.0.1:{gateway.port}/@connections/{receiving_id}"
    while time.monotonic() - started < 1.2:
        await pinging.send(OP_PING, b"")
        async with http.post(url, data=b"tick") as reply:
            assert reply.status == 200
        await asyncio.sleep(0.1)
    assert gateway.connection_count == 2

    # Silence on both sides: both close as idle.
    assert (await pinging.answer_close())[0] == 1001
    assert (await receiving.answer_close())[0] == 1001
    pinging.drop()
    receiving.drop()


async def test_max_duration_closes_active_connection(
    start_gateway: GatewayFactory, invoker: FakeInvoker
) -> None:
    gateway = await start_gateway(idle_timeout=10, max_connection_duration=0.5)
    client, _ = await open_raw(gateway, invoker)
    started = time.monotonic()

    async def keep_talking() -> None:
        while True:
            await client.send_text("hi")
            await asyncio.sleep(0.05)

    talking = asyncio.create_task(keep_talking())
    try:
        assert await client.read_close() == (1001, "Going away")
    finally:
        talking.cancel()
    assert time.monotonic() - started >= 0.5
    await client.close_reply(1001)
