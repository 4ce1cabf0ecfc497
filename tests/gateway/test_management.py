"""The `@connections` management API on its three paths and two ports."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any
from unittest import mock
from urllib.parse import quote

import aiohttp
import boto3
import pytest
from aiohttp.test_utils import make_mocked_request
from yarl import URL

from emulator.config import Options
from emulator.gateway import Gateway
from emulator.gateway.connections import SEND_BUFFER_HIGH_WATER, ConnectionRegistry
from emulator.gateway.management import ManagementApi, format_iso8601, is_loopback_peer

from .clients import OP_BINARY, OP_TEXT, RawWebSocket
from .fakes import FakeInvoker

pytestmark = pytest.mark.timeout(30)

ISO_8601 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
PATHS = ("main", "staged", "internal")


def management_base(gateway: Gateway, path: str) -> str:
    """The URL before the connection id, for each place the API is served."""
    if path == "main":
        return f"http://127.0.0.1:{gateway.port}/@connections/"
    if path == "staged":
        return f"http://127.0.0.1:{gateway.port}/testing/@connections/"
    return f"http://127.0.0.1:{gateway.internal_port}/_arc/ws/@connections/"


def connection_url(gateway: Gateway, path: str, connection_id: str) -> URL:
    # Clients URL-encode the id (`=` becomes %3D); encoded=True sends it as is.
    return URL(management_base(gateway, path) + quote(connection_id, safe=""), encoded=True)


async def open_raw(
    gateway: Gateway, invoker: FakeInvoker, **options: Any
) -> tuple[RawWebSocket, str]:
    client = await RawWebSocket.open(gateway.port, headers=[("User-Agent", "raw/1")], **options)
    assert client.handshake.status == 101
    connect = await invoker.next_event("connect")
    return client, connect["requestContext"]["connectionId"]


async def check_error(reply: aiohttp.ClientResponse, status: int, name: str) -> None:
    assert reply.status == status
    assert reply.headers["x-amzn-ErrorType"] == name
    body = await reply.json()
    assert isinstance(body["message"], str)
    assert body["message"]


@pytest.fixture
async def connected(
    gateway: Gateway, invoker: FakeInvoker
) -> AsyncIterator[tuple[RawWebSocket, str]]:
    client, connection_id = await open_raw(gateway, invoker)
    yield client, connection_id
    client.drop()


@pytest.mark.parametrize("path", PATHS)
async def test_post_sends_text_frame(
    gateway: Gateway,
    connected: tuple[RawWebSocket, str],
    http: aiohttp.ClientSession,
    path: str,
) -> None:
    client, connection_id = connected
    headers = {"Authorization": "AWS4-HMAC-SHA256 Credential=ignored/20260101/us-west-2"}
    async with http.post(
        connection_url(gateway, path, connection_id), data="héllo".encode(), headers=headers
    ) as reply:
        assert reply.status == 200
        assert await reply.read() == b""
        assert "x-amzn-RequestId" in reply.headers
    assert await client.read_frame() == (OP_TEXT, "héllo".encode())


@pytest.mark.parametrize("path", PATHS)
async def test_post_non_utf8_sends_binary_frame(
    gateway: Gateway,
    connected: tuple[RawWebSocket, str],
    http: aiohttp.ClientSession,
    path: str,
) -> None:
    client, connection_id = connected
    async with http.post(connection_url(gateway, path, connection_id), data=b"\xff\xfe") as reply:
        assert reply.status == 200
    assert await client.read_frame() == (OP_BINARY, b"\xff\xfe")


@pytest.mark.parametrize("path", PATHS)
async def test_post_accepts_unencoded_id(
    gateway: Gateway,
    connected: tuple[RawWebSocket, str],
    http: aiohttp.ClientSession,
    path: str,
) -> None:
    client, connection_id = connected
    url = management_base(gateway, path) + connection_id
    async with http.post(url, data=b"plain") as reply:
        assert reply.status == 200
    assert await client.read_frame() == (OP_TEXT, b"plain")


@pytest.mark.parametrize("path", PATHS)
async def test_get_describes_connection(
    gateway: Gateway,
    invoker: FakeInvoker,
    connected: tuple[RawWebSocket, str],
    http: aiohttp.ClientSession,
    path: str,
) -> None:
    client, connection_id = connected
    connect = invoker.events_of("connect")[0]
    url = connection_url(gateway, path, connection_id)
    async with http.get(url) as reply:
        assert reply.status == 200
        first = await reply.json()

    assert set(first) == {"connectedAt", "identity", "lastActiveAt"}
    assert ISO_8601.match(first["connectedAt"])
    assert ISO_8601.match(first["lastActiveAt"])
    assert first["connectedAt"] == format_iso8601(connect["requestContext"]["connectedAt"] / 1000)
    assert first["identity"] == {"sourceIp": "127.0.0.1", "userAgent": "raw/1"}
    assert first["lastActiveAt"] >= first["connectedAt"]

    # A message from the client moves lastActiveAt forward.
    await asyncio.sleep(0.01)
    await client.send_text("activity")
    await invoker.next_event("default")
    async with http.get(url) as reply:
        second = await reply.json()
    assert second["lastActiveAt"] > first["lastActiveAt"]
    assert second["connectedAt"] == first["connectedAt"]


@pytest.mark.parametrize("path", PATHS)
async def test_delete_closes_with_1000(
    gateway: Gateway,
    invoker: FakeInvoker,
    connected: tuple[RawWebSocket, str],
    http: aiohttp.ClientSession,
    path: str,
) -> None:
    client, connection_id = connected
    url = connection_url(gateway, path, connection_id)
    async with http.delete(url) as reply:
        assert reply.status == 204
        assert await reply.read() == b""
    assert (await client.answer_close())[0] == 1000

    async with http.get(url) as reply:
        await check_error(reply, 410, "GoneException")
    disconnect = await invoker.next_event("disconnect")
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1000
    async with http.delete(url) as reply:
        await check_error(reply, 410, "GoneException")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", ["POST", "GET", "DELETE"])
async def test_unknown_id_is_410(
    gateway: Gateway, http: aiohttp.ClientSession, path: str, method: str
) -> None:
    url = connection_url(gateway, path, "AAAAAAAAAAAAAAA=")
    async with http.request(method, url, data=b"x") as reply:
        await check_error(reply, 410, "GoneException")


@pytest.mark.parametrize("path", PATHS)
async def test_closed_connection_is_410(
    gateway: Gateway, invoker: FakeInvoker, http: aiohttp.ClientSession, path: str
) -> None:
    client, connection_id = await open_raw(gateway, invoker)
    await client.close()
    await invoker.next_event("disconnect")
    for method in ("POST", "GET", "DELETE"):
        async with http.request(method, connection_url(gateway, path, connection_id)) as reply:
            await check_error(reply, 410, "GoneException")


@pytest.mark.parametrize("path", PATHS)
async def test_post_over_128_kib_is_413(
    gateway: Gateway,
    connected: tuple[RawWebSocket, str],
    http: aiohttp.ClientSession,
    path: str,
) -> None:
    client, connection_id = connected
    url = connection_url(gateway, path, connection_id)
    async with http.post(url, data=b"a" * (128 * 1024 + 1)) as reply:
        await check_error(reply, 413, "PayloadTooLargeException")

    async def chunked_body() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"b" * 32 * 1024

    async with http.post(url, data=chunked_body()) as reply:
        await check_error(reply, 413, "PayloadTooLargeException")

    async with http.post(url, data=b"c" * (128 * 1024)) as reply:
        assert reply.status == 200
    assert await client.read_frame() == (OP_TEXT, b"c" * (128 * 1024))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", ["PUT", "PATCH", "OPTIONS", "HEAD"])
async def test_other_method_is_403(
    gateway: Gateway,
    connected: tuple[RawWebSocket, str],
    http: aiohttp.ClientSession,
    path: str,
    method: str,
) -> None:
    _, connection_id = connected
    async with http.request(method, connection_url(gateway, path, connection_id)) as reply:
        assert reply.status == 403
        assert reply.headers["x-amzn-ErrorType"] == "ForbiddenException"
        if method != "HEAD":
            assert "is not supported" in (await reply.json())["message"]


async def test_wrong_stage_is_403(
    gateway: Gateway, connected: tuple[RawWebSocket, str], http: aiohttp.ClientSession
) -> None:
    _, connection_id = connected
    url = f"http://127.0.0.1:{gateway.port}/prod/@connections/{quote(connection_id)}"
    async with http.get(url) as reply:
        await check_error(reply, 403, "ForbiddenException")


@pytest.mark.parametrize("path", PATHS)
async def test_client_not_reading_gets_429(
    gateway: Gateway, invoker: FakeInvoker, http: aiohttp.ClientSession, path: str
) -> None:
    client, connection_id = await open_raw(gateway, invoker, receive_buffer=4096)
    url = connection_url(gateway, path, connection_id)
    chunk = b"m" * (100 * 1024)
    sent = 0
    for _ in range(400):
        async with http.post(url, data=chunk) as reply:
            if reply.status == 429:
                await check_error(reply, 429, "LimitExceededException")
                break
            assert reply.status == 200
            sent += 1
    else:
        pytest.fail("the management API never answered 429")
    assert sent > 0

    # Read-only look at the gateway's state: its buffer for the client stays bounded.
    connection = gateway._registry.get(connection_id)
    assert connection is not None
    assert connection.transport.get_write_buffer_size() <= SEND_BUFFER_HIGH_WATER

    # Once the client reads again, posting works again.
    for _ in range(sent):
        assert await client.read_frame() == (OP_TEXT, chunk)
    async with http.post(url, data=b"again") as reply:
        assert reply.status == 200
    assert await client.read_frame() == (OP_TEXT, b"again")
    client.drop()


@pytest.mark.parametrize("path", PATHS)
async def test_boto3_client(
    gateway: Gateway,
    invoker: FakeInvoker,
    connected: tuple[RawWebSocket, str],
    path: str,
) -> None:
    client, connection_id = connected
    endpoint = {
        "main": gateway.management_url,
        "staged": f"{gateway.management_url}/testing",
        "internal": f"http://127.0.0.1:{gateway.internal_port}/_arc/ws",
    }[path]
    api = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint,
        region_name="us-west-2",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )

    await asyncio.to_thread(api.post_to_connection, ConnectionId=connection_id, Data=b"via boto3")
    assert await client.read_frame() == (OP_TEXT, b"via boto3")

    info = await asyncio.to_thread(api.get_connection, ConnectionId=connection_id)
    assert isinstance(info["ConnectedAt"], datetime)
    assert info["ConnectedAt"].tzinfo is not None
    assert info["ConnectedAt"] <= datetime.now(timezone.utc)
    assert info["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "raw/1"}

    await asyncio.to_thread(api.delete_connection, ConnectionId=connection_id)
    assert (await client.answer_close())[0] == 1000
    await invoker.next_event("disconnect")

    with pytest.raises(api.exceptions.GoneException):
        await asyncio.to_thread(api.post_to_connection, ConnectionId=connection_id, Data=b"x")
    with pytest.raises(api.exceptions.PayloadTooLargeException):
        await asyncio.to_thread(
            api.post_to_connection, ConnectionId=connection_id, Data=b"x" * (200 * 1024)
        )


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        (None, True),
        ("10.0.0.5", False),
        ("192.168.1.2", False),
        ("2001:db8::1", False),
        ("not-an-address", False),
    ],
)
def test_is_loopback_peer(address: str | None, loopback: bool) -> None:
    assert is_loopback_peer(address) is loopback


@pytest.mark.parametrize(("allow", "status"), [(False, 403), (True, 410)])
async def test_remote_peer_needs_permission(allow: bool, status: int) -> None:
    # No test may send from a non-loopback address, so the peer is simulated.
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        ("10.0.0.5", 40000) if name == "peername" else default
    )
    request = make_mocked_request(
        "GET",
        "/@connections/AAAAAAAAAAAAAAA%3D",
        match_info={"connection_id": "AAAAAAAAAAAAAAA="},
        transport=transport,
    )
    api = ManagementApi(ConnectionRegistry(), Options(allow_remote_management=allow))
    reply = await api.handle(request)
    assert reply.status == status
    expected = "ForbiddenException" if status == 403 else "GoneException"
    assert reply.headers["x-amzn-ErrorType"] == expected


def test_format_iso8601() -> None:
    assert format_iso8601(1796412166.789) == "2026-12-04T19:22:46.789Z"
    assert format_iso8601(0) == "1970-01-01T00:00:00.000Z"
