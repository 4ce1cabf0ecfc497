"""The CONNECT, MESSAGE and DISCONNECT events that API Gateway sends to Lambda.

Field names, value formats and which fields each event type has follow the
events API Gateway WebSocket APIs deliver with the Lambda proxy integration.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TypedDict

from emulator.gateway.ids import new_message_id, new_request_id

# `requestTime` uses English month abbreviations whatever the locale.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# The only headers of a DISCONNECT event besides `Host`, all empty, as
# API Gateway sends them.
_DISCONNECT_EMPTY_HEADERS = ("x-api-key", "X-Forwarded-For", "x-restapi")

# The `disconnectReason` API Gateway gives when the client's close frame
# carried no status code (RFC 6455 reports that case as 1005).
NO_STATUS_REASON = "Client-side close frame status not set"


class Identity(TypedDict):
    sourceIp: str
    userAgent: str | None


class _RequestContextFields(TypedDict):
    routeKey: str
    eventType: str
    extendedRequestId: str
    requestTime: str
    messageDirection: str
    stage: str
    connectedAt: int
    requestTimeEpoch: int
    identity: Identity
    requestId: str
    domainName: str
    connectionId: str
    apiId: str


class RequestContext(_RequestContextFields, total=False):
    messageId: str
    disconnectStatusCode: int
    disconnectReason: str


class _EventFields(TypedDict):
    requestContext: RequestContext
    isBase64Encoded: bool


class WebSocketEvent(_EventFields, total=False):
    headers: dict[str, str]
    multiValueHeaders: dict[str, list[str]]
    queryStringParameters: dict[str, str]
    multiValueQueryStringParameters: dict[str, list[str]]
    body: str


@dataclass(frozen=True, slots=True)
class ApiInfo:
    """The fields that every event of one gateway shares."""

    api_id: str
    stage: str


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """The fields that every event of one connection shares.

    `connected_at` is in epoch milliseconds, as `requestContext.connectedAt`.
    """

    connection_id: str
    connected_at: int
    source_ip: str
    user_agent: str | None
    domain_name: str


def format_request_time(epoch_ms: int) -> str:
    """Format a time as `requestTime` does: `04/Dec/2026:19:22:46 +0000`."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc)
    month = _MONTHS[moment.month - 1]
    return f"{moment.day:02d}/{month}/{moment.year}:{moment:%H:%M:%S} +0000"


def epoch_ms(seconds: float | None = None) -> int:
    return int((time.time() if seconds is None else seconds) * 1000)


def _request_context(
    api: ApiInfo, connection: ConnectionInfo, route_key: str, event_type: str, now_ms: int
) -> RequestContext:
    request_id = new_request_id()
    return {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": format_request_time(now_ms),
        "messageDirection": "IN",
        "stage": api.stage,
        "connectedAt": connection.connected_at,
        "requestTimeEpoch": now_ms,
        "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
        "requestId": request_id,
        "domainName": connection.domain_name,
        "connectionId": connection.connection_id,
        "apiId": api.api_id,
    }


def _single_and_multi(
    pairs: Iterable[tuple[str, str]],
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Build the single-value form (the last value wins) and the multi-value form."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value
        multi.setdefault(name, []).append(value)
    return single, multi


def _group_headers(headers: Iterable[tuple[str, str]]) -> Iterable[tuple[str, str]]:
    """Yield headers with each name spelled as its first occurrence was.

    HTTP header names are case-insensitive, so `X-A` and `x-a` are one header.
    """
    spelling: dict[str, str] = {}
    for name, value in headers:
        yield spelling.setdefault(name.lower(), name), value


def connect_event(
    api: ApiInfo,
    connection: ConnectionInfo,
    headers: Iterable[tuple[str, str]],
    query: Iterable[tuple[str, str]] | None,
) -> WebSocketEvent:
    """Build the `$connect` event of an upgrade request.

    `query` is None when the URL has no query string; the query fields are
    then left out, as API Gateway leaves them out.
    """
    context = _request_context(api, connection, "$connect", "CONNECT", connection.connected_at)
    single_headers, multi_headers = _single_and_multi(_group_headers(headers))
    event: WebSocketEvent = {
        "headers": single_headers,
        "multiValueHeaders": multi_headers,
        "requestContext": context,
        "isBase64Encoded": False,
    }
    if query is not None:
        single_query, multi_query = _single_and_multi(query)
        event["queryStringParameters"] = single_query
        event["multiValueQueryStringParameters"] = multi_query
    return event


def message_event(
    api: ApiInfo, connection: ConnectionInfo, route_key: str, body: str
) -> WebSocketEvent:
    """Build the event of one text message routed to `route_key`."""
    context = _request_context(api, connection, route_key, "MESSAGE", epoch_ms())
    context["messageId"] = new_message_id()
    return {"requestContext": context, "body": body, "isBase64Encoded": False}


def disconnect_event(
    api: ApiInfo, connection: ConnectionInfo, status_code: int, reason: str
) -> WebSocketEvent:
    """Build the `$disconnect` event with the close frame's status code and reason."""
    context = _request_context(api, connection, "$disconnect", "DISCONNECT", epoch_ms())
    context["disconnectStatusCode"] = status_code
    context["disconnectReason"] = reason
    headers = {"Host": connection.domain_name}
    headers.update(dict.fromkeys(_DISCONNECT_EMPTY_HEADERS, ""))
    return {
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "requestContext": context,
        "isBase64Encoded": False,
    }


def encode_event(event: WebSocketEvent) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()
