"""The upgrade request and `$connect`: accept, reject, fail, time out."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest
from websockets.asyncio.client import connect as websockets_connect

from emulator.gateway import Gateway
from emulator.invocation import ERROR_EXIT, ERROR_THROTTLED, ERROR_TIMEOUT

from .clients import RawWebSocket
from .conftest import GatewayFactory
from .fakes import Event, FakeInvoker, InvocationFailure, hang

pytestmark = pytest.mark.timeout(20)


def gateway_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("emulator.gateway") and record.levelno >= logging.ERROR
    ]


def gateway_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("emulator.gateway") and record.levelno == logging.WARNING
    ]


async def test_accept_passes_headers_and_subprotocol(
    gateway: Gateway, invoker: FakeInvoker
) -> None:
    invoker.on(
        "connect",
        lambda event: {
            "statusCode": 200,
            "headers": {"X-Reply": "yes", "Sec-WebSocket-Protocol": "superchat"},
            "multiValueHeaders": {"X-Multi": ["a", "b"]},
        },
    )
    uri = f"ws://127.0.0.1:{gateway.port}/"
    async with websockets_connect(uri, subprotocols=["chat", "superchat"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "superchat"
        response = ws.response
        assert response is not None
        assert response.headers["X-Reply"] == "yes"
        assert response.headers.get_all("X-Multi") == ["a", "b"]
        assert gateway.connection_count == 1


async def test_accept_any_2xx(gateway: Gateway, invoker: FakeInvoker) -> None:
    invoker.on("connect", lambda event: {"statusCode": 204})
    client = await RawWebSocket.open(gateway.port)
    assert client.handshake.status == 101
    await client.close()


async def test_no_subprotocol_chosen_when_handler_chooses_none(
    gateway: Gateway, invoker: FakeInvoker, caplog: pytest.LogCaptureFixture
) -> None:
    client = await RawWebSocket.open(gateway.port, headers=[("Sec-WebSocket-Protocol", "a, b")])
    assert client.handshake.status == 101
    assert "sec-websocket-protocol" not in client.handshake.headers
    assert any("offered subprotocols a, b" in line for line in gateway_warnings(caplog))
    await client.close()


async def test_handler_subprotocol_passes_unoffered(
    gateway: Gateway, invoker: FakeInvoker, caplog: pytest.LogCaptureFixture
) -> None:
    invoker.on(
        "connect", lambda event: {"statusCode": 200, "headers": {"sec-websocket-protocol": "x"}}
    )
    client = await RawWebSocket.open(gateway.port)
    assert client.handshake.status == 101
    assert client.handshake.headers["sec-websocket-protocol"] == "x"
    assert any("did not offer" in line for line in gateway_warnings(caplog))
    await client.close()


async def test_reject_with_status_and_body(
    gateway: Gateway, invoker: FakeInvoker, http: aiohttp.ClientSession
) -> None:
    invoker.on(
        "connect",
        lambda event: {"statusCode": 401, "body": "nope", "headers": {"X-Why": "token"}},
    )
    client = await RawWebSocket.open(gateway.port)
    assert client.handshake.status == 401
    assert client.handshake.body == b"nope"
    assert client.handshake.headers["x-why"] == "token"
    # The gateway closes the TCP connection after a rejection.
    assert await asyncio.wait_for(client.reader.read(), 5) == b""
    client.drop()

    connection_id = (await invoker.next_event("connect"))["requestContext"]["connectionId"]
    async with http.get(f"http://127.0.0.1:{gateway.port}/@connections/{connection_id}") as reply:
        assert reply.status == 410
    assert gateway.connection_count == 0
    await gateway.stop()
    assert invoker.events_of("disconnect") == []


async def test_reject_redirect_keeps_location(gateway: Gateway, invoker: FakeInvoker) -> None:
    invoker.on("connect", lambda event: {"statusCode": 302, "headers": {"Location": "/elsewhere"}})
    client = await RawWebSocket.open(gateway.port)
    assert client.handshake.status == 302
    assert client.handshake.headers["location"] == "/elsewhere"
    client.drop()


async def test_aiohttp_client_sees_rejection(
    gateway: Gateway, invoker: FakeInvoker, http: aiohttp.ClientSession
) -> None:
    invoker.on("connect", lambda event: {"statusCode": 403})
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await http.ws_connect(f"http://127.0.0.1:{gateway.port}/")
    assert caught.value.status == 403


def raise_error(event: Event) -> object:
    raise ValueError("bad token")


def lambda_timeout(event: Event) -> object:
    raise InvocationFailure(ERROR_TIMEOUT, "Task timed out after 5.00 seconds")


def crash(event: Event) -> object:
    raise InvocationFailure(ERROR_EXIT, "Runtime exited with error: exit status 1")


def throttle(event: Event) -> object:
    raise InvocationFailure(ERROR_THROTTLED, "Rate Exceeded.")


@pytest.mark.parametrize(
    ("handler", "expected_log"),
    [
        (raise_error, "raised ValueError: bad token"),
        (lambda_timeout, "timed out (Sandbox.Timedout"),
        (crash, "crashed (Runtime.ExitError"),
        (throttle, "was throttled"),
        (lambda event: None, "returned no valid statusCode"),
        (lambda event: "ok", "returned no valid statusCode"),
        (lambda event: {"body": "x"}, "returned no valid statusCode"),
        (lambda event: {"statusCode": "abc"}, "returned no valid statusCode"),
        (lambda event: {"statusCode": 700}, "returned no valid statusCode"),
        (lambda event: {"statusCode": 101}, "returned no valid statusCode"),
        (lambda event: {"statusCode": True}, "returned no valid statusCode"),
    ],
    ids=[
        "raised",
        "lambda-timeout",
        "crashed",
        "throttled",
        "null",
        "string",
        "no-status",
        "text-status",
        "status-700",
        "status-101",
        "status-true",
    ],
)
async def test_failed_connect_is_502(
    gateway: Gateway,
    invoker: FakeInvoker,
    caplog: pytest.LogCaptureFixture,
    handler: object,
    expected_log: str,
) -> None:
    invoker.on("connect", handler)  # type: ignore[arg-type]
    client = await RawWebSocket.open(gateway.port)
    assert client.handshake.status == 502
    assert client.handshake.body == b'{"message": "Internal server error"}'
    client.drop()
    errors = gateway_errors(caplog)
    assert len(errors) == 1
    assert "with 502" in errors[0]
    assert expected_log in errors[0]


async def test_connect_integration_timeout_is_504(
    start_gateway: GatewayFactory, invoker: FakeInvoker, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await start_gateway(integration_timeout=0.3)
    invoker.on("connect", hang)
    client = await RawWebSocket.open(gateway.port)
    assert client.handshake.status == 504
    client.drop()
    errors = gateway_errors(caplog)
    assert any("integration timeout of 0.3 s" in line for line in errors)


async def test_management_api_410_while_connect_runs(
    gateway: Gateway, invoker: FakeInvoker, http: aiohttp.ClientSession
) -> None:
    release = asyncio.Event()

    async def slow_connect(event: Event) -> object:
        await release.wait()
        return {"statusCode": 200}

    invoker.on("connect", slow_connect)
    opening = asyncio.create_task(RawWebSocket.open(gateway.port))
    connection_id = (await invoker.next_event("connect"))["requestContext"]["connectionId"]

    for base in (
        f"http://127.0.0.1:{gateway.port}/@connections",
        f"http://127.0.0.1:{gateway.port}/testing/@connections",
        f"http://127.0.0.1:{gateway.internal_port}/_arc/ws/@connections",
    ):
        url = f"{base}/{connection_id}"
        for method in ("GET", "POST", "DELETE"):
            async with http.request(method, url, data=b"hi") as reply:
                assert reply.status == 410
                assert reply.headers["x-amzn-ErrorType"] == "GoneException"
                assert "$connect is still running" in (await reply.json())["message"]

    release.set()
    client = await opening
    assert client.handshake.status == 101
    url = f"http://127.0.0.1:{gateway.port}/@connections/{connection_id}"
    async with http.post(url, data=b"now") as reply:
        assert reply.status == 200
    assert await client.read_frame() == (1, b"now")
    await client.close()


async def test_client_leaving_during_connect_gets_disconnect(
    gateway: Gateway, invoker: FakeInvoker
) -> None:
    release = asyncio.Event()

    async def slow_connect(event: Event) -> object:
        await release.wait()
        return {"statusCode": 200}

    invoker.on("connect", slow_connect)
    _, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    connect = await invoker.next_event("connect")
    writer.transport.abort()
    release.set()

    disconnect = await invoker.next_event("disconnect")
    assert disconnect["requestContext"]["connectionId"] == connect["requestContext"]["connectionId"]
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1006
    assert gateway.connection_count == 0
    await gateway.stop()
    assert len(invoker.events_of("disconnect")) == 1


async def test_plain_http_request_is_426(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"http://127.0.0.1:{gateway.port}/anything") as reply:
        assert reply.status == 426
        assert reply.headers["Upgrade"] == "websocket"


async def test_upgrade_accepted_on_any_path(
    gateway: Gateway, invoker: FakeInvoker, http: aiohttp.ClientSession
) -> None:
    for path in ("/", "/testing", "/a/b/c", "/_emulator"):
        async with http.ws_connect(f"http://127.0.0.1:{gateway.port}{path}") as ws:
            await ws.send_str(path)
            assert (await invoker.next_event("default"))["body"] == path
