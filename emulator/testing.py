"""Small WebSocket clients for tests, built on aiohttp's client.

`WebSocketClient(url).connect()` opens a connection in an `async with`
block; the `WebSocketSession` it yields sends JSON or text and waits for
replies with a timeout. `SyncWebSocketClient` does the same with blocking
calls, running the aiohttp client on an event loop in a daemon thread.
The pytest plugin hands both out as the fixtures `arc_ws_client` and
`arc_ws_sync_client`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

import aiohttp

from emulator.background import LoopThread

# Seconds a client waits to connect, and for a message, unless a call gives another value.
DEFAULT_TIMEOUT = 10.0


class ConnectionRejected(Exception):
    """The handshake was refused: `$connect` returned another status, failed, or timed out.

    `status` is the HTTP status of the response to the upgrade request.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"WebSocket handshake rejected with status {status}: {message}")
        self.status = status


class ConnectionClosed(Exception):
    """The connection closed while a message was awaited; `code` is its close code."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"the WebSocket connection closed with code {code}")
        self.code = code


class WebSocketSession:
    """One open connection of a `WebSocketClient`."""

    def __init__(self, websocket: aiohttp.ClientWebSocketResponse[bool], timeout: float) -> None:
        self.websocket = websocket
        self._timeout = timeout

    @property
    def protocol(self) -> str | None:
        """The subprotocol the server chose, or None."""
        return self.websocket.protocol

    @property
    def close_code(self) -> int | None:
        return self.websocket.close_code

    async def send_text(self, text: str) -> None:
        await self.websocket.send_str(text)

    async def send_json(self, data: Any) -> None:
        await self.websocket.send_str(json.dumps(data))

    async def receive(self, timeout: float | None = None) -> str | bytes:
        """Return the next text or binary message.

        Raises TimeoutError when none arrives within `timeout` seconds (the
        client's default when None), and ConnectionClosed when the
        connection closes first.
        """
        limit = self._timeout if timeout is None else timeout
        try:
            message = await self.websocket.receive(timeout=limit)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no WebSocket message within {limit} s") from None
        if message.type == aiohttp.WSMsgType.TEXT:
            text: str = message.data
            return text
        if message.type == aiohttp.WSMsgType.BINARY:
            data: bytes = message.data
            return data
        raise ConnectionClosed(self.websocket.close_code)

    async def receive_text(self, timeout: float | None = None) -> str:
        """Return the next message, which must be text; see `receive` for the errors."""
        message = await self.receive(timeout)
        if not isinstance(message, str):
            raise TypeError(f"expected a text message, got {len(message)} bytes of binary")
        return message

    async def receive_json(self, timeout: float | None = None) -> Any:
        """Return the next text message parsed as JSON; see `receive` for the errors."""
        return json.loads(await self.receive_text(timeout))

    async def request(self, data: Any, timeout: float | None = None) -> Any:
        """Send `data` as JSON and return the next message parsed as JSON."""
        await self.send_json(data)
        return await self.receive_json(timeout)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.websocket.close(code=code, message=reason.encode())

    async def wait_closed(self, timeout: float | None = None) -> int | None:
        """Wait for the server to close the connection; return the close code.

        Messages that arrive first are dropped. Raises TimeoutError.
        """
        limit = self._timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            try:
                await self.receive(max(0.0, deadline - loop.time()))
            except ConnectionClosed as closed:
                return closed.code
            except TimeoutError:
                raise TimeoutError(f"the connection did not close within {limit} s") from None


class WebSocketClient:
    """Opens WebSocket connections to one emulator."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        """`url` is the emulator's WebSocket URL; `timeout` is the default wait in seconds."""
        self.url = url
        self.timeout = timeout

    @contextlib.asynccontextmanager
    async def connect(
        self,
        path: str = "/",
        *,
        query: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        protocols: Sequence[str] = (),
        timeout: float | None = None,
    ) -> AsyncIterator[WebSocketSession]:
        """Connect, yield the session, and close the connection (code 1000) at the end.

        Raises ConnectionRejected when `$connect` refuses the handshake, and
        TimeoutError when it takes longer than `timeout` seconds.
        """
        limit = self.timeout if timeout is None else timeout
        params = list(query.items()) if isinstance(query, Mapping) else query
        async with aiohttp.ClientSession() as http:
            try:
                websocket = await asyncio.wait_for(
                    http.ws_connect(
                        self.url.rstrip("/") + "/" + path.lstrip("/"),
                        params=params,
                        headers=headers,
                        protocols=protocols,
                    ),
                    limit,
                )
            except aiohttp.WSServerHandshakeError as error:
                raise ConnectionRejected(error.status, error.message) from None
            except asyncio.TimeoutError:
                raise TimeoutError(f"the WebSocket handshake took more than {limit} s") from None
            try:
                yield WebSocketSession(websocket, self.timeout)
            finally:
                await websocket.close()


class SyncWebSocketSession:
    """A `WebSocketSession` driven by blocking calls; the methods match its own."""

    def __init__(self, session: WebSocketSession, thread: LoopThread) -> None:
        self._session = session
        self._thread = thread

    @property
    def protocol(self) -> str | None:
        return self._session.protocol

    @property
    def close_code(self) -> int | None:
        return self._session.close_code

    def send_text(self, text: str) -> None:
        self._thread.call(self._session.send_text(text), None)

    def send_json(self, data: Any) -> None:
        self._thread.call(self._session.send_json(data), None)

    def receive(self, timeout: float | None = None) -> str | bytes:
        return self._thread.call(self._session.receive(timeout), None)

    def receive_text(self, timeout: float | None = None) -> str:
        return self._thread.call(self._session.receive_text(timeout), None)

    def receive_json(self, timeout: float | None = None) -> Any:
        return self._thread.call(self._session.receive_json(timeout), None)

    def request(self, data: Any, timeout: float | None = None) -> Any:
        return self._thread.call(self._session.request(data, timeout), None)

    def close(self, code: int = 1000, reason: str = "") -> None:
        self._thread.call(self._session.close(code, reason), None)

    def wait_closed(self, timeout: float | None = None) -> int | None:
        return self._thread.call(self._session.wait_closed(timeout), None)


class SyncWebSocketClient:
    """A `WebSocketClient` for code without an event loop; call `close()` when done."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._client = WebSocketClient(url, timeout=timeout)
        self._thread: LoopThread | None = None

    @property
    def url(self) -> str:
        return self._client.url

    @contextlib.contextmanager
    def connect(
        self,
        path: str = "/",
        *,
        query: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        protocols: Sequence[str] = (),
        timeout: float | None = None,
    ) -> Iterator[SyncWebSocketSession]:
        """Connect, yield the session, and close the connection; see `WebSocketClient`."""
        if self._thread is None:
            self._thread = LoopThread("arc-ws-emulator sync client")
        thread = self._thread
        manager = self._client.connect(
            path, query=query, headers=headers, protocols=protocols, timeout=timeout
        )
        session = thread.call(manager.__aenter__(), None)
        try:
            yield SyncWebSocketSession(session, thread)
        except BaseException as error:
            if not thread.call(manager.__aexit__(type(error), error, error.__traceback__), None):
                raise
        else:
            thread.call(manager.__aexit__(None, None, None), None)

    def close(self) -> None:
        """End the client's event loop thread."""
        if self._thread is not None:
            self._thread.stop()
            self._thread = None
