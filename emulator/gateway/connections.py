"""Open connections: their state, sending to them, closing them, and the registry."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from emulator.gateway.events import ConnectionInfo
from emulator.gateway.ids import new_connection_id
from emulator.gateway.websocket import GatewayWebSocket

logger = logging.getLogger(__name__)

# The maximum bytes the gateway buffers for one client that does not read.
# A send that would pass it fails (the management API then returns 429),
# so a stalled client costs at most this much gateway memory.
SEND_BUFFER_HIGH_WATER = 1024 * 1024

# Seconds a client has to reply to the gateway's close frame before the
# gateway ends the TCP connection.
CLOSE_HANDSHAKE_TIMEOUT = 2.0

# The transport pauses writers above its own high-water mark, and aiohttp's
# send then waits until the client reads. With the transport's mark above
# SEND_BUFFER_HIGH_WATER, a send that passed the check does not wait. The
# slack leaves room for control frames (pongs, close frames).
_TRANSPORT_HIGH_WATER = SEND_BUFFER_HIGH_WATER + 64 * 1024


class SendStatus(enum.Enum):
    SENT = "sent"
    GONE = "gone"
    BUFFER_FULL = "buffer full"


@dataclass(eq=False, slots=True)
class Connection:
    """One WebSocket connection that completed `$connect`.

    `close_code` and `close_reason` are set when the gateway starts the
    close (idle, too old, DELETE, shutdown, binary frame). The
    `$disconnect` event then reports them.
    """

    info: ConnectionInfo
    websocket: GatewayWebSocket
    transport: asyncio.Transport
    # time.monotonic() when the 101 response was sent.
    opened_at: float = field(default_factory=time.monotonic)
    close_code: int | None = None
    close_reason: str = ""
    # Management API posts rejected with 429 since the last one that was sent.
    rejected_posts: int = 0
    _handshake_timeout: float = CLOSE_HANDSHAKE_TIMEOUT
    _close_deadline: asyncio.TimerHandle | None = None

    def __post_init__(self) -> None:
        self.transport.set_write_buffer_limits(high=_TRANSPORT_HIGH_WATER)

    @property
    def id(self) -> str:
        return self.info.connection_id

    @property
    def closing(self) -> bool:
        """Whether a close has started (from either side) or the socket is gone."""
        return self.close_code is not None or self.websocket.closed or self.transport.is_closing()

    @property
    def last_active_at(self) -> float:
        """The epoch time in seconds of the last frame either way."""
        idle_for = time.monotonic() - self.websocket.last_frame_time
        return max(self.info.connected_at / 1000, time.time() - idle_for)

    async def send(self, data: str | bytes) -> SendStatus:
        """Send one text frame (for `str`) or binary frame (for `bytes`).

        Fails with BUFFER_FULL instead of waiting when the client has left
        more than SEND_BUFFER_HIGH_WATER bytes unread.
        """
        if self.closing:
            return SendStatus.GONE
        size = len(data)
        if self.transport.get_write_buffer_size() + size > SEND_BUFFER_HIGH_WATER:
            return SendStatus.BUFFER_FULL

        try:
            if isinstance(data, str):
                await self.websocket.send_str(data)
            else:
                await self.websocket.send_bytes(data)
        except ConnectionError:
            return SendStatus.GONE
        self.websocket.last_frame_time = time.monotonic()
        return SendStatus.SENT

    def start_close(
        self, code: int, reason: str, *, handshake_timeout: float = CLOSE_HANDSHAKE_TIMEOUT
    ) -> None:
        """Start closing with `code`; does nothing if a close has started.

        The task that reads the connection sends the close frame when it
        reads the request, then waits up to `handshake_timeout` seconds for
        the client's close frame. If the connection is still open a second
        after that (a reading task stuck behind a full send buffer), the TCP
        connection is dropped.
        """
        if self.closing:
            return
        self.close_code = code
        self.close_reason = reason
        self._handshake_timeout = handshake_timeout
        self.websocket.request_close()
        loop = asyncio.get_running_loop()
        self._close_deadline = loop.call_later(handshake_timeout + 1.0, self._drop_if_open)

    async def complete_close(self) -> None:
        """Send the requested close frame and wait for the client's close frame."""
        code = self.close_code if self.close_code is not None else 1000
        try:
            await asyncio.wait_for(
                self.websocket.close(code=code, message=self.close_reason.encode()),
                timeout=self._handshake_timeout,
            )
        except asyncio.TimeoutError:
            logger.debug("connection %s did not reply to the close frame in time", self.id)
            self.transport.abort()
        except ConnectionError as error:
            logger.debug("closing connection %s failed: %s", self.id, error)

    def release(self) -> None:
        """Cancel the close deadline, once the connection has ended."""
        if self._close_deadline is not None:
            self._close_deadline.cancel()
            self._close_deadline = None

    def _drop_if_open(self) -> None:
        self._close_deadline = None
        if not self.transport.is_closing():
            # Logged at DEBUG: at shutdown this can happen to thousands of
            # connections at once, and stop() reports the count.
            logger.debug("connection %s did not finish closing in time; dropping it", self.id)
            self.transport.abort()


class ConnectionRegistry:
    """The open connections by id, and the ids of handshakes still in `$connect`."""

    def __init__(self) -> None:
        self._connections: dict[str, Connection] = {}
        self._pending: set[str] = set()

    def __len__(self) -> int:
        return len(self._connections)

    def __contains__(self, connection_id: object) -> bool:
        return connection_id in self._connections

    def __iter__(self) -> Iterator[Connection]:
        """Iterate over a snapshot, so connections may come and go meanwhile."""
        return iter(list(self._connections.values()))

    def get(self, connection_id: str) -> Connection | None:
        return self._connections.get(connection_id)

    def is_pending(self, connection_id: str) -> bool:
        return connection_id in self._pending

    def reserve_id(self) -> str:
        """Return a new connection id, unused by open and pending connections."""
        while True:
            connection_id = new_connection_id()
            if connection_id not in self._connections and connection_id not in self._pending:
                self._pending.add(connection_id)
                return connection_id

    def release_id(self, connection_id: str) -> None:
        """Forget a reserved id whose handshake failed."""
        self._pending.discard(connection_id)

    def add(self, connection: Connection) -> None:
        self._pending.discard(connection.id)
        self._connections[connection.id] = connection

    def remove(self, connection: Connection) -> None:
        self._connections.pop(connection.id, None)
