"""The Lambda Runtime API that one execution environment's runtime talks to.

Each environment gets its own `RuntimeApi`: an HTTP server on 127.0.0.1 with
a free port, which the runtime process finds in `AWS_LAMBDA_RUNTIME_API`.
The runtime long-polls `GET /runtime/invocation/next` for an event and posts
the result of each invocation back. The worker hands events in with
`invoke()`, which returns the result that the runtime posted.

Endpoints, under `/2018-06-01` (the API version in every Lambda runtime
client):

    GET  /runtime/invocation/next             200, blocks until an event
    POST /runtime/invocation/{id}/response    202; 400 InvalidRequestID; 413
    POST /runtime/invocation/{id}/error       202; 400 InvalidRequestID; 413
    POST /runtime/init/error                  202; 403 once init has finished

The server is on the path of every warm invocation, so it uses aiohttp's
low-level `web.Server` with one handler that dispatches on the path, without
a router or middlewares.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import deque
from dataclasses import dataclass
from urllib.parse import unquote

from aiohttp import web

from emulator.invocation import ERROR_RESPONSE_TOO_LARGE, MAX_PAYLOAD_BYTES

logger = logging.getLogger(__name__)

API_PREFIX = "/2018-06-01/runtime/"
INVOCATION_PREFIX = API_PREFIX + "invocation/"
NEXT_PATH = INVOCATION_PREFIX + "next"
INIT_ERROR_PATH = API_PREFIX + "init/error"

ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"

# Lambda keeps a runtime's error type only when it has this form; anything
# else is reported from the body, or as Runtime.Unknown.
VALID_ERROR_TYPE = re.compile(r"(Runtime|Function)\.[A-Z][a-zA-Z]+")
UNKNOWN_ERROR_TYPE = "Runtime.Unknown"

# awslambdaric and aws-lambda-cpp send the X-Ray error cause as a header of
# up to 1 MiB with every /error post, and aiohttp's default field limit is
# 8 KiB, so the parser must accept larger header values.
MAX_HEADER_FIELD_BYTES = 1024 * 1024 + 8192

# Keep this short: close() has already woken every blocked handler, so
# only a runtime still sending a body can hold the shutdown up.
SHUTDOWN_TIMEOUT_SECONDS = 1.0

_ACCEPTED_BODY = b'{"status":"OK"}'


@dataclass(frozen=True, slots=True)
class InitFailure:
    """An init error that the runtime posted to `/runtime/init/error`."""

    error_type: str
    error_message: str
    body: bytes


@dataclass(frozen=True, slots=True)
class RuntimeOutcome:
    """The result that the runtime posted for one invocation.

    On success `response` is the `/response` body and the error fields are
    None. On failure `error_type` is set and `response` is None.
    """

    response: bytes | None
    error_type: str | None = None
    error_message: str | None = None
    error_body: bytes | None = None


class InvocationAbortedError(Exception):
    """The invocation ended without a result: `abort()` or `close()` was called."""


class RuntimeApiClosedError(Exception):
    """`close()` was called before the runtime finished its init."""


class _Invocation:
    __slots__ = ("deadline_ms", "end_reason", "event", "future", "request_id", "trace_id")

    def __init__(
        self,
        request_id: str,
        event: bytes,
        deadline_ms: int,
        trace_id: str,
        future: asyncio.Future[RuntimeOutcome | None],
    ) -> None:
        self.request_id = request_id
        self.event = event
        self.deadline_ms = deadline_ms
        self.trace_id = trace_id
        # The result is None when the invocation ended without an outcome,
        # and `end_reason` then gives the reason.
        self.future = future
        self.end_reason = ""


class RuntimeApi:
    """The Runtime API server of one execution environment.

    One invocation runs at a time: `invoke()` raises RuntimeError if the
    previous one has not ended.
    """

    _function_arn: str
    _max_payload_bytes: int
    _runner: web.ServerRunner | None
    _port: int
    _closed: bool
    _init_done: bool
    _init_future: asyncio.Future[InitFailure | None] | None
    _pending: _Invocation | None
    _current: _Invocation | None
    _next_waiters: deque[asyncio.Future[None]]

    def __init__(self, *, function_arn: str, max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> None:
        self._function_arn = function_arn
        self._max_payload_bytes = max_payload_bytes
        self._runner = None
        self._port = 0
        self._closed = False
        self._init_done = False
        self._init_future = None
        # `_pending` is handed in but not yet fetched by the runtime.
        # `_current` was fetched and waits for its /response or /error.
        self._pending = None
        self._current = None
        # Futures of GET /next requests blocked until an event arrives.
        self._next_waiters = deque()

    @property
    def init_done(self) -> bool:
        """Whether the runtime has finished its init (called GET /next once)."""
        return self._init_done

    @property
    def port(self) -> int:
        """The port the server listens on, 0 before `start()`."""
        return self._port

    # -- lifecycle -------------------------------------------------------

    async def start(self) -> int:
        """Listen on 127.0.0.1 on a free port and return the port."""
        if self._runner is not None:
            raise RuntimeError("the Runtime API server is already started")

        self._init_future = asyncio.get_running_loop().create_future()
        server = web.Server(
            self._handle,
            # A runtime that disconnects while blocked on GET /next must not
            # leave a handler behind that would take the next event.
            handler_cancellation=True,
            access_log=None,
            max_field_size=MAX_HEADER_FIELD_BYTES,
        )
        runner = web.ServerRunner(server, shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = _bound_port(runner)
        logger.debug("Runtime API for %s listening on 127.0.0.1:%d", self._function_arn, self._port)
        return self._port

    async def close(self) -> None:
        """Stop serving; `wait_init()` and `invoke()` callers get an error."""
        if self._closed:
            return
        self._closed = True

        # Wake blocked GET /next handlers so that the shutdown need not wait.
        while self._next_waiters:
            waiter = self._next_waiters.pop()
            if not waiter.done():
                waiter.set_result(None)

        self._end_invocations("the Runtime API server was closed")
        if self._init_future is not None and not self._init_future.done():
            self._init_future.set_result(None)

        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- the worker's side -------------------------------------------------

    async def wait_init(self) -> InitFailure | None:
        """Wait for the end of init: None on success, the failure if the runtime posted one.

        Init has succeeded when the runtime first calls GET /next. Raises
        RuntimeApiClosedError if `close()` is called first.
        """
        if self._init_future is None:
            raise RuntimeError("the Runtime API server is not started")
        failure = await asyncio.shield(self._init_future)
        if failure is None and not self._init_done:
            raise RuntimeApiClosedError("the Runtime API server was closed during init")
        return failure

    async def invoke(
        self, request_id: str, event: bytes, deadline_ms: int, trace_id: str
    ) -> RuntimeOutcome:
        """Hand `event` to the runtime and return what it posts for `request_id`.

        `deadline_ms` is the deadline in epoch milliseconds. The caller
        enforces the timeout by cancelling this coroutine; the invocation
        is then forgotten and later posts for it get 400 InvalidRequestID.
        Raises InvocationAbortedError when `abort()` or `close()` ends it.
        """
        if self._closed:
            raise InvocationAbortedError("the Runtime API server is closed")
        if self._pending is not None or self._current is not None:
            raise RuntimeError("an invocation is already running in this environment")

        future: asyncio.Future[RuntimeOutcome | None] = asyncio.get_running_loop().create_future()
        invocation = _Invocation(request_id, event, deadline_ms, trace_id, future)
        self._pending = invocation
        self._wake_next_waiter()
        try:
            outcome = await future
        finally:
            self._forget(invocation)
        if outcome is None:
            raise InvocationAbortedError(invocation.end_reason)
        return outcome

    def abort(self) -> None:
        """Forget the current invocation because the caller stopped the runtime.

        A pending `invoke()` raises InvocationAbortedError, and later posts
        for the invocation get 400 InvalidRequestID.
        """
        self._end_invocations("the runtime was stopped")

    def _end_invocations(self, reason: str) -> None:
        for invocation in (self._pending, self._current):
            if invocation is not None and not invocation.future.done():
                invocation.end_reason = reason
                invocation.future.set_result(None)
        self._pending = None
        self._current = None

    def _forget(self, invocation: _Invocation) -> None:
        if self._pending is invocation:
            self._pending = None
        if self._current is invocation:
            self._current = None

    def _complete(self, invocation: _Invocation, outcome: RuntimeOutcome) -> None:
        self._forget(invocation)
        if not invocation.future.done():
            invocation.future.set_result(outcome)

    def _wake_next_waiter(self) -> None:
        # The newest waiter goes first: if a runtime has two GET /next
        # requests open, the older one is the more likely to be dead.
        while self._next_waiters:
            waiter = self._next_waiters.pop()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _finish_init(self, failure: InitFailure | None) -> None:
        if self._init_future is None or self._init_future.done():
            return
        self._init_done = failure is None
        self._init_future.set_result(failure)

    # -- HTTP ------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.raw_path
        query_start = path.find("?")
        if query_start >= 0:
            path = path[:query_start]
        method = request.method

        if path == NEXT_PATH:
            if method != "GET":
                return _method_not_allowed("GET")
            return await self._handle_next(request)

        if path == INIT_ERROR_PATH:
            if method != "POST":
                return _method_not_allowed("POST")
            return await self._handle_init_error(request)

        if path.startswith(INVOCATION_PREFIX):
            request_id, _, action = path[len(INVOCATION_PREFIX) :].partition("/")
            if request_id and action in ("response", "error"):
                if method != "POST":
                    return _method_not_allowed("POST")
                if "%" in request_id:
                    request_id = unquote(request_id)
                if action == "response":
                    return await self._handle_response(request, request_id)
                return await self._handle_error(request, request_id)

        return _error_response(404, "NotFound", f"Unknown Runtime API path: {path}")

    async def _handle_next(self, request: web.BaseRequest) -> web.StreamResponse:
        if not self._init_done:
            self._finish_init(None)

        while self._pending is None:
            if self._closed:
                return _error_response(
                    503, "ServiceUnavailable", "The Runtime API server is shutting down"
                )
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._next_waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # aiohttp cancels the handler when the runtime disconnects.
                # A wake-up this handler can no longer use goes to another.
                if waiter.done():
                    self._wake_next_waiter()
                else:
                    self._next_waiters.remove(waiter)
                raise

        invocation = self._pending
        self._pending = None
        self._current = invocation
        return web.Response(
            body=invocation.event,
            headers={
                "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": self._function_arn,
                "Lambda-Runtime-Trace-Id": invocation.trace_id,
                "Content-Type": "application/json",
            },
        )

    async def _handle_response(
        self, request: web.BaseRequest, request_id: str
    ) -> web.StreamResponse:
        body = await self._read_body(request)
        invocation = self._current
        if invocation is None or invocation.request_id != request_id:
            return _invalid_request_id(request_id)
        if body is None:
            # NOTE: the invocation ends before the runtime reads this 413, so
            # what the runtime prints about it lands after the END line, often
            # among the next invocation's lines.
            self._complete(invocation, self._too_large_outcome())
            return self._too_large_response()

        self._complete(invocation, RuntimeOutcome(response=body))
        return web.Response(status=202, body=_ACCEPTED_BODY, content_type="application/json")

    async def _handle_error(self, request: web.BaseRequest, request_id: str) -> web.StreamResponse:
        body = await self._read_body(request)
        invocation = self._current
        if invocation is None or invocation.request_id != request_id:
            return _invalid_request_id(request_id)
        if body is None:
            self._complete(invocation, self._too_large_outcome())
            return self._too_large_response()

        header_type = _valid_error_type(request.headers.get(ERROR_TYPE_HEADER))
        body_type, message = _parse_error_body(body)
        error_type = header_type or body_type or UNKNOWN_ERROR_TYPE
        outcome = RuntimeOutcome(
            response=None, error_type=error_type, error_message=message, error_body=body
        )
        self._complete(invocation, outcome)
        return web.Response(status=202, body=_ACCEPTED_BODY, content_type="application/json")

    async def _handle_init_error(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await self._read_body(request)
        if self._init_future is None or self._init_future.done():
            # NOTE: the error type and message of this 403 are a guess.
            return _error_response(
                403, "InvalidStateTransition", "Init has already finished: init/error not allowed"
            )
        if body is None:
            return self._too_large_response()

        error_type = _valid_error_type(request.headers.get(ERROR_TYPE_HEADER)) or UNKNOWN_ERROR_TYPE
        _, message = _parse_error_body(body)
        self._finish_init(
            InitFailure(error_type=error_type, error_message=message or "", body=body)
        )
        return web.Response(status=202, body=_ACCEPTED_BODY, content_type="application/json")

    async def _read_body(self, request: web.BaseRequest) -> bytes | None:
        """Read the request body, or return None when it is over the size limit.

        Reading stops at the first chunk past the limit. aiohttp then reads
        and discards the rest for up to 10 seconds, or closes the connection.
        """
        limit = self._max_payload_bytes
        declared = request.content_length
        if declared is not None and declared > limit:
            return None

        content = request.content
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = await content.readany()
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)

    def _too_large_outcome(self) -> RuntimeOutcome:
        # The message is Lambda's own for this error.
        message = (
            "Response payload size exceeded maximum allowed payload size "
            f"({self._max_payload_bytes} bytes)."
        )
        body = json.dumps({"errorMessage": message, "errorType": ERROR_RESPONSE_TOO_LARGE})
        return RuntimeOutcome(
            response=None,
            error_type=ERROR_RESPONSE_TOO_LARGE,
            error_message=message,
            error_body=body.encode(),
        )

    def _too_large_response(self) -> web.Response:
        return _error_response(
            413,
            "RequestEntityTooLarge",
            f"Exceeded maximum allowed payload size ({self._max_payload_bytes} bytes).",
        )


def _bound_port(runner: web.ServerRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise RuntimeError("the Runtime API server has no TCP address")


def _valid_error_type(value: str | None) -> str | None:
    if value is not None and VALID_ERROR_TYPE.fullmatch(value):
        return value
    return None


def _parse_error_body(body: bytes) -> tuple[str | None, str | None]:
    """Return the `errorType` and `errorMessage` strings of an error body, where present."""
    try:
        document = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(document, dict):
        return None, None
    error_type = document.get("errorType")
    message = document.get("errorMessage")
    return (
        error_type if isinstance(error_type, str) and error_type else None,
        message if isinstance(message, str) else None,
    )


def _error_response(status: int, error_type: str, message: str) -> web.Response:
    body = json.dumps({"errorMessage": message, "errorType": error_type})
    return web.Response(status=status, text=body, content_type="application/json")


def _invalid_request_id(request_id: str) -> web.Response:
    logger.debug("Runtime API: post for request id %s, which is not the current one", request_id)
    return _error_response(
        400, "InvalidRequestID", f"Invalid request ID: {request_id} is not the current invocation"
    )


def _method_not_allowed(allowed: str) -> web.Response:
    response = _error_response(405, "MethodNotAllowed", f"Method not allowed; use {allowed}")
    response.headers["Allow"] = allowed
    return response
