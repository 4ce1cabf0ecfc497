"""One-off invocations: `python -m emulator invoke ROUTE`.

The emulator starts on free loopback ports without watching files, the
route's function runs once on an event shaped as API Gateway would send
it, and the emulator stops. The function's log lines (START, its output,
END, REPORT) reach the log as during `start`.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from emulator import __version__
from emulator.app import Emulator
from emulator.config import AppConfig, Options
from emulator.errors import ConfigError
from emulator.gateway.events import (
    ApiInfo,
    ConnectionInfo,
    connect_event,
    disconnect_event,
    encode_event,
    epoch_ms,
    message_event,
)
from emulator.gateway.ids import new_api_id, new_connection_id
from emulator.invocation import InvocationResult

# The close code and reason of a `$disconnect` event: a client that closed
# normally (1000) without giving a reason.
DISCONNECT_CODE = 1000
DISCONNECT_REASON = ""

USER_AGENT = f"arc-ws-emulator-invoke/{__version__}"


def find_route(app: AppConfig, route: str) -> str:
    """Return the route name (without `$`) that `route` names; raise ConfigError if none.

    `route` may be a name (`connect`, `send`) or a route key (`$connect`).
    """
    name = route.removeprefix("$")
    try:
        return app.function(name).name
    except KeyError:
        keys = ", ".join(function.route_key for function in app.functions)
        raise ConfigError(
            f"route {route} not found in app {app.name}",
            hint=f"The routes are: {keys}.",
        ) from None


def default_body(route: str) -> str:
    """Return a message body that API Gateway would route to `route`."""
    if route == "default":
        return "{}"
    return json.dumps({"action": route})


def check_body(app: AppConfig, route: str, body: str | None) -> None:
    """Raise ConfigError when `body` is given for `$connect` or `$disconnect`, which have none."""
    if body is not None and route in ("connect", "disconnect"):
        raise ConfigError(
            f"--body applies to message routes, not to {app.function(route).route_key}",
            hint="Leave out --body, or give a whole event with --event FILE.",
        )


def build_event(
    app: AppConfig, route: str, *, body: str | None, domain_name: str, stage: str
) -> bytes:
    """Build the event that API Gateway sends to the function of `route`.

    `$connect` gets the headers of a WebSocket upgrade request from a
    client at 127.0.0.1, `$disconnect` a normal close (1000), and a
    message route `body` (by default one that selects the route). Raises
    ConfigError when `body` is given for `$connect` or `$disconnect`.
    """
    function = app.function(route)
    check_body(app, route, body)
    api = ApiInfo(api_id=new_api_id(), stage=stage)
    connection = ConnectionInfo(
        connection_id=new_connection_id(),
        connected_at=epoch_ms(),
        source_ip="127.0.0.1",
        user_agent=USER_AGENT,
        domain_name=domain_name,
    )
    if route == "connect":
        event = connect_event(api, connection, upgrade_headers(domain_name), None)
    elif route == "disconnect":
        event = disconnect_event(api, connection, DISCONNECT_CODE, DISCONNECT_REASON)
    else:
        text = body if body is not None else default_body(route)
        event = message_event(api, connection, function.route_key, text)
    return encode_event(event)


def upgrade_headers(host: str) -> list[tuple[str, str]]:
    """Return the headers of a WebSocket upgrade request (RFC 6455) to `host`."""
    key = base64.b64encode(os.urandom(16)).decode()
    return [
        ("Host", host),
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
        ("User-Agent", USER_AGENT),
    ]


def read_event_file(path: str) -> bytes:
    """Read an event from a JSON file, or from standard input for `-`.

    Raises ConfigError when the file cannot be read or contains no JSON object.
    """
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"failed to read the event file {path}: {error}") from error
    try:
        event = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"invalid JSON in the event file {path}: {error}",
            hint="Give the whole event as a JSON object.",
        ) from error
    if not isinstance(event, dict):
        raise ConfigError(
            f"the event in {path} is not a JSON object",
            hint="API Gateway sends every event as an object with a `requestContext`.",
        )
    return json.dumps(event, separators=(",", ":")).encode()


async def invoke_once(
    app: AppConfig,
    options: Options,
    route: str,
    *,
    body: str | None = None,
    event: bytes | None = None,
    environ: Mapping[str, str] | None = None,
) -> InvocationResult:
    """Start an emulator, invoke the function of `route` once, stop it, return the result.

    `event` is sent as it is; without it, `build_event` makes one with `body`.
    """
    emulator = Emulator(app, options, environ=environ, ipv6_loopback=False)
    await emulator.start()
    try:
        if event is None:
            domain_name = f"127.0.0.1:{emulator.port}"
            event = build_event(app, route, body=body, domain_name=domain_name, stage=options.stage)
        return await emulator.invoke(route, event)
    finally:
        await emulator.stop()


def failure_body(result: InvocationResult) -> str:
    """Return the JSON that describes a failed invocation, as `aws lambda invoke` prints it."""
    return json.dumps({"errorType": result.error_type, "errorMessage": result.error_message})
