"""What the client receives: route responses, error frames, size limits, binary frames."""

from __future__ import annotations

import json
import logging

import aiohttp
import pytest
from websockets.asyncio.client import connect as websockets_connect
from websockets.exceptions import ConnectionClosedError

from emulator.gateway import Gateway
from emulator.invocation import ERROR_EXIT, ERROR_OUT_OF_MEMORY, ERROR_THROTTLED, ERROR_TIMEOUT

from .clients import OP_BINARY, OP_CONTINUATION, OP_TEXT, RawWebSocket, client_frame, frame_header
from .conftest import GatewayFactory
from .fakes import Event, FakeInvoker, InvocationFailure, hang

pytestmark = pytest.mark.timeout(20)

KIB = 1024


async def post(
    http: aiohttp.ClientSession, gateway: Gateway, connection_id: str, data: bytes
) -> int:
    url = f"http://127.0.0.1:{gateway.port}/@connections/{connection_id}"
    async with http.post(url, data=data) as reply:
        return reply.status


async def open_raw(gateway: Gateway, invoker: FakeInvoker) -> tuple[RawWebSocket, str]:
    client = await RawWebSocket.open(gateway.port)
    assert client.handshake.status == 101
    connect = await invoker.next_event("connect")
    return client, connect["requestContext"]["connectionId"]


async def test_route_response_off_by_default(
    gateway: Gateway, invoker: FakeInvoker, http: aiohttp.ClientSession
) -> None:
    invoker.on("echo", lambda event: {"statusCode": 200, "body": "reply"})
    client, connection_id = await open_raw(gateway, invoker)
    await client.send_text('{"action": "echo"}')
    await invoker.next_finished("echo")
    # The next frame the client gets is the marker, so no route response came first.
    assert await post(http, gateway, connection_id, b"marker") == 200
    assert await client.read_frame() == (OP_TEXT, b"marker")
    await client.close()


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"statusCode": 200, "body": "reply"}, "reply"),
        ({"body": '{"n": 1}'}, '{"n": 1}'),
        ({"statusCode": 200, "body": {"n": 1}}, '{"n": 1}'),
    ],
)
async def test_route_response_sends_body(
    start_gateway: GatewayFactory, invoker: FakeInvoker, result: object, expected: str
) -> None:
    gateway = await start_gateway(route_responses=True)
    invoker.on("echo", lambda event: result)
    client, _ = await open_raw(gateway, invoker)
    await client.send_text('{"action": "echo"}')
    assert await client.read_frame() == (OP_TEXT, expected.encode())
    await client.close()


@pytest.mark.parametrize("result", [None, {"statusCode": 200}, "text"])
async def test_route_response_without_body_sends_nothing(
    start_gateway: GatewayFactory, invoker: FakeInvoker, http: aiohttp.ClientSession, result: object
) -> None:
    gateway = await start_gateway(route_responses=True)
    invoker.on("default", lambda event: result)
    client, connection_id = await open_raw(gateway, invoker)
    await client.send_text("hello")
    await invoker.next_finished("default")
    assert await post(http, gateway, connection_id, b"marker") == 200
    assert await client.read_frame() == (OP_TEXT, b"marker")
    await client.close()


def raise_error(event: Event) -> object:
    raise RuntimeError("boom")


def failure(error_type: str) -> object:
    def handler(event: Event) -> object:
        raise InvocationFailure(error_type, "failed")

    return handler


@pytest.mark.parametrize(
    ("handler", "expected_log"),
    [
        (raise_error, "raised RuntimeError: boom"),
        (failure(ERROR_TIMEOUT), "timed out"),
        (failure(ERROR_EXIT), "crashed"),
        (failure(ERROR_OUT_OF_MEMORY), "crashed"),
        (failure(ERROR_THROTTLED), "was throttled"),
        (hang, "integration timeout of 0.3 s"),
    ],
    ids=["raised", "lambda-timeout", "exit", "out-of-memory", "throttled", "integration-timeout"],
)
async def test_failed_invocation_sends_error_frame(
    start_gateway: GatewayFactory,
    invoker: FakeInvoker,
    caplog: pytest.LogCaptureFixture,
    handler: object,
    expected_log: str,
) -> None:
    gateway = await start_gateway(integration_timeout=0.3, route_responses=True)
    invoker.on("echo", handler)  # type: ignore[arg-type]
    client, connection_id = await open_raw(gateway, invoker)
    await client.send_text('{"action": "echo"}')
    event = await invoker.next_event("echo")

    opcode, payload = await client.read_frame()
    assert opcode == OP_TEXT
    assert json.loads(payload) == {
        "message": "Internal server error",
        "connectionId": connection_id,
        "requestId": event["requestContext"]["requestId"],
    }
    errors = [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("emulator.gateway") and record.levelno >= logging.ERROR
    ]
    assert any(expected_log in line and connection_id in line for line in errors)
    # The connection stays open after a failed message.
    await client.send_text("again")
    assert (await invoker.next_event("default"))["body"] == "again"
    await client.close()


async def test_binary_frame_closes_with_1003(
    gateway: Gateway, invoker: FakeInvoker, caplog: pytest.LogCaptureFixture
) -> None:
    client, connection_id = await open_raw(gateway, invoker)
    await client.send(OP_BINARY, b"\x00\x01")
    assert (await client.answer_close())[0] == 1003
    assert any(
        "binary frame" in record.getMessage() and connection_id in record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING
    )
    assert invoker.events_of("default") == []
    client.drop()


async def test_binary_frame_with_aiohttp_client(
    gateway: Gateway, invoker: FakeInvoker, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"http://127.0.0.1:{gateway.port}/") as ws:
        await ws.send_bytes(b"data")
        message = await ws.receive()
        assert message.type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 1003


async def test_frame_at_limit_is_accepted(gateway: Gateway, invoker: FakeInvoker) -> None:
    client, _ = await open_raw(gateway, invoker)
    await client.send_text("x" * (32 * KIB))
    assert len((await invoker.next_event("default"))["body"]) == 32 * KIB
    await client.close()


async def test_frame_over_limit_closes_with_1009(
    gateway: Gateway, invoker: FakeInvoker, caplog: pytest.LogCaptureFixture
) -> None:
    client, _ = await open_raw(gateway, invoker)
    await client.send_text("small")
    await client.send_text("x" * (32 * KIB + 1))
    assert (await client.read_close())[0] == 1009
    # The frame before the oversized one was still delivered.
    assert (await invoker.next_event("default"))["body"] == "small"
    assert len(invoker.events_of("default")) == 1
    assert any(
        "exceeds the frame limit of 32768 bytes" in record.getMessage() for record in caplog.records
    )
    client.drop()


async def test_oversized_frame_rejected_by_header_alone(
    gateway: Gateway, invoker: FakeInvoker
) -> None:
    client, _ = await open_raw(gateway, invoker)
    # Declare 10 MB and send no payload: the header alone must end the connection.
    client.send_raw(frame_header(OP_TEXT, 10_000_000, mask=b"abcd"))
    assert (await client.read_close())[0] == 1009
    client.drop()


async def test_oversized_frame_header_split_across_reads(
    gateway: Gateway, invoker: FakeInvoker
) -> None:
    client, _ = await open_raw(gateway, invoker)
    header = frame_header(OP_TEXT, 40_000, mask=b"abcd")
    client.send_raw(header[:1])
    await client.writer.drain()
    client.send_raw(header[1:3])
    await client.writer.drain()
    client.send_raw(header[3:])
    assert (await client.read_close())[0] == 1009
    client.drop()


async def test_message_at_limit_in_fragments_is_accepted(
    gateway: Gateway, invoker: FakeInvoker
) -> None:
    client, _ = await open_raw(gateway, invoker)
    chunk = b"y" * (32 * KIB)
    await client.send(OP_TEXT, chunk, fin=False)
    await client.send(OP_CONTINUATION, chunk, fin=False)
    await client.send(OP_CONTINUATION, chunk, fin=False)
    await client.send(OP_CONTINUATION, chunk, fin=True)
    assert len((await invoker.next_event("default"))["body"]) == 128 * KIB
    await client.close()


async def test_message_over_limit_closes_with_1009(
    gateway: Gateway, invoker: FakeInvoker, caplog: pytest.LogCaptureFixture
) -> None:
    client, _ = await open_raw(gateway, invoker)
    chunk = b"y" * (32 * KIB)
    for _ in range(4):
        await client.send(OP_TEXT if _ == 0 else OP_CONTINUATION, chunk, fin=False)
    await client.send(OP_CONTINUATION, b"z", fin=True)
    assert (await client.read_close())[0] == 1009
    assert invoker.events_of("default") == []
    assert any(
        "a message exceeds the limit of 131072 bytes" in record.getMessage()
        for record in caplog.records
    )
    client.drop()


async def test_small_size_limits_from_options(
    start_gateway: GatewayFactory, invoker: FakeInvoker
) -> None:
    gateway = await start_gateway(max_frame_bytes=100, max_message_bytes=250)
    client, _ = await open_raw(gateway, invoker)
    await client.send_text("a" * 100)
    assert len((await invoker.next_event("default"))["body"]) == 100
    await client.send(OP_TEXT, b"b" * 100, fin=False)
    await client.send(OP_CONTINUATION, b"b" * 100, fin=False)
    await client.send(OP_CONTINUATION, b"b" * 50, fin=True)
    assert len((await invoker.next_event("default"))["body"]) == 250
    await client.send_text("c" * 101)
    assert (await client.read_close())[0] == 1009
    client.drop()

    client, _ = await open_raw(gateway, invoker)
    for index in range(3):
        await client.send(OP_TEXT if index == 0 else OP_CONTINUATION, b"d" * 100, fin=False)
    assert (await client.read_close())[0] == 1009
    client.drop()


async def test_oversized_message_with_websockets_client(
    gateway: Gateway, invoker: FakeInvoker
) -> None:
    async with websockets_connect(f"ws://127.0.0.1:{gateway.port}/", max_size=None) as ws:
        await ws.send("m" * (200 * KIB))
        with pytest.raises(ConnectionClosedError) as caught:
            await ws.recv()
    assert caught.value.rcvd is not None
    assert caught.value.rcvd.code == 1009


async def test_frames_sent_before_101_pass_the_guard(
    gateway: Gateway, invoker: FakeInvoker
) -> None:
    early = client_frame(OP_TEXT, b"early bird")
    client = await RawWebSocket.open(gateway.port, early=early)
    assert client.handshake.status == 101
    assert (await invoker.next_event("default"))["body"] == "early bird"
    await client.close()

    oversized = frame_header(OP_TEXT, 50_000, mask=b"abcd")
    client = await RawWebSocket.open(gateway.port, early=oversized)
    assert client.handshake.status == 101
    assert (await client.read_close())[0] == 1009
    client.drop()


async def test_ping_is_answered(gateway: Gateway, invoker: FakeInvoker) -> None:
    client, _ = await open_raw(gateway, invoker)
    await client.send(0x9, b"are you there")
    assert await client.read_frame() == (0xA, b"are you there")
    await client.close()
