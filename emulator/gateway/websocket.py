"""aiohttp's server WebSocket, adjusted to API Gateway's handshake and limits.

aiohttp limits whole messages (`max_msg_size`) but has no limit on single
frames, and API Gateway has both. `FrameSizeGuard` adds the frame limit.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast

from aiohttp import WebSocketError, WSCloseCode, WSMessage, WSMsgType, hdrs, web
from multidict import CIMultiDict

if TYPE_CHECKING:
    from aiohttp.http import WebSocketWriter
    from aiohttp.web_request import BaseRequest


class _CloseRequested:
    def __repr__(self) -> str:
        return "CLOSE_REQUESTED"


# The data of the ERROR message that `GatewayWebSocket.request_close` queues.
CLOSE_REQUESTED = _CloseRequested()

# Opcodes of data frames (RFC 6455 section 5.2): continuation, text, binary.
_DATA_OPCODES = frozenset({0x0, 0x1, 0x2})


def _header_size(header: bytes) -> int:
    """Return the full size of a frame header from its first bytes (at least 2 needed)."""
    if len(header) < 2:
        return 2
    length_flag = header[1] & 0x7F
    extended = 2 if length_flag == 126 else 8 if length_flag == 127 else 0
    mask = 4 if header[1] & 0x80 else 0
    return 2 + extended + mask


def _payload_length(header: bytes) -> int:
    length_flag = header[1] & 0x7F
    if length_flag == 126:
        return int.from_bytes(header[2:4], "big")
    if length_flag == 127:
        return int.from_bytes(header[2:10], "big")
    return length_flag


class FrameTooLargeError(WebSocketError):
    """A data frame over the frame limit (close code 1009)."""


class FrameSizeGuard:
    """Check each incoming frame's declared length before aiohttp's reader gets it.

    aiohttp's `WebSocketReader` is a compiled class whose parsing loop a
    Python subclass cannot extend, so the guard wraps it. aiohttp's
    connection protocol feeds bytes to the guard. The guard reads only the
    frame headers, skips each payload by its length, and passes every byte
    on unchanged, so its cost grows with the number of frames, not bytes.

    When a data frame declares more than `max_frame_bytes`, the guard stops
    passing bytes, so the oversized payload is never buffered. It then
    fails the message queue with a 1009 error, and
    `WebSocketResponse.receive()` turns that into a close frame with code
    1009, as it does for aiohttp's own message limit.

    The guard also stamps `websocket.last_frame_time` for every frame, ping
    and pong frames included, so the idle timeout counts the frames that
    aiohttp handles on its own.
    """

    __slots__ = ("_failed", "_header", "_max_frame_bytes", "_payload_left", "_reader", "_websocket")

    def __init__(self, reader: Any, websocket: GatewayWebSocket, max_frame_bytes: int) -> None:
        self._reader = reader
        self._websocket = websocket
        self._max_frame_bytes = max_frame_bytes
        # The start of a frame header that a read cut in half.
        self._header = b""
        self._payload_left = 0
        self._failed = False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        """Pass `data` to the reader; return aiohttp's `(eof, tail)` pair."""
        if self._failed:
            return True, b""

        oversized = self._find_oversized_frame(data)
        if oversized is None:
            result: tuple[bool, bytes] = self._reader.feed_data(data)
            return result

        offset, length = oversized
        self._failed = True
        if offset > 0:
            eof, _ = self._reader.feed_data(data[:offset])
            if eof:
                # The reader failed on an earlier frame and reported it itself.
                return True, b""
        self._websocket.fail_reader(
            FrameTooLargeError(
                WSCloseCode.MESSAGE_TOO_BIG,
                f"frame of {length} bytes exceeds the frame limit of {self._max_frame_bytes} bytes",
            )
        )
        return True, b""

    def feed_eof(self) -> None:
        self._reader.feed_eof()

    def _find_oversized_frame(self, data: bytes) -> tuple[int, int] | None:
        """Scan `data`; return (offset of its header in `data`, length) of an oversized frame."""
        position = 0
        end = len(data)
        while position < end:
            if self._payload_left:
                step = min(self._payload_left, end - position)
                self._payload_left -= step
                position += step
                continue

            header_offset = position
            missing = _header_size(self._header) - len(self._header)
            while missing:
                if position == end:
                    return None
                chunk = data[position : position + missing]
                self._header += chunk
                position += len(chunk)
                missing = _header_size(self._header) - len(self._header)

            opcode = self._header[0] & 0x0F
            length = _payload_length(self._header)
            self._header = b""
            self._websocket.last_frame_time = time.monotonic()
            if opcode in _DATA_OPCODES and length > self._max_frame_bytes:
                return header_offset, length
            self._payload_left = length
        return None


class GatewayWebSocket(web.WebSocketResponse):
    """The server side of one client connection.

    Differences from aiohttp's `WebSocketResponse`:

    - The subprotocol in the 101 response is the one the `$connect` handler
      returned (or none), as on API Gateway, whatever the client offered.
    - Frames over `max_frame_bytes` close the connection with 1009.
    - No permessage-deflate, so both size limits apply to the bytes on the
      wire. NOTE: that API Gateway never negotiates compression is unverified.
    - `last_frame_time` is the `time.monotonic()` of the last frame received
      or sent by the gateway.
    """

    last_frame_time: float

    def __init__(
        self,
        *,
        subprotocol: str | None,
        offered_subprotocols: tuple[str, ...],
        max_message_bytes: int,
        max_frame_bytes: int,
        close_timeout: float,
    ) -> None:
        # aiohttp rejects a message whose size reaches `max_msg_size`, and
        # API Gateway only one over its limit, hence the + 1. Offering the
        # client's own subprotocols keeps aiohttp from logging a mismatch;
        # `_handshake` replaces its choice with `subprotocol`.
        super().__init__(
            timeout=close_timeout,
            autoclose=True,
            autoping=True,
            compress=False,
            max_msg_size=max_message_bytes + 1,
            protocols=offered_subprotocols,
        )
        self._subprotocol = subprotocol
        self._max_frame_bytes = max_frame_bytes
        self.last_frame_time = time.monotonic()

    def request_close(self) -> None:
        """Make `receive()` return CLOSE_REQUESTED, so the reading task closes the connection.

        The close must run in the task that reads: aiohttp's `close()`, called
        while another task waits in `receive()`, closes the TCP connection
        without waiting for the client's close frame, and the client's late
        reply then meets a reset.
        """
        if self._reader is not None:
            self._reader.feed_data(WSMessage(WSMsgType.ERROR, CLOSE_REQUESTED, None), 0)

    def fail_reader(self, error: WebSocketError) -> None:
        """End reading with `error`, which makes `receive()` send a close frame."""
        if self._reader is not None:
            self._reader.set_exception(error)

    def _handshake(self, request: BaseRequest) -> tuple[CIMultiDict[str], str | None, int, bool]:
        headers, _, compress, notakeover = super()._handshake(request)
        headers.popall(hdrs.SEC_WEBSOCKET_PROTOCOL, None)
        if self._subprotocol:
            headers[hdrs.SEC_WEBSOCKET_PROTOCOL] = self._subprotocol
        return headers, self._subprotocol, compress, notakeover

    def _post_start(
        self, request: BaseRequest, protocol: str | None, writer: WebSocketWriter
    ) -> None:
        handler = request.protocol
        # Bytes that arrived after the upgrade request and before the 101
        # response. aiohttp hands them to its reader as soon as the reader
        # exists, so they are taken here to pass through the guard too.
        early_bytes = handler._message_tail
        handler._message_tail = b""

        super()._post_start(request, protocol, writer)

        guard = FrameSizeGuard(handler._payload_parser, self, self._max_frame_bytes)
        handler._payload_parser = cast(Any, guard)
        if early_bytes:
            eof, _ = guard.feed_data(early_bytes)
            if eof:
                handler.close()
