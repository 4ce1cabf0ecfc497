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

The server is on the path of every warm invocation, and every worker
process starts one per environment. So it runs on the small HTTP/1.1 server
in `emulator.worker.http`, not on aiohttp, whose import alone cost each
worker about 0.2 s of CPU. The handler answers each request synchronously, except a
GET /next that finds no event: its connection waits in `_next_waiters`
until `invoke()` hands that connection the event directly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import deque
from dataclasses import dataclass
from urllib.parse import unquote

from emulator.invocation import ERROR_RESPONSE_TOO_LARGE, MAX_PAYLOAD_BYTES
from emulator.worker.http import HttpConnection, HttpServer, Request, Response, json_error

logger = logging.getLogger(__name__)

API_PREFIX = "/2018-06-01/runtime/"
INVOCATION_PREFIX = API_PREFIX + "invocation/"
NEXT_PATH = INVOCATION_PREFIX + "next"
INIT_ERROR_PATH = API_PREFIX + "init/error"

ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
# The same name as `Request.headers` stores it.
ERROR_TYPE_FIELD = ERROR_TYPE_HEADER.lower()

# Lambda keeps a runtime's error type only when it has this form; anything
# else is reported from the body, or as Runtime.Unknown.
VALID_ERROR_TYPE = re.compile(r"(Runtime|Function)\.[A-Z][a-zA-Z]+")
UNKNOWN_ERROR_TYPE = "Runtime.Unknown"

_ACCEPTED = Response(status=202, body=b'{"status":"OK"}')


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
    _server: HttpServer | None
    _port: int
    _closed: bool
    _init_done: bool
    _init_future: asyncio.Future[InitFailure | None] | None
    _pending: _Invocation | None
    _current: _Invocation | None
    _next_waiters: deque[HttpConnection]

    def __init__(self, *, function_arn: str, max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> None:
        self._function_arn = function_arn
        self._max_payload_bytes = max_payload_bytes
        self._server = None
        self._port = 0
        self._closed = False
        self._init_done = False
        self._init_future = None
        # `_pending` is handed in but not yet fetched by the runtime.
        # `_current` was fetched and waits for its /response or /error.
        self._pending = None
        self._current = None
        # Connections whose GET /next waits for an event, oldest first.
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
        if self._server is not None:
            raise RuntimeError("the Runtime API server is already started")

        self._init_future = asyncio.get_running_loop().create_future()
        server = HttpServer(self, max_body_bytes=self._max_payload_bytes)
        self._port = await server.start("127.0.0.1", 0)
        self._server = server
        logger.debug("Runtime API for %s listening on 127.0.0.1:%d", self._function_arn, self._port)
        return self._port

    async def close(self) -> None:
        """Stop serving; `wait_init()` and `invoke()` callers get an error."""
        if self._closed:
            return
        self._closed = True

        # Send 503 to blocked GET /next requests before their connections close.
        while self._next_waiters:
            self._next_waiters.pop().respond(_shutting_down())

        self._end_invocations("the Runtime API server was closed")
        if self._init_future is not None and not self._init_future.done():
            self._init_future.set_result(None)

        if self._server is not None:
            await self._server.close()
            self._server = None

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

    def abort(self, request_id: str | None = None) -> None:
        """Forget the current invocation because the caller stopped the runtime.

        A pending `invoke()` raises InvocationAbortedError, and later posts
        for the invocation get 400 InvalidRequestID. With `request_id`, only
        an invocation of that id is forgotten.
        """
        if request_id is not None and request_id not in (
            invocation.request_id
            for invocation in (self._pending, self._current)
            if invocation is not None
        ):
            return
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
        # A closing connection has not been reported lost yet, and an event
        # sent to it would be lost.
        while self._next_waiters and self._pending is not None:
            connection = self._next_waiters.pop()
            if not connection.closed:
                connection.respond(self._deliver())

    def _finish_init(self, failure: InitFailure | None) -> None:
        if self._init_future is None or self._init_future.done():
            return
        self._init_done = failure is None
        self._init_future.set_result(failure)

    # -- HTTP ------------------------------------------------------------

    def handle_request(self, request: Request, connection: HttpConnection) -> Response | None:
        """Return the response to one request, or None while GET /next waits for an event."""
        path = request.path
        method = request.method

        if path == NEXT_PATH:
            if method != "GET":
                return _method_not_allowed("GET")
            return self._handle_next(connection)

        if path == INIT_ERROR_PATH:
            if method != "POST":
                return _method_not_allowed("POST")
            return self._handle_init_error(request)

        if path.startswith(INVOCATION_PREFIX):
            request_id, _, action = path[len(INVOCATION_PREFIX) :].partition("/")
            if request_id and action in ("response", "error"):
                if method != "POST":
                    return _method_not_allowed("POST")
                if "%" in request_id:
                    request_id = unquote(request_id)
                if action == "response":
                    return self._handle_response(request, request_id)
                return self._handle_error(request, request_id)

        return json_error(404, "NotFound", f"Unknown Runtime API path: {path}")

    def request_abandoned(self, connection: HttpConnection) -> None:
        """Forget a GET /next whose runtime disconnected, so that it takes no event."""
        if connection in self._next_waiters:
            self._next_waiters.remove(connection)

    def _handle_next(self, connection: HttpConnection) -> Response | None:
        if not self._init_done:
            self._finish_init(None)
        if self._pending is not None:
            return self._deliver()
        if self._closed:
            return _shutting_down()
        self._next_waiters.append(connection)
        return None

    def _deliver(self) -> Response:
        """Make the pending invocation the current one and return its GET /next response."""
        invocation = self._pending
        assert invocation is not None
        self._pending = None
        self._current = invocation
        return Response(
            status=200,
            body=invocation.event,
            headers=(
                ("Lambda-Runtime-Aws-Request-Id", invocation.request_id),
                ("Lambda-Runtime-Deadline-Ms", str(invocation.deadline_ms)),
                ("Lambda-Runtime-Invoked-Function-Arn", self._function_arn),
                ("Lambda-Runtime-Trace-Id", invocation.trace_id),
            ),
        )

    def _handle_response(self, request: Request, request_id: str) -> Response:
        invocation = self._current
        if invocation is None or invocation.request_id != request_id:
            return _invalid_request_id(request_id)
        if request.body is None:
            # NOTE: the invocation ends before the runtime reads this 413, so
            # what the runtime prints about it lands after the END line, often
            # among the next invocation's lines.
            self._complete(invocation, self._too_large_outcome())
            return self._too_large_response()

        self._complete(invocation, RuntimeOutcome(response=request.body))
        return _ACCEPTED

    def _handle_error(self, request: Request, request_id: str) -> Response:
        invocation = self._current
        if invocation is None or invocation.request_id != request_id:
            return _invalid_request_id(request_id)
        body = request.body
        if body is None:
            self._complete(invocation, self._too_large_outcome())
            return self._too_large_response()

        header_type = _valid_error_type(request.headers.get(ERROR_TYPE_FIELD))
        body_type, message = _parse_error_body(body)
        error_type = header_type or body_type or UNKNOWN_ERROR_TYPE
        outcome = RuntimeOutcome(
            response=None, error_type=error_type, error_message=message, error_body=body
        )
        self._complete(invocation, outcome)
        return _ACCEPTED

    def _handle_init_error(self, request: Request) -> Response:
        if self._init_future is None or self._init_future.done():
            # NOTE: the error type and message of this 403 are a guess.
            return json_error(
                403, "InvalidStateTransition", "Init has already finished: init/error not allowed"
            )
        body = request.body
        if body is None:
            return self._too_large_response()

        error_type = _valid_error_type(request.headers.get(ERROR_TYPE_FIELD)) or UNKNOWN_ERROR_TYPE
        _, message = _parse_error_body(body)
        self._finish_init(
            InitFailure(error_type=error_type, error_message=message or "", body=body)
        )
        return _ACCEPTED

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

    def _too_large_response(self) -> Response:
        return json_error(
            413,
            "RequestEntityTooLarge",
            f"Exceeded maximum allowed payload size ({self._max_payload_bytes} bytes).",
        )


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


def _invalid_request_id(request_id: str) -> Response:
    logger.debug("Runtime API: post for request id %s, which is not the current one", request_id)
    return json_error(
        400, "InvalidRequestID", f"Invalid request ID: {request_id} is not the current invocation"
    )


def _method_not_allowed(allowed: str) -> Response:
    response = json_error(405, "MethodNotAllowed", f"Method not allowed; use {allowed}")
    return Response(status=405, body=response.body, headers=(("Allow", allowed),))


def _shutting_down() -> Response:
    return json_error(503, "ServiceUnavailable", "The Runtime API server is shutting down")
