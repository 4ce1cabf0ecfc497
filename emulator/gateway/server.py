"""The gateway: listening ports, the WebSocket handshake, message flow and shutdown.

One aiohttp application serves the main port (WebSocket upgrades on any
path, the management API, the health check) and another the internal port
(the management API under `/_arc/ws`, where Architect's runtime libraries
send it). Functions run behind an `Invoker`; the gateway only builds
events and acts on the results.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from aiohttp import WebSocketError, WSMsgType, hdrs, web

from emulator.config import BUILTIN_ROUTES, AppConfig, Options
from emulator.gateway.connections import (
    CLOSE_HANDSHAKE_TIMEOUT,
    Connection,
    ConnectionRegistry,
    SendStatus,
)
from emulator.gateway.events import (
    NO_STATUS_REASON,
    ApiInfo,
    ConnectionInfo,
    WebSocketEvent,
    connect_event,
    disconnect_event,
    encode_event,
    epoch_ms,
    message_event,
)
from emulator.gateway.ids import new_api_id
from emulator.gateway.integration import (
    INVOKER_FAILURE,
    Reject,
    decide_connect,
    describe_failure,
    lambda_request,
    route_response_body,
)
from emulator.gateway.listeners import bind_listeners, is_loopback_host
from emulator.gateway.management import ManagementApi
from emulator.gateway.routing import select_route
from emulator.gateway.websocket import CLOSE_REQUESTED, FrameTooLargeError, GatewayWebSocket
from emulator.invocation import InvocationResult, Invoker

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# Close code and reason for connections the gateway ends: idle, too old, or
# shutting down. NOTE: API Gateway's code for idle and maximum-duration
# closes is unverified.
GOING_AWAY = (1001, "Going away")
BINARY_NOT_SUPPORTED = (1003, "Binary frames are not supported")

# Seconds aiohttp waits for request handlers still running after the
# shutdown deadline, before it cancels them.
_RUNNER_SHUTDOWN_TIMEOUT = 0.5

# Reasons reported in `$disconnect` for closes caused by a protocol error
# the client made, by RFC 6455 close code.
_ERROR_CLOSE_REASONS = {
    1002: "Protocol error",
    1007: "Invalid frame payload data",
    1009: "Message too big",
}


def _route_key(route: str) -> str:
    return f"${route}" if route in BUILTIN_ROUTES else route


def _url_host(host: str) -> str:
    """Return `host` as a URL writes it: IPv6 addresses in brackets."""
    return f"[{host}]" if ":" in host else host


def _is_websocket_upgrade(request: web.Request) -> bool:
    return request.headers.get(hdrs.UPGRADE, "").strip().lower() == "websocket"


def _offered_subprotocols(request: web.Request) -> tuple[str, ...]:
    offered = request.headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL, "")
    return tuple(name.strip() for name in offered.split(",") if name.strip())


class Gateway:
    """The API Gateway of one app: connections, routes and the management API."""

    def __init__(
        self,
        app: AppConfig,
        options: Options,
        invoker: Invoker,
        *,
        health_extra: Callable[[], dict[str, object]] | None = None,
        ipv6_loopback: bool = True,
    ) -> None:
        """Set up the gateway; `start()` binds the ports.

        `health_extra` adds fields to the health check's JSON. `ipv6_loopback`
        allows listening on `::1` beside the default host `127.0.0.1`.
        """
        self._app = app
        self._options = options
        self._invoker = invoker
        self._health_extra = health_extra
        self._ipv6_loopback = ipv6_loopback

        self._api = ApiInfo(api_id=new_api_id(), stage=options.stage)
        self._custom_routes = app.custom_routes
        self._registry = ConnectionRegistry()
        self._management = ManagementApi(self._registry, options)

        self._runners: list[web.AppRunner] = []
        self._sites: list[web.SockSite] = []
        self._port: int | None = None
        self._internal_port: int | None = None
        # One future per upgrade request being served, done when its
        # connection has closed and its `$disconnect` has run.
        self._sessions: set[asyncio.Future[None]] = set()
        # Message handlers and other background work, kept to cancel at stop.
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._started = False
        self._stopping = False

    # Properties

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the gateway has not started")
        return self._port

    @property
    def internal_port(self) -> int:
        if self._internal_port is None:
            raise RuntimeError("the gateway has not started")
        return self._internal_port

    @property
    def connection_count(self) -> int:
        return len(self._registry)

    @property
    def management_url(self) -> str:
        """The management API's endpoint URL, for `AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI`."""
        host = self._options.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        return f"http://{_url_host(host)}:{self.port}"

    def update_app(self, app: AppConfig) -> None:
        """Switch to a reloaded app's routes; open connections stay open."""
        self._app = app
        self._custom_routes = app.custom_routes
        logger.info(
            "routes updated: %s", ", ".join(sorted(self._custom_routes)) or "(no custom routes)"
        )

    # Lifecycle

    async def start(self) -> None:
        """Listen on the main and internal ports; raise EmulatorError if one is in use."""
        if self._started:
            raise RuntimeError("the gateway has already started")
        self._started = True
        self._log_startup_notes()

        try:
            self._port = await self._listen(
                self._main_application(), self._options.port, "--port (or ARC_HTTP_PORT, PORT)"
            )
            self._internal_port = await self._listen(
                self._internal_application(),
                self._options.internal_port,
                "--internal-port (or ARC_INTERNAL_PORT)",
            )
        except BaseException:
            await self._cleanup_runners()
            raise

        self._sweeper = asyncio.create_task(self._sweep_connections())
        logger.info(
            "gateway of app %s listening on ws://%s:%d (internal port %d, stage %s)",
            self._app.name,
            _url_host(self._options.host),
            self._port,
            self._internal_port,
            self._options.stage,
        )

    async def stop(self) -> None:
        """Close every connection with 1001, run their `$disconnect`, stop listening."""
        if not self._started or self._stopping:
            return
        self._stopping = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._options.shutdown_timeout
        logger.info("stopping the gateway: closing %d connections", len(self._registry))

        # New upgrades get 503 from now on, but the listeners stay open:
        # `$disconnect` handlers still call the management API.

        # Ask every connection to close. Close handshakes get half of the
        # time, so `$disconnect` handlers get at least the other half.
        handshake_timeout = min(CLOSE_HANDSHAKE_TIMEOUT, self._options.shutdown_timeout / 2)
        for connection in self._registry:
            connection.start_close(*GOING_AWAY, handshake_timeout=handshake_timeout)

        # Wait for the closes and their `$disconnect` invocations, with a deadline.
        if self._sessions:
            _, pending = await asyncio.wait(
                set(self._sessions), timeout=max(0.0, deadline - loop.time())
            )
            if pending:
                logger.warning(
                    "%d connections did not finish closing and $disconnect within %g s",
                    len(pending),
                    self._options.shutdown_timeout,
                )

        # Stop the background work, then the servers.
        for site in self._sites:
            await site.stop()
        self._sites.clear()
        background = [*self._tasks, *([self._sweeper] if self._sweeper else [])]
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await self._cleanup_runners()
        logger.info("gateway stopped")

    def _log_startup_notes(self) -> None:
        if self._app.other_pragmas:
            pragmas = ", ".join(f"@{name}" for name in self._app.other_pragmas)
            logger.info("%s: parsed but not emulated (only @ws is)", pragmas)
        if not is_loopback_host(self._options.host):
            logger.warning(
                "listening on %s: the emulator is reachable from the network",
                self._options.host,
            )
            if self._options.allow_remote_management:
                logger.warning(
                    "remote management is allowed: any client that reaches %s can post to "
                    "and close every connection through the management API",
                    self._options.host,
                )

    def _main_application(self) -> web.Application:
        application = web.Application()
        router = application.router
        router.add_get("/_emulator/health", self._handle_health)
        router.add_route("*", "/@connections/{connection_id}", self._management.handle)
        router.add_route(
            "*", "/{stage}/@connections/{connection_id}", self._management.handle_staged
        )
        router.add_route("*", "/{path:.*}", self._handle_upgrade)
        return application

    def _internal_application(self) -> web.Application:
        application = web.Application()
        application.router.add_route(
            "*", "/_arc/ws/@connections/{connection_id}", self._management.handle
        )
        return application

    async def _listen(self, application: web.Application, port: int, option: str) -> int:
        """Serve `application` on `port` of the configured host; return the bound port."""
        sockets = bind_listeners(
            self._options.host, port, option, ipv6_loopback=self._ipv6_loopback
        )
        runner = web.AppRunner(
            application, access_log=None, shutdown_timeout=_RUNNER_SHUTDOWN_TIMEOUT
        )
        self._runners.append(runner)
        await runner.setup()
        bound_port: int = sockets[0].getsockname()[1]
        for sock in sockets:
            site = web.SockSite(runner, sock, backlog=1024)
            await site.start()
            self._sites.append(site)
        return bound_port

    async def _cleanup_runners(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        self._sites.clear()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Health check

    async def _handle_health(self, request: web.Request) -> web.Response:
        body: dict[str, object] = {
            "status": "ok",
            "app": self._app.name,
            "connections": len(self._registry),
        }
        if self._health_extra is not None:
            body.update(self._health_extra())
        return web.json_response(body)

    # Connections

    async def _handle_upgrade(self, request: web.Request) -> web.StreamResponse:
        if not _is_websocket_upgrade(request):
            return web.json_response(
                {"message": "This port accepts WebSocket connections; send an upgrade request."},
                status=426,
                headers={hdrs.UPGRADE: "websocket"},
            )
        if self._stopping:
            return web.json_response({"message": "The emulator is stopping."}, status=503)

        session = asyncio.get_running_loop().create_future()
        self._sessions.add(session)
        try:
            return await self._serve_connection(request)
        finally:
            session.set_result(None)
            self._sessions.discard(session)

    async def _serve_connection(self, request: web.Request) -> web.StreamResponse:
        """Run `$connect`, then the connection's messages, then `$disconnect`."""
        connection_id = self._registry.reserve_id()
        try:
            info = ConnectionInfo(
                connection_id=connection_id,
                connected_at=epoch_ms(),
                source_ip=request.remote or "",
                # NOTE: null when the client sent no User-Agent is a guess at AWS's value.
                user_agent=request.headers.get(hdrs.USER_AGENT),
                domain_name=request.host,
            )
            query = list(request.rel_url.query.items()) if request.rel_url.query_string else None
            event = connect_event(self._api, info, request.headers.items(), query)
            result = await self._invoke("connect", event)
        except BaseException:
            self._registry.release_id(connection_id)
            raise

        decision = decide_connect(result, self._options.integration_timeout)
        if isinstance(decision, Reject):
            self._registry.release_id(connection_id)
            return self._reject(connection_id, decision)

        offered = _offered_subprotocols(request)
        self._check_subprotocol(connection_id, offered, decision.subprotocol)
        websocket = GatewayWebSocket(
            subprotocol=decision.subprotocol,
            offered_subprotocols=offered,
            max_message_bytes=self._options.max_message_bytes,
            max_frame_bytes=self._options.max_frame_bytes,
            close_timeout=CLOSE_HANDSHAKE_TIMEOUT,
        )
        websocket.headers.extend(decision.headers)

        transport = request.transport
        try:
            if transport is None:
                raise ConnectionResetError("the client closed the connection")
            await websocket.prepare(request)
        except ConnectionError:
            # `$connect` succeeded, so the function may have stored the id:
            # it gets its `$disconnect` as for any other dropped connection.
            # NOTE: whether API Gateway sends `$disconnect` here is unverified.
            self._registry.release_id(connection_id)
            logger.info("client of connection %s left while $connect ran", connection_id)
            await self._run_disconnect(info, 1006, "")
            response = web.Response(status=400)
            response.force_close()
            return response

        connection = Connection(info, websocket, transport)
        self._registry.add(connection)
        logger.info(
            "connection %s opened from %s (%d open)",
            connection_id,
            info.source_ip,
            len(self._registry),
        )
        if self._stopping:
            connection.start_close(
                *GOING_AWAY,
                handshake_timeout=min(CLOSE_HANDSHAKE_TIMEOUT, self._options.shutdown_timeout / 2),
            )

        try:
            code, reason = await self._receive_messages(connection)
        finally:
            self._registry.remove(connection)
            connection.release()
        logger.info("connection %s closed: %d %s", connection_id, code, reason or "(no reason)")

        await self._run_disconnect(info, code, reason)
        return websocket

    def _reject(self, connection_id: str, decision: Reject) -> web.Response:
        if decision.problem is not None:
            logger.error(
                "rejected connection %s with %d: %s",
                connection_id,
                decision.status,
                decision.problem,
            )
        else:
            logger.info("$connect rejected connection %s with %d", connection_id, decision.status)
        response = web.Response(status=decision.status, body=decision.body)
        response.headers.extend(decision.headers)
        response.force_close()
        return response

    def _check_subprotocol(
        self, connection_id: str, offered: tuple[str, ...], chosen: str | None
    ) -> None:
        """Warn about subprotocol choices that browsers refuse, as API Gateway lets them pass."""
        if offered and chosen is None:
            logger.warning(
                "connection %s: the client offered subprotocols %s but $connect returned no "
                "Sec-WebSocket-Protocol header, so none is chosen; browsers then fail the "
                "connection",
                connection_id,
                ", ".join(offered),
            )
        elif chosen is not None and chosen not in offered:
            logger.warning(
                "connection %s: $connect chose subprotocol %r, which the client did not offer",
                connection_id,
                chosen,
            )

    async def _receive_messages(self, connection: Connection) -> tuple[int, str]:
        """Handle frames until the connection closes; return `$disconnect`'s code and reason."""
        websocket = connection.websocket
        while True:
            message = await websocket.receive()
            if message.type is WSMsgType.TEXT:
                # One task per message: API Gateway handles the messages of
                # one connection concurrently, not one after another.
                self._spawn(self._handle_message(connection, message.data))
            elif message.type is WSMsgType.BINARY:
                logger.warning(
                    "connection %s sent a binary frame, which API Gateway does not "
                    "support; closing it with 1003",
                    connection.id,
                )
                connection.start_close(*BINARY_NOT_SUPPORTED)
            elif message.type is WSMsgType.ERROR and message.data is CLOSE_REQUESTED:
                await connection.complete_close()
                break
            else:
                break

        if connection.close_code is not None:
            return connection.close_code, connection.close_reason
        if message.type is WSMsgType.CLOSE:
            if not message.data:
                return 1005, NO_STATUS_REASON
            return int(message.data), message.extra or ""
        if message.type is WSMsgType.ERROR and isinstance(message.data, WebSocketError):
            return self._protocol_error_status(connection, message.data)
        # The TCP connection ended without a close frame.
        return 1006, ""

    def _protocol_error_status(
        self, connection: Connection, error: WebSocketError
    ) -> tuple[int, str]:
        if isinstance(error, FrameTooLargeError):
            detail = str(error)
        elif error.code == 1009:
            detail = f"a message exceeds the limit of {self._options.max_message_bytes} bytes"
        else:
            detail = str(error)
        logger.warning("closed connection %s with %d: %s", connection.id, error.code, detail)
        return error.code, _ERROR_CLOSE_REASONS.get(error.code, detail)

    # Invocations

    async def _invoke(self, route: str, event: WebSocketEvent) -> InvocationResult | None:
        """Invoke the function of `route`; return None if the integration timeout passed."""
        try:
            return await _with_timeout(
                self._invoker.invoke(route, encode_event(event)), self._options.integration_timeout
            )
        except asyncio.TimeoutError:
            return None
        except Exception as error:
            # A failure of the invoker, not of the function. The client gets
            # the usual failure response instead of a broken connection.
            logger.exception("invoking route %s failed", route)
            return InvocationResult(
                request_id="", error_type=INVOKER_FAILURE, error_message=str(error)
            )

    async def _handle_message(self, connection: Connection, body: str) -> None:
        route = select_route(body, self._custom_routes)
        event = message_event(self._api, connection.info, _route_key(route), body)
        request_id = event["requestContext"]["requestId"]
        result = await self._invoke(route, event)

        if result is None or not result.ok:
            if result is None:
                failure = (
                    "did not answer within the integration timeout of "
                    f"{self._options.integration_timeout:g} s"
                )
            else:
                failure = describe_failure(result)
            logger.error(
                "route %s of connection %s (request %s%s) %s",
                _route_key(route),
                connection.id,
                request_id,
                lambda_request(result) if result is not None else "",
                failure,
            )
            error_frame = {
                "message": "Internal server error",
                "connectionId": connection.id,
                "requestId": request_id,
            }
            await self._send_to_client(connection, json.dumps(error_frame), "error frame")
            return

        if self._options.route_responses:
            text = route_response_body(result)
            if text is not None:
                await self._send_to_client(connection, text, "route response")

    async def _send_to_client(self, connection: Connection, text: str, frame_name: str) -> None:
        status = await connection.send(text)
        if status is SendStatus.BUFFER_FULL:
            logger.warning(
                "dropped the %s for connection %s: the client is not reading",
                frame_name,
                connection.id,
            )
        elif status is SendStatus.GONE:
            logger.debug(
                "dropped the %s for connection %s: it is closed", frame_name, connection.id
            )

    async def _run_disconnect(self, info: ConnectionInfo, code: int, reason: str) -> None:
        """Invoke `$disconnect`; its result and failures only reach the log."""
        event = disconnect_event(self._api, info, code, reason)
        result = await self._invoke("disconnect", event)
        if result is None:
            logger.error(
                "$disconnect of connection %s did not answer within the integration "
                "timeout of %g s",
                info.connection_id,
                self._options.integration_timeout,
            )
        elif not result.ok:
            logger.error(
                "$disconnect of connection %s (after close%s) %s",
                info.connection_id,
                lambda_request(result),
                describe_failure(result),
            )

    # Idle and maximum duration

    async def _sweep_connections(self) -> None:
        """Close connections idle or open for too long, checking all of them periodically.

        One periodic pass costs far less than a timer per connection, and
        closes happen at most one interval late.
        """
        shortest = min(self._options.idle_timeout, self._options.max_connection_duration)
        interval = min(1.0, max(0.05, shortest / 10))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for connection in self._registry:
                if connection.closing:
                    continue
                if now - connection.opened_at >= self._options.max_connection_duration:
                    logger.info(
                        "closing connection %s: open for the maximum of %g s",
                        connection.id,
                        self._options.max_connection_duration,
                    )
                    connection.start_close(*GOING_AWAY)
                elif now - connection.websocket.last_frame_time >= self._options.idle_timeout:
                    logger.info(
                        "closing connection %s: idle for %g s",
                        connection.id,
                        self._options.idle_timeout,
                    )
                    connection.start_close(*GOING_AWAY)


async def _with_timeout(awaitable: Awaitable[_T], timeout: float) -> _T:
    """Await with a timeout; raise asyncio.TimeoutError when it passes.

    `asyncio.timeout()` runs the awaitable in the calling task, where
    `wait_for()` before Python 3.12 wraps it in a task of its own: a cost
    paid on every message.
    """
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(timeout):
            return await awaitable
    return await asyncio.wait_for(awaitable, timeout)
