"""The Runtime API clients of the Python and Node.js shims under hostile transport.

Most tests serve the shim from `ScriptedApi`, a stand-in Runtime API on
127.0.0.1 whose responses each test writes by hand: in single bytes, two
in one write, cut off, or followed by a close. The rest run the shims
against the real `RuntimeApi`, with events and results near the
6,291,556-byte payload limit and with errors that arrive while a request
is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from emulator.invocation import ERROR_RESPONSE_TOO_LARGE, MAX_PAYLOAD_BYTES
from emulator.worker.runtime_api import RuntimeApi

from .conftest import Spawn
from .helpers import (
    FUNCTION_ARN,
    NODE,
    RuntimeProcess,
    invoke,
    wait_init,
    write_files,
)

NEXT_PATH = "/2018-06-01/runtime/invocation/next"
# Bounds every wait on the shim process or the scripted connections.
STEP_TIMEOUT = 15.0

LANGUAGES = [
    "python",
    pytest.param("node", marks=pytest.mark.skipif(NODE is None, reason="node is not on PATH")),
]

# Echo the event with the context fields that come from response headers.
PY_ECHO = """
import os

def handler(event, context):
    custom = context.client_context.custom if context.client_context else None
    return {
        "event": event,
        "requestId": context.aws_request_id,
        "arn": context.invoked_function_arn,
        "custom": custom,
        "pid": os.getpid(),
    }
"""

NODE_ECHO = """
exports.handler = async (event, context) => ({
  event,
  requestId: context.awsRequestId,
  arn: context.invokedFunctionArn,
  custom: context.clientContext ? context.clientContext.custom : null,
  pid: process.pid,
});
"""

HANDLERS = {
    "python": ({"lambda.py": PY_ECHO}, "lambda.handler"),
    "node": ({"index.js": NODE_ECHO}, "index.handler"),
}


# -- a scripted Runtime API ------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class ScriptedConnection:
    """One runtime connection to `ScriptedApi`, whose requests the test reads and responds to."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def read_request(self) -> Request:
        """Read one request with its Content-Length body."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), STEP_TIMEOUT)
        lines = head[:-4].decode("utf-8").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(self.reader.readexactly(length), STEP_TIMEOUT)
        return Request(method, path, headers, body)

    async def send(self, data: bytes, *, piece: int = 0) -> None:
        """Write `data` at once, or in writes of `piece` bytes with a pause after each."""
        if not piece:
            self.writer.write(data)
            await self.writer.drain()
            return
        for start in range(0, len(data), piece):
            self.writer.write(data[start : start + piece])
            await self.writer.drain()
            await asyncio.sleep(0.002)

    async def wait_closed_by_peer(self) -> None:
        """Wait until the runtime closes its end of the connection."""
        while await asyncio.wait_for(self.reader.read(65536), STEP_TIMEOUT):
            pass

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


class ScriptedApi:
    """A stand-in Runtime API on 127.0.0.1: each accepted connection goes to the test."""

    def __init__(self) -> None:
        self.port = 0
        self._accepted: asyncio.Queue[ScriptedConnection] = asyncio.Queue()
        self._server: asyncio.Server | None = None
        self._connections: list[ScriptedConnection] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._on_connection, "127.0.0.1", 0, limit=2 * 1024 * 1024
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = ScriptedConnection(reader, writer)
        self._connections.append(connection)
        self._accepted.put_nowait(connection)

    async def accept(self) -> ScriptedConnection:
        return await asyncio.wait_for(self._accepted.get(), STEP_TIMEOUT)

    @property
    def pending_connections(self) -> int:
        return self._accepted.qsize()

    async def close(self) -> None:
        for connection in self._connections:
            await connection.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def response(status: int, body: bytes = b"", headers: list[tuple[str, str]] | None = None) -> bytes:
    """Encode an HTTP/1.1 response with a Content-Length body."""
    lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def event_response(
    request_id: str, event: object, extra: list[tuple[str, str]] | None = None
) -> bytes:
    """Encode the GET /next response that hands the runtime `event`."""
    deadline_ms = int(time.time() * 1000) + 60_000
    headers = [
        ("Content-Type", "application/json"),
        ("Lambda-Runtime-Aws-Request-Id", request_id),
        ("Lambda-Runtime-Deadline-Ms", str(deadline_ms)),
        ("Lambda-Runtime-Invoked-Function-Arn", FUNCTION_ARN),
        ("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000;Sampled=0"),
        *(extra or []),
    ]
    return response(200, json.dumps(event).encode(), headers)


ACCEPTED = response(202, b'{"status":"OK"}', [("Content-Type", "application/json")])


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedApi]:
    api = ScriptedApi()
    await api.start()
    try:
        yield api
    finally:
        await api.close()


async def spawn_echo(spawn: Spawn, api: ScriptedApi, language: str, root: Path) -> RuntimeProcess:
    files, handler = HANDLERS[language]
    write_files(root, files)
    return await spawn(api, language, root, handler)


async def accept_while_running(api: ScriptedApi, process: RuntimeProcess) -> ScriptedConnection:
    """Return the runtime's next connection; fail at once if the runtime exits instead."""
    accepted = asyncio.ensure_future(api.accept())
    exited = asyncio.ensure_future(process.process.wait())
    try:
        await asyncio.wait({accepted, exited}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        exited.cancel()
        if not accepted.done():
            accepted.cancel()
    exit_message = f"the runtime exited with {process.process.returncode}:\n{process.output}"
    assert accepted.done(), exit_message
    assert not accepted.cancelled(), exit_message
    return accepted.result()


def post_path(request_id: str, action: str = "response") -> str:
    return f"/2018-06-01/runtime/invocation/{request_id}/{action}"


async def serve_event(
    connection: ScriptedConnection, request_id: str, event: object, *, piece: int = 0
) -> dict[str, object]:
    """Respond to a GET /next with `event` and return the result that the handler posted."""
    request = await connection.read_request()
    assert (request.method, request.path) == ("GET", NEXT_PATH)
    await connection.send(event_response(request_id, event), piece=piece)
    posted = await connection.read_request()
    assert (posted.method, posted.path) == ("POST", post_path(request_id))
    result: dict[str, object] = json.loads(posted.body)
    assert result["event"] == event
    assert result["requestId"] == request_id
    return result


# -- transport ---------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.timeout(60)
async def test_responses_split_into_bytes(
    scripted: ScriptedApi, spawn: Spawn, tmp_path: Path, language: str
) -> None:
    process = await spawn_echo(spawn, scripted, language, tmp_path)
    connection = await scripted.accept()

    first = await serve_event(connection, "r1", {"n": 1}, piece=1)
    await connection.send(ACCEPTED, piece=1)
    second = await serve_event(connection, "r2", {"n": 2, "text": "h\u00e9llo"}, piece=1)

    assert first["pid"] == second["pid"] == process.pid
    assert scripted.pending_connections == 0


@pytest.mark.timeout(60)
async def test_python_two_responses_in_one_write(
    scripted: ScriptedApi, spawn: Spawn, tmp_path: Path
) -> None:
    # The Python shim pipelines GET /next with its POST, so the 202 and the
    # next event can arrive in one read.
    await spawn_echo(spawn, scripted, "python", tmp_path)
    connection = await scripted.accept()

    await serve_event(connection, "r1", {"n": 1})
    following = await connection.read_request()
    assert (following.method, following.path) == ("GET", NEXT_PATH)
    await connection.send(ACCEPTED + event_response("r2", {"n": 2}))
    posted = await connection.read_request()

    assert posted.path == post_path("r2")
    assert json.loads(posted.body)["event"] == {"n": 2}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.timeout(60)
async def test_connection_close_after_post(
    scripted: ScriptedApi, spawn: Spawn, tmp_path: Path, language: str
) -> None:
    process = await spawn_echo(spawn, scripted, language, tmp_path)
    connection = await scripted.accept()

    await serve_event(connection, "r1", {"n": 1})
    await connection.send(response(202, b"{}", [("Connection", "close")]))
    await connection.close()

    # The next GET /next goes out on a new connection.
    renewed = await accept_while_running(scripted, process)
    second = await serve_event(renewed, "r2", {"n": 2})
    assert second["pid"] == process.pid


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.timeout(60)
async def test_connection_close_on_event(
    scripted: ScriptedApi, spawn: Spawn, tmp_path: Path, language: str
) -> None:
    process = await spawn_echo(spawn, scripted, language, tmp_path)
    connection = await scripted.accept()

    request = await connection.read_request()
    assert request.path == NEXT_PATH
    await connection.send(event_response("r1", {"n": 1}, [("Connection", "close")]))
    await connection.wait_closed_by_peer()

    # The result goes out on a new connection.
    renewed = await accept_while_running(scripted, process)
    posted = await renewed.read_request()
    assert posted.path == post_path("r1")
    assert json.loads(posted.body)["pid"] == process.pid


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.timeout(60)
async def test_silent_close_after_post(
    scripted: ScriptedApi, spawn: Spawn, tmp_path: Path, language: str
) -> None:
    # A server may close a kept-alive connection after any response, and a
    # client that pipelined requests should retry the unanswered ones (RFC
    # 7230, section 6.3.2). GET /next is safe to repeat.
    process = await spawn_echo(spawn, scripted, language, tmp_path)
    connection = await scripted.accept()

    await serve_event(connection, "r1", {"n": 1})
    await connection.send(ACCEPTED)
    await connection.close()

    renewed = await accept_while_running(scripted, process)
    second = await serve_event(renewed, "r2", {"n": 2})
    assert second["pid"] == process.pid


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.timeout(60)
async def test_silent_close_after_event(
    scripted: ScriptedApi, spawn: Spawn, tmp_path: Path, language: str
) -> None:
    # The server closes right after the event, before the result is posted.
    process = await spawn_echo(spawn, scripted, language, tmp_path)
    connection = await scripted.accept()

    request = await connection.read_request()
    assert request.path == NEXT_PATH
    await connection.send(event_response("r1", {"n": 1}))
    await connection.close()

    renewed = await accept_while_running(scripted, process)
    posted = await renewed.read_request()
    assert posted.path == post_path("r1")
    assert json.loads(posted.body)["pid"] == process.pid


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("cut", ["head", "body"])
@pytest.mark.timeout(60)
async def test_close_mid_response_exits(
    scripted: ScriptedApi, spawn: Spawn, tmp_path: Path, language: str, cut: str
) -> None:
    process = await spawn_echo(spawn, scripted, language, tmp_path)
    connection = await scripted.accept()

    request = await connection.read_request()
    assert request.path == NEXT_PATH
    data = event_response("r1", {"text": "x" * 1000})
    end_of_head = data.index(b"\r\n\r\n")
    await connection.send(data[: end_of_head - 10 if cut == "head" else end_of_head + 100])
    await connection.close()

    # Nothing can be reported without the Runtime API: the runtime exits
    # with an error instead of hanging or running the handler.
    assert await process.wait_exit(STEP_TIMEOUT) == 1
    await process.wait_for_output("the Runtime API request failed")
    assert "r1" not in process.output


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.timeout(60)
async def test_utf8_header_values(
    scripted: ScriptedApi, spawn: Spawn, tmp_path: Path, language: str
) -> None:
    await spawn_echo(spawn, scripted, language, tmp_path)
    connection = await scripted.accept()

    arn = FUNCTION_ARN + "-caf\u00e9-\u65e5\u672c"
    client_context = {"custom": {"name": "Zo\u00eb \U0001f600"}, "env": {}, "client": {}}
    request = await connection.read_request()
    assert request.path == NEXT_PATH
    extra = [
        ("Lambda-Runtime-Invoked-Function-Arn", arn),
        ("Lambda-Runtime-Client-Context", json.dumps(client_context, ensure_ascii=False)),
    ]
    await connection.send(event_response("r1", {"n": 1}, extra))
    posted = await connection.read_request()

    assert posted.path == post_path("r1")
    result = json.loads(posted.body)
    assert result["arn"] == arn
    assert result["custom"] == client_context["custom"]


# -- payloads near the limit, against the real Runtime API -------------------------------

# The Python shim posts bodies up to 6 MiB in the same write as GET /next
# and larger ones alone; 6,291,556 bytes is the largest accepted.
RESULT_SIZES = [
    6 * 1024 * 1024,
    6 * 1024 * 1024 + 1,
    MAX_PAYLOAD_BYTES,
    MAX_PAYLOAD_BYTES + 1,
    8 * 1024 * 1024,
]

# Return a body of exactly `size` bytes: raw bytes from Python, a JSON
# string (two quotes around size - 2 characters) from Node.js.
SIZED_HANDLERS = {
    "python": (
        {
            "lambda.py": """
import os

def handler(event, context):
    if event.get("raise"):
        raise ValueError("e" * event["raise"])
    if "size" in event:
        return b"x" * event["size"]
    return {"pid": os.getpid(), "length": len(event.get("text", ""))}
"""
        },
        "lambda.handler",
    ),
    "node": (
        {
            "index.js": """
exports.handler = async (event) => {
  if (event.raise) {
    throw new Error('e'.repeat(event.raise));
  }
  if (event.size !== undefined) {
    return 'x'.repeat(event.size - 2);
  }
  return { pid: process.pid, length: (event.text || '').length };
};
"""
        },
        "index.handler",
    ),
}


async def spawn_sized(spawn: Spawn, api: RuntimeApi, language: str, root: Path) -> RuntimeProcess:
    files, handler = SIZED_HANDLERS[language]
    write_files(root, files)
    process = await spawn(api, language, root, handler)
    await wait_init(api)
    return process


async def assert_still_serving(api: RuntimeApi, process: RuntimeProcess) -> None:
    outcome = await invoke(api, json.dumps({"text": "after"}).encode())
    assert outcome.error_type is None, outcome
    assert outcome.response is not None
    assert json.loads(outcome.response) == {"pid": process.pid, "length": 5}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.timeout(120)
async def test_results_around_payload_limit(
    runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path, language: str
) -> None:
    process = await spawn_sized(spawn, runtime_api, language, tmp_path)

    for size in RESULT_SIZES:
        outcome = await invoke(runtime_api, json.dumps({"size": size}).encode())
        if size <= MAX_PAYLOAD_BYTES:
            assert outcome.error_type is None, (size, outcome.error_type)
            assert outcome.response is not None
            assert len(outcome.response) == size
        else:
            assert outcome.error_type == ERROR_RESPONSE_TOO_LARGE, size
        await assert_still_serving(runtime_api, process)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.timeout(120)
async def test_large_events_in_a_row(
    runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path, language: str
) -> None:
    process = await spawn_sized(spawn, runtime_api, language, tmp_path)

    for length in (3_000_000, 6_000_000, 1, 5_999_999):
        event = json.dumps({"text": "\u00e9" * length}, ensure_ascii=False).encode()
        outcome = await invoke(runtime_api, event)
        assert outcome.error_type is None, (length, outcome)
        assert outcome.response is not None
        assert json.loads(outcome.response) == {"pid": process.pid, "length": length}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.timeout(120)
async def test_error_bodies_around_limit(
    runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path, language: str
) -> None:
    process = await spawn_sized(spawn, runtime_api, language, tmp_path)

    small = await invoke(runtime_api, json.dumps({"raise": 10}).encode())
    assert small.error_message == "e" * 10
    await assert_still_serving(runtime_api, process)

    huge = await invoke(runtime_api, json.dumps({"raise": 7_000_000}).encode())
    assert huge.error_type == ERROR_RESPONSE_TOO_LARGE
    await assert_still_serving(runtime_api, process)


# -- the Node.js event loop between requests ----------------------------------------------

# `mode` picks the behaviour: a callback that waits for a timer, an async
# handler that never settles, or a callback that leaves an interval running.
NODE_LOOP_HANDLER = """
exports.handler = (event, context, callback) => {
  if (event.mode === 'hang') {
    return new Promise(() => {});
  }
  const result = { timerFired: false, pid: process.pid };
  if (event.mode === 'interval') {
    context.callbackWaitsForEmptyEventLoop = false;
    setInterval(() => {}, 1000);
  }
  setTimeout(() => { result.timerFired = true; }, 50);
  callback(null, result);
};
"""


@pytest.mark.skipif(NODE is None, reason="node is not on PATH")
@pytest.mark.timeout(120)
async def test_node_loop_states_in_a_row(
    runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path
) -> None:
    write_files(tmp_path, {"index.js": NODE_LOOP_HANDLER})
    process = await spawn(runtime_api, "node", tmp_path, "index.handler")
    await wait_init(runtime_api)

    # A handler that returns a promise but takes a callback is a callback
    # handler: one that never calls back returns null once the loop empties.
    for mode in ["wait", "hang", "wait", "hang", "hang", "wait", "interval", "interval"]:
        outcome = await invoke(runtime_api, json.dumps({"mode": mode}).encode())
        assert outcome.error_type is None, (mode, outcome)
        if mode == "hang":
            assert outcome.response == b"null", mode
            continue
        assert outcome.response is not None
        assert json.loads(outcome.response) == {
            "timerFired": mode == "wait",
            "pid": process.pid,
        }, mode


# -- Node.js: a second error while the first is being posted ---------------------------------

# Each module fails its init asynchronously: an unhandled rejection or an
# exception thrown from process.nextTick(). The runtime's error listener
# then posts an init error while another request is in flight: a first
# init error for a module that also fails at once, or the first
# GET /next for one whose handler loaded.
FAILING_INITS = {
    "missing-handler": (
        "Promise.reject(new Error('async init failed'));\nmodule.exports = {};\n",
        "index.handler is undefined or not exported",
    ),
    "throws": (
        "Promise.reject(new Error('async init failed'));\nthrow new Error('sync init failed');\n",
        "sync init failed",
    ),
    "rejection-only": (
        "Promise.reject(new Error('async init failed'));\nexports.handler = async () => 1;\n",
        "Error: async init failed",
    ),
    "next-tick-throws": (
        "process.nextTick(() => { throw new Error('tick'); });\nexports.handler = async () => 1;\n",
        "tick",
    ),
}


@pytest.mark.skipif(NODE is None, reason="node is not on PATH")
@pytest.mark.parametrize("kind", list(FAILING_INITS))
@pytest.mark.timeout(60)
async def test_node_init_error_with_rejection(
    runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path, kind: str
) -> None:
    source, message = FAILING_INITS[kind]
    write_files(tmp_path, {"index.js": source})
    init = asyncio.ensure_future(runtime_api.wait_init())
    process = await spawn(runtime_api, "node", tmp_path, "index.handler")

    # 129 after an uncaught exception, 128 after an unhandled rejection:
    # whichever error's post finishes first ends the process.
    assert await process.wait_exit() in (128, 129)
    # The runtime exits only after the Runtime API accepted its init error.
    try:
        failure = await asyncio.wait_for(asyncio.shield(init), 1.0)
    finally:
        init.cancel()
    assert failure is not None
    assert failure.error_message == message
