"""The Runtime API server, driven by aiohttp's client and raw sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from yarl import URL

from emulator.invocation import ERROR_RESPONSE_TOO_LARGE, MAX_PAYLOAD_BYTES
from emulator.worker.runtime_api import (
    InitFailure,
    InvocationAbortedError,
    RuntimeApi,
    RuntimeApiClosedError,
    RuntimeOutcome,
)

from .helpers import FUNCTION_ARN

NEXT = "/2018-06-01/runtime/invocation/next"
INIT_ERROR = "/2018-06-01/runtime/init/error"
TIMEOUT = 10.0


def response_path(request_id: str) -> str:
    return f"/2018-06-01/runtime/invocation/{request_id}/response"


def error_path(request_id: str) -> str:
    return f"/2018-06-01/runtime/invocation/{request_id}/error"


@pytest.fixture
async def client(runtime_api: RuntimeApi) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(f"http://127.0.0.1:{runtime_api.port}") as session:
        yield session


def start_invoke(
    api: RuntimeApi, request_id: str = "request-1", event: bytes = b'{"n": 1}'
) -> asyncio.Task[RuntimeOutcome]:
    return asyncio.ensure_future(
        api.invoke(request_id, event, 1_900_000_000_000, "Root=1-5759e988-bd862e3fe1be46a994272793")
    )


async def fetch_next(client: aiohttp.ClientSession) -> tuple[str, bytes]:
    """GET /next; return the request id and the event."""
    async with client.get(NEXT) as response:
        assert response.status == 200
        return response.headers["Lambda-Runtime-Aws-Request-Id"], await response.read()


async def finish(task: asyncio.Task[RuntimeOutcome]) -> RuntimeOutcome:
    return await asyncio.wait_for(task, TIMEOUT)


# -- GET /next and POST /response ---------------------------------------------


async def test_next_returns_event_and_headers(
    runtime_api: RuntimeApi, client: aiohttp.ClientSession
) -> None:
    task = start_invoke(runtime_api, "request-1", b'{"hello": "world"}')

    async with client.get(NEXT) as response:
        body = await response.read()
        assert response.status == 200
        assert response.headers["Lambda-Runtime-Aws-Request-Id"] == "request-1"
        assert response.headers["Lambda-Runtime-Deadline-Ms"] == "1900000000000"
        assert response.headers["Lambda-Runtime-Invoked-Function-Arn"] == FUNCTION_ARN
        assert response.headers["Lambda-Runtime-Trace-Id"] == (
            "Root=1-5759e988-bd862e3fe1be46a994272793"
        )
        assert response.headers["Content-Type"] == "application/json"
    assert body == b'{"hello": "world"}'

    async with client.post(response_path("request-1"), data=b'{"ok": true}') as response:
        assert response.status == 202
        assert await response.json() == {"status": "OK"}

    outcome = await finish(task)
    assert outcome == RuntimeOutcome(response=b'{"ok": true}')


async def test_next_blocks_until_invoke(
    runtime_api: RuntimeApi, client: aiohttp.ClientSession
) -> None:
    waiting = asyncio.ensure_future(fetch_next(client))
    await asyncio.wait_for(runtime_api.wait_init(), TIMEOUT)
    assert not waiting.done()

    task = start_invoke(runtime_api, "late-request")
    request_id, event = await asyncio.wait_for(waiting, TIMEOUT)
    assert request_id == "late-request"
    assert event == b'{"n": 1}'

    async with client.post(response_path(request_id), data=b"null") as response:
        assert response.status == 202
    assert (await finish(task)).response == b"null"


async def test_warm_invocations_in_sequence(
    runtime_api: RuntimeApi, client: aiohttp.ClientSession
) -> None:
    for number in range(5):
        task = start_invoke(runtime_api, f"request-{number}", json.dumps(number).encode())
        request_id, event = await fetch_next(client)
        assert request_id == f"request-{number}"
        async with client.post(response_path(request_id), data=event) as response:
            assert response.status == 202
        assert (await finish(task)).response == str(number).encode()


async def test_url_encoded_request_id(
    runtime_api: RuntimeApi, client: aiohttp.ClientSession
) -> None:
    task = start_invoke(runtime_api, "id with/slash")
    request_id, _ = await fetch_next(client)
    assert request_id == "id with/slash"

    path = "/2018-06-01/runtime/invocation/id%20with%2Fslash/response"
    async with client.post(URL(path, encoded=True), data=b"1") as response:
        assert response.status == 202
    assert (await finish(task)).response == b"1"


async def test_response_for_wrong_id_is_400(
    runtime_api: RuntimeApi, client: aiohttp.ClientSession
) -> None:
    task = start_invoke(runtime_api, "request-1")
    await fetch_next(client)

    async with client.post(response_path("someone-else"), data=b"1") as response:
        assert response.status == 400
        body = await response.json()
    assert body["errorType"] == "InvalidRequestID"
    assert isinstance(body["errorMessage"], str)
    assert not task.done()

    async with client.post(response_path("request-1"), data=b"2") as response:
        assert response.status == 202
    assert (await finish(task)).response == b"2"


async def test_response_without_invocation_is_400(client: aiohttp.ClientSession) -> None:
    async with client.post(response_path("nobody"), data=b"1") as response:
        assert response.status == 400
        assert (await response.json())["errorType"] == "InvalidRequestID"
    async with client.post(error_path("nobody"), data=b"{}") as response:
        assert response.status == 400
        assert (await response.json())["errorType"] == "InvalidRequestID"


async def test_second_response_is_400(
    runtime_api: RuntimeApi, client: aiohttp.ClientSession
) -> None:
    task = start_invoke(runtime_api, "request-1")
    await fetch_next(client)
    async with client.post(response_path("request-1"), data=b"1") as response:
        assert response.status == 202
    async with client.post(response_path("request-1"), data=b"2") as response:
        assert response.status == 400
    assert (await finish(task)).response == b"1"


# -- POST /error ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "body", "expected_type", "expected_message"),
    [
        (
            "Function.CustomFailure",
            {"errorType": "ValueError", "errorMessage": "bad"},
            "Function.CustomFailure",
            "bad",
        ),
        ("Runtime.Crashed", {}, "Runtime.Crashed", None),
        ("Unhandled", {"errorType": "TypeError", "errorMessage": "m"}, "TypeError", "m"),
        ("Runtime.lowercase", {"errorType": "KeyError"}, "KeyError", None),
        ("Function.X1", {"errorType": "KeyError"}, "KeyError", None),
        (None, {"errorType": "Runtime.NodeJsExit"}, "Runtime.NodeJsExit", None),
        (None, {"errorMessage": "no type"}, "Runtime.Unknown", "no type"),
        (None, {"errorType": 42, "errorMessage": ["x"]}, "Runtime.Unknown", None),
    ],
)
async def test_error_type_from_header_or_body(
    runtime_api: RuntimeApi,
    client: aiohttp.ClientSession,
    header: str | None,
    body: dict[str, object],
    expected_type: str,
    expected_message: str | None,
) -> None:
    task = start_invoke(runtime_api, "request-1")
    await fetch_next(client)

    headers = {"Lambda-Runtime-Function-Error-Type": header} if header else {}
    raw = json.dumps(body).encode()
    async with client.post(error_path("request-1"), data=raw, headers=headers) as response:
        assert response.status == 202

    outcome = await finish(task)
    assert outcome.response is None
    assert outcome.error_type == expected_type
    assert outcome.error_message == expected_message
    assert outcome.error_body == raw


async def test_error_body_not_json(runtime_api: RuntimeApi, client: aiohttp.ClientSession) -> None:
    task = start_invoke(runtime_api, "request-1")
    await fetch_next(client)
    async with client.post(error_path("request-1"), data=b"not json") as response:
        assert response.status == 202
    outcome = await finish(task)
    assert outcome.error_type == "Runtime.Unknown"
    assert outcome.error_message is None
    assert outcome.error_body == b"not json"


# -- POST /init/error -----------------------------------------------------------


async def test_init_error_with_valid_type(
    runtime_api: RuntimeApi, client: aiohttp.ClientSession
) -> None:
    body = json.dumps(
        {"errorType": "Runtime.ImportModuleError", "errorMessage": "Unable to import module 'x'"}
    ).encode()
    headers = {"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"}
    async with client.post(INIT_ERROR, data=body, headers=headers) as response:
        assert response.status == 202
        assert await response.json() == {"status": "OK"}

    failure = await asyncio.wait_for(runtime_api.wait_init(), TIMEOUT)
    assert failure == InitFailure(
        error_type="Runtime.ImportModuleError",
        error_message="Unable to import module 'x'",
        body=body,
    )
    assert not runtime_api.init_done


@pytest.mark.parametrize("header", [None, "ImportError", "Runtime.", "Other.Thing"])
async def test_init_error_without_valid_type(
    runtime_api: RuntimeApi, client: aiohttp.ClientSession, header: str | None
) -> None:
    headers = {"Lambda-Runtime-Function-Error-Type": header} if header else {}
    body = b'{"errorType": "Runtime.ImportModuleError", "errorMessage": "boom"}'
    async with client.post(INIT_ERROR, data=body, headers=headers) as response:
        assert response.status == 202

    failure = await asyncio.wait_for(runtime_api.wait_init(), TIMEOUT)
    assert failure is not None
    assert failure.error_type == "Runtime.Unknown"
    assert failure.error_message == "boom"


async def test_init_error_after_init_is_403(
    runtime_api: RuntimeApi, client: aiohttp.ClientSession
) -> None:
    waiting = asyncio.ensure_future(fetch_next(client))
    assert await asyncio.wait_for(runtime_api.wait_init(), TIMEOUT) is None
    assert runtime_api.init_done

    headers = {"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"}
    async with client.post(INIT_ERROR, data=b"{}", headers=headers) as response:
        assert response.status == 403
        assert "errorType" in await response.json()

    waiting.cancel()
    # A later init error does not change the outcome of init.
    assert await asyncio.wait_for(runtime_api.wait_init(), TIMEOUT) is None


async def test_second_init_error_is_403(client: aiohttp.ClientSession) -> None:
    async with client.post(INIT_ERROR, data=b"{}") as response:
        assert response.status == 202
    async with client.post(INIT_ERROR, data=b"{}") as response:
        assert response.status == 403


# -- 404 and 405 ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/2018-06-01/runtime/invocation/",
        "/2018-06-01/runtime/invocation/abc",
        "/2018-06-01/runtime/invocation/abc/other",
        "/2018-06-01/runtime/invocation//response",
        "/2018-06-01/runtime/init/other",
        "/2020-01-01/runtime/invocation/next",
    ],
)
async def test_unknown_path_is_404(client: aiohttp.ClientSession, path: str) -> None:
    async with client.post(path, data=b"{}") as response:
        assert response.status == 404


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", NEXT, "GET"),
        ("GET", response_path("abc"), "POST"),
        ("PUT", error_path("abc"), "POST"),
        ("GET", INIT_ERROR, "POST"),
    ],
)
async def test_wrong_method_is_405(
    client: aiohttp.ClientSession, method: str, path: str, allowed: str
) -> None:
    async with client.request(method, path) as response:
        assert response.status == 405
        assert response.headers["Allow"] == allowed


# -- payload size limits --------------------------------------------------------


@pytest.fixture
async def small_api() -> AsyncIterator[RuntimeApi]:
    api = RuntimeApi(function_arn=FUNCTION_ARN, max_payload_bytes=1024)
    await api.start()
    try:
        yield api
    finally:
        await api.close()


async def test_response_at_limit_is_accepted(small_api: RuntimeApi) -> None:
    async with aiohttp.ClientSession(f"http://127.0.0.1:{small_api.port}") as client:
        task = start_invoke(small_api, "request-1")
        await fetch_next(client)
        async with client.post(response_path("request-1"), data=b"x" * 1024) as response:
            assert response.status == 202
        assert (await finish(task)).response == b"x" * 1024


@pytest.mark.parametrize("path_for", [response_path, error_path])
async def test_body_over_limit_is_413(small_api: RuntimeApi, path_for: object) -> None:
    assert callable(path_for)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{small_api.port}") as client:
        task = start_invoke(small_api, "request-1")
        await fetch_next(client)
        async with client.post(path_for("request-1"), data=b"x" * 1025) as response:
            assert response.status == 413
            assert (await response.json())["errorType"] == "RequestEntityTooLarge"

        outcome = await finish(task)
        assert outcome.response is None
        assert outcome.error_type == ERROR_RESPONSE_TOO_LARGE
        assert outcome.error_message is not None
        assert "1024 bytes" in outcome.error_message
        assert outcome.error_body is not None
        assert json.loads(outcome.error_body)["errorType"] == ERROR_RESPONSE_TOO_LARGE

        # The invocation is over: a retry is for an unknown request id.
        async with client.post(response_path("request-1"), data=b"1") as response:
            assert response.status == 400


async def chunks(total: int, size: int) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        chunk = b"y" * min(size, total - sent)
        sent += len(chunk)
        yield chunk


async def test_chunked_body_over_limit_is_413(small_api: RuntimeApi) -> None:
    async with aiohttp.ClientSession(f"http://127.0.0.1:{small_api.port}") as client:
        task = start_invoke(small_api, "request-1")
        await fetch_next(client)
        async with client.post(response_path("request-1"), data=chunks(4096, 100)) as response:
            assert response.status == 413
        assert (await finish(task)).error_type == ERROR_RESPONSE_TOO_LARGE


async def test_chunked_response_body(
    runtime_api: RuntimeApi, client: aiohttp.ClientSession
) -> None:
    task = start_invoke(runtime_api, "request-1")
    await fetch_next(client)

    # An async generator body goes out with Transfer-Encoding: chunked.
    async with client.post(response_path("request-1"), data=chunks(100_000, 7_000)) as response:
        assert response.status == 202
        assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
    assert (await finish(task)).response == b"y" * 100_000


async def test_response_over_6_mb_fails(
    runtime_api: RuntimeApi, client: aiohttp.ClientSession
) -> None:
    task = start_invoke(runtime_api, "request-1")
    await fetch_next(client)
    body = b"z" * (MAX_PAYLOAD_BYTES + 1)
    async with client.post(response_path("request-1"), data=body) as response:
        assert response.status == 413
    outcome = await finish(task)
    assert outcome.error_type == ERROR_RESPONSE_TOO_LARGE
    assert outcome.error_message == (
        "Response payload size exceeded maximum allowed payload size (6291556 bytes)."
    )


async def test_response_of_6_mb_is_accepted(
    runtime_api: RuntimeApi, client: aiohttp.ClientSession
) -> None:
    task = start_invoke(runtime_api, "request-1")
    await fetch_next(client)
    body = b"z" * MAX_PAYLOAD_BYTES
    async with client.post(response_path("request-1"), data=body) as response:
        assert response.status == 202
    assert (await finish(task)).response == body


async def test_large_error_cause_header_is_accepted(
    runtime_api: RuntimeApi, client: aiohttp.ClientSession
) -> None:
    # awslambdaric sends X-Ray error causes of up to 1 MiB as a header.
    task = start_invoke(runtime_api, "request-1")
    await fetch_next(client)
    headers = {"Lambda-Runtime-Function-XRay-Error-Cause": "c" * 500_000}
    body = b'{"errorType": "ValueError", "errorMessage": "m"}'
    async with client.post(error_path("request-1"), data=body, headers=headers) as response:
        assert response.status == 202
    assert (await finish(task)).error_type == "ValueError"


# -- connections ------------------------------------------------------------------


class RawConnection:
    """HTTP/1.1 over one raw socket, to check which connection a request uses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> RawConnection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def send(self, method: str, path: str, body: bytes = b"") -> None:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n"
        self.writer.write(head.encode() + body)

    async def receive(self) -> tuple[int, dict[str, str], bytes]:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        status_line, *header_lines = head.decode().split("\r\n")[:-2]
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(self.reader.readexactly(length), TIMEOUT)
        return int(status_line.split()[1]), headers, body

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def test_keep_alive_serves_many_invocations(runtime_api: RuntimeApi) -> None:
    connection = await RawConnection.open(runtime_api.port)
    try:
        for number in range(3):
            task = start_invoke(runtime_api, f"request-{number}")
            connection.send("GET", NEXT)
            status, headers, _ = await connection.receive()
            assert status == 200
            assert headers["lambda-runtime-aws-request-id"] == f"request-{number}"

            connection.send("POST", response_path(f"request-{number}"), b"true")
            status, _, body = await connection.receive()
            assert status == 202
            assert body == b'{"status":"OK"}'
            assert (await finish(task)).response == b"true"
    finally:
        await connection.close()


async def test_next_after_runtime_disconnect(runtime_api: RuntimeApi) -> None:
    dropped = await RawConnection.open(runtime_api.port)
    dropped.send("GET", NEXT)
    await asyncio.wait_for(runtime_api.wait_init(), TIMEOUT)
    await dropped.close()

    # One request answered on a new connection shows that the server has
    # read past the disconnect of the first one.
    connection = await RawConnection.open(runtime_api.port)
    try:
        connection.send("POST", response_path("nobody"), b"1")
        status, _, _ = await connection.receive()
        assert status == 400

        connection.send("GET", NEXT)
        task = start_invoke(runtime_api, "after-disconnect")
        status, headers, _ = await connection.receive()
        assert status == 200
        assert headers["lambda-runtime-aws-request-id"] == "after-disconnect"

        connection.send("POST", response_path("after-disconnect"), b"1")
        status, _, _ = await connection.receive()
        assert status == 202
        assert (await finish(task)).response == b"1"
    finally:
        await connection.close()


# -- the worker's side: cancel, abort, close ------------------------------------------


async def test_cancelled_invoke_is_forgotten(
    runtime_api: RuntimeApi, client: aiohttp.ClientSession
) -> None:
    task = start_invoke(runtime_api, "timed-out")
    await fetch_next(client)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async with client.post(response_path("timed-out"), data=b"1") as response:
        assert response.status == 400

    next_task = start_invoke(runtime_api, "next-one")
    request_id, _ = await fetch_next(client)
    assert request_id == "next-one"
    async with client.post(response_path("next-one"), data=b"2") as response:
        assert response.status == 202
    assert (await finish(next_task)).response == b"2"


async def test_cancelled_invoke_before_delivery(
    runtime_api: RuntimeApi, client: aiohttp.ClientSession
) -> None:
    task = start_invoke(runtime_api, "never-fetched")
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    next_task = start_invoke(runtime_api, "fetched")
    request_id, _ = await fetch_next(client)
    assert request_id == "fetched"
    next_task.cancel()


async def test_abort_ends_invoke(runtime_api: RuntimeApi, client: aiohttp.ClientSession) -> None:
    task = start_invoke(runtime_api, "request-1")
    await fetch_next(client)
    runtime_api.abort()
    with pytest.raises(InvocationAbortedError):
        await finish(task)

    async with client.post(response_path("request-1"), data=b"1") as response:
        assert response.status == 400


async def test_invoke_while_running_raises(runtime_api: RuntimeApi) -> None:
    task = start_invoke(runtime_api, "request-1")
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError):
        await runtime_api.invoke("request-2", b"{}", 0, "")
    task.cancel()


async def test_close_ends_waiters(runtime_api: RuntimeApi) -> None:
    init = asyncio.ensure_future(runtime_api.wait_init())
    task = start_invoke(runtime_api, "request-1")
    await asyncio.sleep(0)

    await asyncio.wait_for(runtime_api.close(), TIMEOUT)

    with pytest.raises(RuntimeApiClosedError):
        await asyncio.wait_for(init, TIMEOUT)
    with pytest.raises(InvocationAbortedError):
        await finish(task)


async def test_close_answers_blocked_next(runtime_api: RuntimeApi) -> None:
    connection = await RawConnection.open(runtime_api.port)
    try:
        connection.send("GET", NEXT)
        await asyncio.wait_for(runtime_api.wait_init(), TIMEOUT)
        await asyncio.wait_for(runtime_api.close(), TIMEOUT)
        status, _, _ = await connection.receive()
        assert status == 503
    finally:
        await connection.close()
