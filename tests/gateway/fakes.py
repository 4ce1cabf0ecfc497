"""An in-process stand-in for the invoker, and a small app to serve.

`FakeInvoker` replaces the worker processes at the `Invoker` boundary. It
runs a Python callable per route and records every event, so tests can
drive the gateway with real clients and check what the functions would
have received.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from emulator.config import AppConfig, FunctionConfig
from emulator.invocation import InvocationResult

Event = dict[str, Any]
Handler = Callable[[Event], "Awaitable[object] | object"]

CUSTOM_ROUTES = ("echo", "rooms/join", "7", "true")


class InvocationFailure(Exception):
    """Raise from a handler to make the invocation fail with this Lambda error type."""

    def __init__(self, error_type: str, message: str = "") -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


async def hang(event: Event) -> object:
    """A handler that never returns, to pass the integration timeout."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


class FakeInvoker:
    """Run a Python callable per route, record events, and report results like Lambda.

    A handler's return value becomes the JSON payload. `InvocationFailure`
    becomes a Lambda failure of that type; any other exception becomes an
    error the handler raised (error type = the exception's class name).
    """

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        self.events: list[tuple[str, Event]] = []
        # The encoded events, exactly as the gateway passed them.
        self.raw_events: list[tuple[str, bytes]] = []
        self._queues: defaultdict[str, asyncio.Queue[Event]] = defaultdict(asyncio.Queue)
        self._finished: defaultdict[str, asyncio.Queue[Event]] = defaultdict(asyncio.Queue)
        self._count = 0

    def on(self, route: str, handler: Handler) -> None:
        self.handlers[route] = handler

    def events_of(self, route: str) -> list[Event]:
        return [event for name, event in self.events if name == route]

    async def next_event(self, route: str, timeout: float = 5.0) -> Event:
        """Wait for the next event of `route` not yet taken by this method."""
        return await asyncio.wait_for(self._queues[route].get(), timeout)

    async def next_finished(self, route: str, timeout: float = 5.0) -> Event:
        """Wait until an invocation of `route` has returned its result to the gateway."""
        return await asyncio.wait_for(self._finished[route].get(), timeout)

    async def invoke(self, route: str, event: bytes) -> InvocationResult:
        decoded: Event = json.loads(event)
        try:
            return await self._run(route, event, decoded)
        finally:
            self._finished[route].put_nowait(decoded)

    async def _run(self, route: str, event: bytes, decoded: Event) -> InvocationResult:
        self._count += 1
        request_id = f"lambda-request-{self._count}"
        self.raw_events.append((route, event))
        self.events.append((route, decoded))
        self._queues[route].put_nowait(decoded)

        handler = self.handlers.get(route, _default_handler)
        try:
            value = handler(decoded)
            if inspect.isawaitable(value):
                value = await value
        except InvocationFailure as failure:
            return InvocationResult(
                request_id, error_type=failure.error_type, error_message=failure.message
            )
        except Exception as error:
            return InvocationResult(
                request_id, error_type=type(error).__name__, error_message=str(error)
            )
        return InvocationResult(request_id, payload=json.dumps(value).encode())


def _default_handler(event: Event) -> object:
    return {"statusCode": 200}


def make_app(
    custom_routes: tuple[str, ...] = CUSTOM_ROUTES, other_pragmas: tuple[str, ...] = ()
) -> AppConfig:
    def function(name: str) -> FunctionConfig:
        builtin = name in ("connect", "default", "disconnect")
        return FunctionConfig(
            name=name,
            route_key=f"${name}" if builtin else name,
            src=Path("/nonexistent/src/ws") / name,
            runtime="python3.12",
            handler="lambda.handler",
            handler_file=None,
            handler_method="handler",
            timeout=5,
            memory=1152,
            concurrency=None,
            region="us-west-2",
        )

    names = ("connect", "default", "disconnect", *custom_routes)
    return AppConfig(
        name="gateway-test",
        root=Path("/nonexistent"),
        manifest=Path("/nonexistent/app.arc"),
        functions=tuple(function(name) for name in names),
        other_pragmas=other_pragmas,
    )
