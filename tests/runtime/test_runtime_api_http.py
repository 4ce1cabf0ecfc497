"""HTTP/1.1 edge cases of the Runtime API server, over raw sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest

from emulator.worker.runtime_api import RuntimeApi, RuntimeOutcome

from .helpers import FUNCTION_ARN

NEXT = "/2018-06-01/runtime/invocation/next"
TIMEOUT = 10.0
LIMIT = 1024


def response_path(request_id: str) -> str:
    return f"/2018-06-01/runtime/invocation/{request_id}/response"


def error_path(request_id: str) -> str:
    return f"/2018-06-01/runtime/invocation/{request_id}/error"


class Reply:
    def __init__(self, version: str, status: int, headers: dict[str, str], body: bytes) -> None:
        self.version = version
        self.status = status
        self.headers = headers
        self.body = body


class Raw:
    """One raw TCP connection that writes bytes and parses responses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def receive(self) -> Reply:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(self.reader.readexactly(length), TIMEOUT)
        version, status, _ = status_line.split(" ", 2)
        return Reply(version, int(status), headers, body)

    async def at_eof(self) -> bool:
        """Whether the server closed the connection (reads until it does or times out)."""
        try:
            data = await asyncio.wait_for(self.reader.read(), TIMEOUT)
        except ConnectionResetError:
            return True
        return data == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@pytest.fixture
async def api() -> AsyncIterator[RuntimeApi]:
    server = RuntimeApi(function_arn=FUNCTION_ARN, max_payload_bytes=LIMIT)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def raw(api: RuntimeApi) -> AsyncIterator[Raw]:
    connection = await Raw.open(api.port)
    try:
        yield connection
    finally:
        await connection.close()


def start_invoke(api: RuntimeApi, request_id: str = "request-1") -> asyncio.Task[RuntimeOutcome]:
    return asyncio.ensure_future(api.invoke(request_id, b'{"n": 1}', 1_900_000_000_000, "trace"))


def request(method: str, path: str, body: bytes = b"", extra: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


async def fetch(raw: Raw, api: RuntimeApi, request_id: str) -> asyncio.Task[RuntimeOutcome]:
    """Start an invocation and read its event with GET /next on `raw`."""
    task = start_invoke(api, request_id)
    await raw.send(request("GET", NEXT))
    reply = await raw.receive()
    assert reply.status == 200
    assert reply.headers["lambda-runtime-aws-request-id"] == request_id
    return task


async def outcome_of(task: asyncio.Task[RuntimeOutcome]) -> RuntimeOutcome:
    return await asyncio.wait_for(task, TIMEOUT)


async def test_pipelined_requests_answered_in_order(api: RuntimeApi, raw: Raw) -> None:
    task = await fetch(raw, api, "request-1")
    # A wrong id, the right one, then GET /next, all in one write.
    await raw.send(
        request("POST", response_path("other"), b"0")
        + request("POST", response_path("request-1"), b"1")
        + request("GET", NEXT)
    )
    assert (await raw.receive()).status == 400
    assert (await raw.receive()).status == 202
    assert (await outcome_of(task)).response == b"1"

    second = start_invoke(api, "request-2")
    reply = await raw.receive()
    assert reply.status == 200
    assert reply.headers["lambda-runtime-aws-request-id"] == "request-2"
    second.cancel()


async def test_request_split_into_single_bytes(api: RuntimeApi, raw: Raw) -> None:
    task = await fetch(raw, api, "request-1")
    for byte in request("POST", response_path("request-1"), b'{"ok": 1}'):
        await raw.send(bytes([byte]))
    assert (await raw.receive()).status == 202
    assert (await outcome_of(task)).response == b'{"ok": 1}'


async def test_http_1_0_closes_by_default(api: RuntimeApi, raw: Raw) -> None:
    await raw.send(
        b"POST " + response_path("x").encode() + b" HTTP/1.0\r\nContent-Length: 0\r\n\r\n"
    )
    reply = await raw.receive()
    assert reply.status == 400
    assert reply.headers["connection"] == "close"
    assert await raw.at_eof()


async def test_http_1_0_keep_alive(api: RuntimeApi, raw: Raw) -> None:
    head = b"POST " + response_path("x").encode() + b" HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
    await raw.send(head + head)
    for _ in range(2):
        reply = await raw.receive()
        assert reply.status == 400
        assert reply.headers["connection"] == "keep-alive"


async def test_connection_close_closes(api: RuntimeApi, raw: Raw) -> None:
    task = await fetch(raw, api, "request-1")
    await raw.send(request("POST", response_path("request-1"), b"1", "Connection: close\r\n"))
    reply = await raw.receive()
    assert reply.status == 202
    assert reply.headers["connection"] == "close"
    assert await raw.at_eof()
    assert (await outcome_of(task)).response == b"1"


async def test_chunked_with_extensions_and_trailers(api: RuntimeApi, raw: Raw) -> None:
    task = await fetch(raw, api, "request-1")
    head = f"POST {response_path('request-1')} HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"
    body = b"5;name=value\r\nhello\r\n1 ; x\r\n \r\n6\r\nworld!\r\n0;last\r\nX-Trailer: 1\r\n\r\n"
    await raw.send(head.encode() + body)
    assert (await raw.receive()).status == 202
    assert (await outcome_of(task)).response == b"hello world!"

    # The connection stays usable after a chunked body.
    await raw.send(request("POST", response_path("request-1"), b"2"))
    assert (await raw.receive()).status == 400


async def test_chunked_over_limit_is_413_and_closes(api: RuntimeApi, raw: Raw) -> None:
    task = await fetch(raw, api, "request-1")
    head = f"POST {response_path('request-1')} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    await raw.send(head.encode() + b"400\r\n" + b"a" * 0x400 + b"\r\n1\r\nb\r\n")
    reply = await raw.receive()
    assert reply.status == 413
    assert reply.headers["connection"] == "close"
    assert json.loads(reply.body)["errorType"] == "RequestEntityTooLarge"
    assert (await outcome_of(task)).error_type == "Function.ResponseSizeTooLarge"
    assert await raw.at_eof()


@pytest.mark.parametrize(
    "body",
    [b"zz\r\nab\r\n0\r\n\r\n", b"2\r\nabXY0\r\n\r\n", b"-1\r\n"],
    ids=["bad size", "no crlf after data", "negative size"],
)
async def test_bad_chunked_body_is_400(api: RuntimeApi, raw: Raw, body: bytes) -> None:
    head = f"POST {response_path('x')} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    await raw.send(head.encode() + body)
    assert (await raw.receive()).status == 400
    assert await raw.at_eof()


async def test_expect_continue_within_limit(api: RuntimeApi, raw: Raw) -> None:
    task = await fetch(raw, api, "request-1")
    await raw.send(
        f"POST {response_path('request-1')} HTTP/1.1\r\n"
        "Content-Length: 3\r\nExpect: 100-continue\r\n\r\n".encode()
    )
    interim = await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    await raw.send(b"123")
    assert (await raw.receive()).status == 202
    assert (await outcome_of(task)).response == b"123"


async def test_expect_continue_over_limit_is_413(api: RuntimeApi, raw: Raw) -> None:
    task = await fetch(raw, api, "request-1")
    await raw.send(
        f"POST {response_path('request-1')} HTTP/1.1\r\n"
        f"Content-Length: {LIMIT + 1}\r\nEXPECT: 100-Continue\r\n\r\n".encode()
    )
    reply = await raw.receive()
    assert reply.status == 413
    assert reply.headers["connection"] == "close"
    assert (await outcome_of(task)).error_type == "Function.ResponseSizeTooLarge"
    # The client may send the body anyway; the server reads it until the end.
    await raw.send(b"x" * (LIMIT + 1))
    assert await raw.at_eof()


async def test_header_names_case_insensitive(api: RuntimeApi, raw: Raw) -> None:
    task = await fetch(raw, api, "request-1")
    body = b'{"errorType": "ValueError"}'
    head = (
        f"POST {error_path('request-1')} HTTP/1.1\r\n"
        f"content-LENGTH: {len(body)}\r\nlambda-runtime-function-error-type: Function.Bad\r\n\r\n"
    )
    await raw.send(head.encode() + body)
    assert (await raw.receive()).status == 202
    assert (await outcome_of(task)).error_type == "Function.Bad"


async def test_one_mib_header_accepted(api: RuntimeApi, raw: Raw) -> None:
    task = await fetch(raw, api, "request-1")
    cause = "c" * (1024 * 1024)
    await raw.send(request("POST", error_path("request-1"), b"{}", f"X-Cause: {cause}\r\n"))
    assert (await raw.receive()).status == 202
    assert (await outcome_of(task)).error_type == "Runtime.Unknown"


async def test_head_over_limit_is_431(api: RuntimeApi, raw: Raw) -> None:
    await raw.send(b"GET / HTTP/1.1\r\nX-Big: " + b"h" * (2 * 1024 * 1024))
    reply = await raw.receive()
    assert reply.status == 431
    assert await raw.at_eof()


@pytest.mark.parametrize(
    "data",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /x HTTP/1.1 extra\r\n\r\n",
        b"GET /x HTTP/1.1\r\nNo colon\r\n\r\n",
        b"GET /x HTTP/1.1\r\nName : value\r\n\r\n",
        b"GET /x HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n",
        b"GET /x HTTP/1.1\r\nA: 1\nB: 2\r\n\r\n",
        b"POST /x HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
        b"POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"POST /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    ],
    ids=[
        "no version",
        "extra field in request line",
        "no colon",
        "space before colon",
        "line folding",
        "bare LF",
        "bad Content-Length",
        "conflicting Content-Length",
        "Content-Length and chunked",
    ],
)
async def test_malformed_request_is_400_and_closes(raw: Raw, data: bytes) -> None:
    await raw.send(data)
    reply = await raw.receive()
    assert reply.status == 400
    assert json.loads(reply.body)["errorType"] == "BadRequest"
    assert await raw.at_eof()


async def test_unsupported_versions_and_codings(api: RuntimeApi) -> None:
    for data, status in (
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    ):
        raw = await Raw.open(api.port)
        try:
            await raw.send(data)
            assert (await raw.receive()).status == status
            assert await raw.at_eof()
        finally:
            await raw.close()


async def test_absolute_form_and_query(api: RuntimeApi, raw: Raw) -> None:
    task = start_invoke(api, "request-1")
    await raw.send(request("GET", f"http://127.0.0.1:{api.port}{NEXT}?x=1"))
    reply = await raw.receive()
    assert reply.status == 200
    assert reply.headers["lambda-runtime-invoked-function-arn"] == FUNCTION_ARN
    assert reply.headers["content-type"] == "application/json"
    assert reply.version == "HTTP/1.1"
    task.cancel()


async def test_disconnect_on_next_then_new_next(api: RuntimeApi) -> None:
    dropped = await Raw.open(api.port)
    await dropped.send(request("GET", NEXT))
    await asyncio.wait_for(api.wait_init(), TIMEOUT)
    await dropped.close()

    raw = await Raw.open(api.port)
    try:
        await raw.send(request("POST", response_path("nobody"), b"1"))
        assert (await raw.receive()).status == 400
        task = await fetch(raw, api, "request-1")
        await raw.send(request("POST", response_path("request-1"), b"1"))
        assert (await raw.receive()).status == 202
        assert (await outcome_of(task)).response == b"1"
    finally:
        await raw.close()
