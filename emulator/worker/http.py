"""A small HTTP/1.1 server on `asyncio.Protocol` for the Lambda Runtime API.

The only peers are Lambda runtime clients on loopback: curl in shell
bootstraps, the Go and Rust runtimes, awslambdaric, aws-lambda-ric and the
emulator's own shims. They send a few small requests per invocation on one
kept-alive connection, so a general web server (routing, compression,
streaming responses, timeouts against hostile clients) is not needed.
aiohttp's web server, which this replaces, cost each worker process about
0.2 s of CPU to import and much of its CPU time per invocation.

What this server implements of HTTP/1.1 (RFC 9112):

- Requests in origin form (`/path?query`) or absolute form, HTTP/1.0 and
  HTTP/1.1. Persistent connections: HTTP/1.1 keeps the connection unless
  the request has `Connection: close`; HTTP/1.0 closes it unless the request
  has `Connection: keep-alive`. Pipelined requests get their responses in order.
- Request bodies framed by `Content-Length` or `Transfer-Encoding: chunked`
  (chunk extensions and trailer fields are read and ignored). Bodies over
  `max_body_bytes` are not buffered: the request goes to the handler with
  no body as soon as the size is known, and the connection closes after the
  response.
- `Expect: 100-continue`: `100 Continue` before the body, or the final
  response at once when the declared body is over the limit.
- Header names are matched case-insensitively. The head (request line and
  fields) may be up to `MAX_HEAD_BYTES`, because awslambdaric and
  aws-lambda-cpp send an X-Ray error cause of up to 1 MiB as a header.
- Responses always have a `Content-Length` body, never chunked.

Left out: line folding (rejected with 400, as RFC 9112 allows), bare LF
line endings, transfer codings other than chunked (501), upgrades, and idle
or read timeouts. A malformed request gets 400 and the connection closes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Literal, Protocol, cast

logger = logging.getLogger(__name__)

# 1 MiB for the X-Ray error cause header, and room for the other fields.
MAX_HEAD_BYTES = 1024 * 1024 + 64 * 1024

# The maximum length of a chunk-size line, chunk extensions included.
MAX_CHUNK_LINE_BYTES = 8 * 1024

# While a response is deferred, the connection stops reading once this much
# of the next requests is buffered.
MAX_PIPELINED_BYTES = 256 * 1024

# After a response that closes the connection while the request body is
# still arriving, the server sends FIN and discards what comes for up to
# this long before it closes the socket. Closing at once, with unread data,
# would send a TCP reset that can destroy the response on its way.
LINGER_SECONDS = 2.0

_REQUEST_LINE = re.compile(r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) HTTP/(\d)\.(\d)")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")

_REASONS = {
    100: "Continue",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# Written out because time.strftime's %a and %b follow the locale.
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(slots=True)
class Request:
    """One HTTP request with its whole body.

    `path` is the request target without the query, still percent-encoded.
    `headers` maps lowercase field names to values; repeated fields are
    joined with ", ". `body` is None when the body is over the size limit.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP response; `headers` are sent after Content-Type and Content-Length."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = field(default=())
    content_type: str = "application/json"


def json_error(status: int, error_type: str, message: str) -> Response:
    """Build an error response with the JSON body of the Runtime API's errors."""
    body = json.dumps({"errorMessage": message, "errorType": error_type})
    return Response(status=status, body=body.encode())


class RequestHandler(Protocol):
    """The handler that the server calls for each request."""

    def handle_request(self, request: Request, connection: HttpConnection) -> Response | None:
        """Return the response, or None to send it later with `connection.respond()`.

        The connection reads no further request until that response is sent.
        """

    def request_abandoned(self, connection: HttpConnection) -> None:
        """Forget the deferred request of `connection`, which the client closed."""


class _BadRequestError(Exception):
    """The request cannot be parsed; `response` goes out before the connection closes."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def _bad_request(message: str) -> _BadRequestError:
    return _BadRequestError(json_error(400, "BadRequest", message))


class _Head:
    """The parsed request line and fields of the request being read."""

    __slots__ = ("body_read", "headers", "http_1_0", "keep_alive", "method", "path")

    def __init__(
        self, method: str, path: str, headers: dict[str, str], http_1_0: bool, keep_alive: bool
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.http_1_0 = http_1_0
        self.keep_alive = keep_alive
        # False when the server stopped reading the body: the connection
        # then closes after the response.
        self.body_read = True


# Stands for the head of a request that could not be parsed.
_MALFORMED = _Head("", "", {}, http_1_0=False, keep_alive=False)
_MALFORMED.body_read = False


def _parse_head(raw: bytes) -> _Head:
    """Parse a request head without its final CRLF CRLF; raise _BadRequestError."""
    text = raw.decode("latin-1")
    lines = text.split("\r\n")
    # Each line ends in CRLF, so a CR or LF left inside a line is bare.
    separators = len(lines) - 1
    if text.count("\n") != separators or text.count("\r") != separators:
        raise _bad_request("Line endings in the request head must be CRLF")
    if "\x00" in text:
        raise _bad_request("NUL character in the request head")

    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        raise _bad_request("Invalid request line")
    method, target, major, minor = match.groups()
    if major != "1":
        raise _BadRequestError(
            json_error(505, "HTTPVersionNotSupported", "Only HTTP/1.0 and HTTP/1.1 are supported")
        )
    http_1_0 = minor == "0"

    if not target.startswith("/"):
        # The absolute form: keep the path of http://host/path.
        scheme, separator, rest = target.partition("://")
        if not separator or scheme.lower() not in ("http", "https"):
            raise _bad_request("Invalid request target")
        slash = rest.find("/")
        target = rest[slash:] if slash >= 0 else "/"
    query = target.find("?")
    path = target if query < 0 else target[:query]

    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or _TOKEN.fullmatch(name) is None:
            raise _bad_request("Invalid header field")
        name = name.lower()
        value = value.strip(" \t")
        previous = headers.get(name)
        if previous is None:
            headers[name] = value
        elif name == "content-length":
            if previous != value:
                raise _bad_request("Conflicting Content-Length fields")
        else:
            headers[name] = previous + ", " + value

    connection = headers.get("connection")
    if connection is None:
        keep_alive = not http_1_0
    else:
        tokens = {token.strip().lower() for token in connection.split(",")}
        keep_alive = "close" not in tokens and (not http_1_0 or "keep-alive" in tokens)
    return _Head(method, path, headers, http_1_0, keep_alive)


class _ChunkedBody:
    """The decoder of one chunked request body, fed from the connection's buffer."""

    __slots__ = ("_chunks", "_max_bytes", "_remaining", "_size", "_state", "_trailer_bytes")

    # The states of the decoder.
    _SIZE_LINE = 0
    _DATA = 1
    _DATA_END = 2
    _TRAILER = 3

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._chunks: list[bytes] = []
        self._size = 0
        self._remaining = 0
        self._state = self._SIZE_LINE
        self._trailer_bytes = 0

    def feed(self, buffer: bytearray) -> bool | None:
        """Consume the part of the body that `buffer` contains.

        Return True when the body is complete, False when more data is
        needed, and None when the body is over the size limit (nothing past
        the limit is kept). Raise _BadRequestError on a framing error.
        """
        while True:
            state = self._state
            if state == self._DATA:
                take = min(self._remaining, len(buffer))
                if take == 0:
                    return False
                if self._size + take > self._max_bytes:
                    return None
                self._chunks.append(bytes(buffer[:take]))
                del buffer[:take]
                self._size += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = self._DATA_END

            elif state == self._DATA_END:
                if len(buffer) < 2:
                    return False
                if buffer[:2] != b"\r\n":
                    raise _bad_request("Missing CRLF after chunk data")
                del buffer[:2]
                self._state = self._SIZE_LINE

            else:
                end = buffer.find(b"\r\n")
                if state == self._SIZE_LINE:
                    if end < 0 or end > MAX_CHUNK_LINE_BYTES:
                        if len(buffer) > MAX_CHUNK_LINE_BYTES:
                            raise _bad_request("Chunk size line too long")
                        return False
                    self._read_size_line(bytes(buffer[:end]))
                    del buffer[: end + 2]
                    continue

                # Trailer fields are counted against the head limit and ignored.
                if end < 0:
                    if self._trailer_bytes + len(buffer) > MAX_HEAD_BYTES:
                        raise _BadRequestError(_head_too_large())
                    return False
                del buffer[: end + 2]
                if end == 0:
                    return True
                self._trailer_bytes += end + 2

    def _read_size_line(self, line: bytes) -> None:
        # chunk-size [ BWS ";" chunk-ext ]: the extensions are ignored.
        size_text = line.split(b";", 1)[0].strip(b" \t")
        if _CHUNK_SIZE.fullmatch(size_text) is None:
            raise _bad_request("Invalid chunk size")
        size = int(size_text, 16)
        if size == 0:
            self._state = self._TRAILER
        else:
            self._remaining = size
            self._state = self._DATA

    def body(self) -> bytes:
        """Return the decoded body; valid once `feed()` returned True."""
        if len(self._chunks) == 1:
            return self._chunks[0]
        return b"".join(self._chunks)


def _head_too_large() -> Response:
    return json_error(
        431,
        "RequestHeaderFieldsTooLarge",
        f"The request head is over the limit of {MAX_HEAD_BYTES} bytes",
    )


class HttpConnection(asyncio.Protocol):
    """One client connection: parses requests and writes the handler's responses in order."""

    _transport: asyncio.Transport | None
    _buffer: bytearray
    _scan_from: int
    _head: _Head | None
    _body_length: int
    _chunked: _ChunkedBody | None
    _deferred: _Head | None
    _lingering: bool
    _paused: bool
    _linger_timer: asyncio.TimerHandle | None

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._handler = server.handler
        self._max_body_bytes = server.max_body_bytes
        self._transport = None
        self._buffer = bytearray()
        # Where the search for the end of the head resumes in `_buffer`.
        self._scan_from = 0
        # The head whose body is being read, and how that body is framed.
        self._head = None
        self._body_length = 0
        self._chunked = None
        # The head of the request whose response the handler deferred.
        self._deferred = None
        # Set while the connection discards its input before it closes.
        self._lingering = False
        self._paused = False
        self._linger_timer = None

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._transport = None
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        if self._deferred is not None:
            self._deferred = None
            self._handler.request_abandoned(self)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return
        self._buffer += data
        if self._deferred is None:
            self._process()
        elif len(self._buffer) > MAX_PIPELINED_BYTES and not self._paused:
            self._pause()

    def eof_received(self) -> bool:
        # The Lambda runtime clients in the tests do not half-close, so an end
        # of stream is a disconnect, even during a deferred response (a
        # runtime that died while blocked on GET /next).
        return False

    # -- responses ------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the connection is closed or closing."""
        return self._lingering or self._transport is None or self._transport.is_closing()

    def respond(self, response: Response) -> None:
        """Send the response that the handler deferred, then read the next request."""
        head = self._deferred
        if head is None:
            raise RuntimeError("the connection has no deferred request")
        self._deferred = None
        if self.closed:
            return
        self._send(response, head)
        if self.closed:
            return
        assert self._transport is not None
        if self._paused:
            self._paused = False
            self._transport.resume_reading()
        if self._buffer:
            # Not at once: `respond()` runs inside the handler's own code.
            asyncio.get_running_loop().call_soon(self._process_if_idle)

    def close(self) -> None:
        """Close the connection once the responses already written are sent."""
        if self._transport is not None:
            self._transport.close()

    def _send(self, response: Response, head: _Head) -> None:
        transport = self._transport
        if transport is None:
            return
        keep_alive = head.keep_alive and head.body_read
        body = response.body
        reason = _REASONS.get(response.status, "Unknown")
        lines = [
            f"HTTP/1.1 {response.status} {reason}\r\n"
            f"Content-Type: {response.content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"Date: {_http_date()}\r\n"
        ]
        for name, value in response.headers:
            lines.append(f"{name}: {value}\r\n")
        if not keep_alive:
            lines.append("Connection: close\r\n")
        elif head.http_1_0:
            lines.append("Connection: keep-alive\r\n")
        lines.append("\r\n")
        encoded = "".join(lines).encode()

        if len(body) <= 16 * 1024:
            transport.write(encoded + body)
        else:
            transport.write(encoded)
            transport.write(body)

        if not keep_alive:
            self._close_after_response(head.body_read)

    def _close_after_response(self, body_read: bool) -> None:
        transport = self._transport
        if transport is None:
            return
        self._buffer.clear()
        self._head = None
        self._chunked = None
        if body_read or not transport.can_write_eof():
            transport.close()
            return
        # The client may still be sending the body: send FIN, discard what
        # arrives, and close when the client does or after LINGER_SECONDS.
        self._lingering = True
        transport.write_eof()
        if self._paused:
            self._paused = False
            transport.resume_reading()
        self._linger_timer = asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)

    def _pause(self) -> None:
        if self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    # -- parsing ----------------------------------------------------------------

    def _process_if_idle(self) -> None:
        if self._deferred is None and not self.closed:
            self._process()

    def _process(self) -> None:
        """Parse and dispatch every complete request in the buffer, in order."""
        try:
            while self._deferred is None and not self.closed:
                if self._head is None and not self._read_head():
                    return
                body = self._read_body()
                if body is False:
                    return
                head = self._head
                assert head is not None
                self._head = None
                self._chunked = None
                self._dispatch(head, body)
        except _BadRequestError as error:
            logger.debug("Rejected a malformed HTTP request: %s", error.response.body)
            self._send(error.response, _MALFORMED)

    def _read_head(self) -> bool:
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n", self._scan_from)
        if end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                raise _BadRequestError(_head_too_large())
            self._scan_from = max(0, len(buffer) - 3)
            return False
        if end > MAX_HEAD_BYTES:
            raise _BadRequestError(_head_too_large())

        head = _parse_head(bytes(buffer[:end]))
        del buffer[: end + 4]
        self._scan_from = 0
        self._head = head

        headers = head.headers
        transfer_encoding = headers.get("transfer-encoding")
        content_length = headers.get("content-length")
        if transfer_encoding is not None:
            if content_length is not None:
                raise _bad_request("Both Content-Length and Transfer-Encoding are set")
            if transfer_encoding.lower() != "chunked":
                raise _BadRequestError(
                    json_error(
                        501,
                        "NotImplemented",
                        f"Unsupported Transfer-Encoding: {transfer_encoding}",
                    )
                )
            self._chunked = _ChunkedBody(self._max_body_bytes)
        elif content_length is not None:
            if not content_length.isdigit() or not content_length.isascii():
                raise _bad_request(f"Invalid Content-Length: {content_length}")
            self._body_length = int(content_length)
        else:
            self._body_length = 0

        expects_body = self._chunked is not None or self._body_length > 0
        if (
            expects_body
            and not buffer
            and not head.http_1_0
            and headers.get("expect", "").lower() == "100-continue"
            and self._body_length <= self._max_body_bytes
        ):
            assert self._transport is not None
            self._transport.write(_CONTINUE)
        return True

    def _read_body(self) -> bytes | Literal[False] | None:
        """Return the body, None when it is over the limit, or False when incomplete."""
        if self._chunked is not None:
            complete = self._chunked.feed(self._buffer)
            if complete is None:
                return None
            return self._chunked.body() if complete else False

        length = self._body_length
        if length > self._max_body_bytes:
            return None
        if length == 0:
            return b""
        buffer = self._buffer
        if len(buffer) < length:
            return False
        if len(buffer) == length:
            body = bytes(buffer)
            buffer.clear()
        else:
            body = bytes(buffer[:length])
            del buffer[:length]
        return body

    def _dispatch(self, head: _Head, body: bytes | None) -> None:
        if body is None:
            head.body_read = False
        request = Request(head.method, head.path, head.headers, body)
        try:
            response = self._handler.handle_request(request, self)
        except Exception:
            logger.exception("The Runtime API failed on %s %s", head.method, head.path)
            response = json_error(500, "InternalError", "The Runtime API server failed")
        if response is None:
            self._deferred = head
            if body is None:
                # The rest of the body is not wanted: stop reading it.
                self._pause()
            return
        self._send(response, head)


class HttpServer:
    """A listening socket whose connections pass every request to `handler`."""

    handler: RequestHandler
    max_body_bytes: int
    connections: set[HttpConnection]
    _server: asyncio.Server | None

    def __init__(self, handler: RequestHandler, *, max_body_bytes: int) -> None:
        self.handler = handler
        self.max_body_bytes = max_body_bytes
        self.connections = set()
        self._server = None

    async def start(self, host: str, port: int) -> int:
        """Listen on `host` and `port` (0 for a free one) and return the port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: HttpConnection(self), host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and close every connection after what was written to it."""
        if self._server is None:
            return
        self._server.close()
        for connection in list(self.connections):
            connection.close()
        await self._server.wait_closed()
        self._server = None


_date_second = 0
_date_text = ""


def _http_date() -> str:
    """Return the current time in the IMF-fixdate form of the Date header, cached per second."""
    global _date_second, _date_text
    now = int(time.time())
    if now != _date_second:
        year, month, day, hour, minute, second, weekday, _, _ = time.gmtime(now)
        _date_text = (
            f"{_WEEKDAYS[weekday]}, {day:02d} {_MONTHS[month - 1]} {year} "
            f"{hour:02d}:{minute:02d}:{second:02d} GMT"
        )
        _date_second = now
    return _date_text
