"""The CONNECT, MESSAGE and DISCONNECT events, as the invoker receives them."""

from __future__ import annotations

import re
import time

import aiohttp
import pytest
from multidict import CIMultiDict

from emulator.gateway import Gateway
from emulator.gateway.events import format_request_time
from emulator.gateway.ids import new_api_id, new_connection_id, new_message_id, new_request_id

from .clients import RawWebSocket
from .conftest import GatewayFactory
from .fakes import Event, FakeInvoker

pytestmark = pytest.mark.timeout(20)

AWS_ID = re.compile(r"^[A-Za-z0-9]{15}=$")
API_ID = re.compile(r"^[a-z0-9]{10}$")
REQUEST_TIME = re.compile(
    r"^\d{2}/(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d{2}:\d{2}:\d{2} \+0000$"
)
COMMON_CONTEXT_KEYS = {
    "routeKey",
    "eventType",
    "extendedRequestId",
    "requestTime",
    "messageDirection",
    "stage",
    "connectedAt",
    "requestTimeEpoch",
    "identity",
    "requestId",
    "domainName",
    "connectionId",
    "apiId",
}


def check_common_context(event: Event, port: int, stage: str = "testing") -> None:
    context = event["requestContext"]
    assert event["isBase64Encoded"] is False
    assert AWS_ID.match(context["requestId"])
    assert context["extendedRequestId"] == context["requestId"]
    assert AWS_ID.match(context["connectionId"])
    assert API_ID.match(context["apiId"])
    assert context["messageDirection"] == "IN"
    assert context["stage"] == stage
    assert context["domainName"] == f"127.0.0.1:{port}"
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert REQUEST_TIME.match(context["requestTime"])
    assert context["requestTime"] == format_request_time(context["requestTimeEpoch"])
    assert isinstance(context["connectedAt"], int)


def test_ids_have_aws_shapes() -> None:
    for make in (new_connection_id, new_request_id, new_message_id):
        values = {make() for _ in range(200)}
        assert len(values) == 200
        assert all(AWS_ID.match(value) for value in values)
    assert API_ID.match(new_api_id())


def test_request_time_format() -> None:
    # 2026-12-04T19:22:46.789Z
    assert format_request_time(1796412166789) == "04/Dec/2026:19:22:46 +0000"
    assert format_request_time(0) == "01/Jan/1970:00:00:00 +0000"


async def test_connect_event_fields(
    start_gateway: GatewayFactory, invoker: FakeInvoker, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(stage="dev")
    before = int(time.time() * 1000)
    headers = CIMultiDict(
        [("User-Agent", "test-agent/1.0"), ("X-Custom", "one"), ("X-Dup", "1"), ("X-Dup", "2")]
    )
    url = f"http://127.0.0.1:{gateway.port}/some/path?a=1&b=2&a=3&empty="
    async with http.ws_connect(url, headers=headers):
        event = await invoker.next_event("connect")
    after = int(time.time() * 1000)

    check_common_context(event, gateway.port, stage="dev")
    context = event["requestContext"]
    assert set(context) == COMMON_CONTEXT_KEYS
    assert context["routeKey"] == "$connect"
    assert context["eventType"] == "CONNECT"
    assert before <= context["requestTimeEpoch"] <= after
    assert context["connectedAt"] == context["requestTimeEpoch"]
    assert context["identity"]["userAgent"] == "test-agent/1.0"

    assert event["headers"]["X-Custom"] == "one"
    assert event["headers"]["Host"] == f"127.0.0.1:{gateway.port}"
    assert event["headers"]["Upgrade"] == "websocket"
    assert "Sec-WebSocket-Key" in event["headers"]
    assert event["headers"]["X-Dup"] == "2"
    assert event["multiValueHeaders"]["X-Dup"] == ["1", "2"]
    assert event["multiValueHeaders"]["X-Custom"] == ["one"]
    assert event["queryStringParameters"] == {"a": "3", "b": "2", "empty": ""}
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "3"], "b": ["2"], "empty": [""]}
    assert "body" not in event
    assert "messageId" not in context


async def test_connect_event_without_query(
    gateway: Gateway, invoker: FakeInvoker, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"http://127.0.0.1:{gateway.port}/"):
        event = await invoker.next_event("connect")
    assert "queryStringParameters" not in event
    assert "multiValueQueryStringParameters" not in event


async def test_connect_event_headers_keep_case(gateway: Gateway, invoker: FakeInvoker) -> None:
    client = await RawWebSocket.open(gateway.port, headers=[("x-lower-case", "v")])
    event = await invoker.next_event("connect")
    assert event["headers"]["x-lower-case"] == "v"
    assert event["requestContext"]["identity"]["userAgent"] is None
    client.drop()


async def test_message_event_fields(
    gateway: Gateway, invoker: FakeInvoker, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"http://127.0.0.1:{gateway.port}/") as ws:
        connect = await invoker.next_event("connect")
        await ws.send_str("first")
        first = await invoker.next_event("default")
        await ws.send_str('{"action": "echo", "n": 2}')
        second = await invoker.next_event("echo")

    for event in (first, second):
        check_common_context(event, gateway.port)
        context = event["requestContext"]
        assert set(context) == COMMON_CONTEXT_KEYS | {"messageId"}
        assert context["eventType"] == "MESSAGE"
        assert AWS_ID.match(context["messageId"])
        assert context["connectedAt"] == connect["requestContext"]["connectedAt"]
        assert context["connectionId"] == connect["requestContext"]["connectionId"]
        assert context["apiId"] == connect["requestContext"]["apiId"]
        assert "headers" not in event
        assert "multiValueHeaders" not in event
        assert "queryStringParameters" not in event

    assert first["body"] == "first"
    assert second["body"] == '{"action": "echo", "n": 2}'
    assert first["requestContext"]["routeKey"] == "$default"
    assert second["requestContext"]["routeKey"] == "echo"
    request_ids = {
        connect["requestContext"]["requestId"],
        first["requestContext"]["requestId"],
        second["requestContext"]["requestId"],
    }
    assert len(request_ids) == 3
    assert first["requestContext"]["messageId"] != second["requestContext"]["messageId"]


async def test_disconnect_event_fields(
    gateway: Gateway, invoker: FakeInvoker, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"http://127.0.0.1:{gateway.port}/") as ws:
        connect = await invoker.next_event("connect")
        await ws.close(code=4001, message=b"done here")
    event = await invoker.next_event("disconnect")

    check_common_context(event, gateway.port)
    context = event["requestContext"]
    assert set(context) == COMMON_CONTEXT_KEYS | {"disconnectStatusCode", "disconnectReason"}
    assert context["routeKey"] == "$disconnect"
    assert context["eventType"] == "DISCONNECT"
    assert context["disconnectStatusCode"] == 4001
    assert context["disconnectReason"] == "done here"
    assert context["connectedAt"] == connect["requestContext"]["connectedAt"]
    assert context["connectionId"] == connect["requestContext"]["connectionId"]
    assert context["requestTimeEpoch"] >= context["connectedAt"]
    host = f"127.0.0.1:{gateway.port}"
    assert event["headers"] == {
        "Host": host,
        "x-api-key": "",
        "X-Forwarded-For": "",
        "x-restapi": "",
    }
    assert event["multiValueHeaders"] == {
        "Host": [host],
        "x-api-key": [""],
        "X-Forwarded-For": [""],
        "x-restapi": [""],
    }
    assert "body" not in event
    assert "messageId" not in context


async def test_events_are_compact_json(
    gateway: Gateway, invoker: FakeInvoker, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"http://127.0.0.1:{gateway.port}/") as ws:
        await ws.send_str("x")
        await invoker.next_event("default")
    await invoker.next_event("disconnect")
    for _, raw in invoker.raw_events:
        assert b'"isBase64Encoded":false' in raw
        assert b'", "' not in raw
        assert b'": ' not in raw
