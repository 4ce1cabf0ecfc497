"""What the gateway makes of a function's result.

API Gateway calls the function behind a route its integration. This module
turns a `$connect` result into the handshake response, a message result
into a route response, and a failure into a line for the log.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from emulator.invocation import (
    ERROR_EXIT,
    ERROR_OUT_OF_MEMORY,
    ERROR_THROTTLED,
    ERROR_TIMEOUT,
    InvocationResult,
)

# Response headers that the gateway itself controls in a handshake response.
# The handshake and HTTP framing would break if a handler could set them.
_RESERVED_HEADERS = frozenset(
    {
        "connection",
        "upgrade",
        "content-length",
        "transfer-encoding",
        "sec-websocket-accept",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
    }
)

# API Gateway's bodies for a failed and a timed-out integration.
INTERNAL_ERROR_BODY = b'{"message": "Internal server error"}'
TIMEOUT_BODY = b'{"message": "Endpoint request timed out"}'

# The `error_type` of an InvocationResult for a failure of the invoker
# itself, not of the function.
INVOKER_FAILURE = "Gateway.InvokerFailure"


@dataclass(frozen=True, slots=True)
class Accept:
    """Complete the handshake (101) with these extra headers and subprotocol."""

    headers: tuple[tuple[str, str], ...]
    subprotocol: str | None


@dataclass(frozen=True, slots=True)
class Reject:
    """Reject the upgrade request with this status, body and headers.

    `problem` is set when the cause is a failure (502 or 504) and names it.
    """

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    problem: str | None = None


def describe_failure(result: InvocationResult) -> str:
    """Say how an invocation failed, for the log: timed out, crashed, throttled or raised."""
    detail = f"{result.error_type}: {result.error_message or ''}".rstrip(": ")
    if result.error_type == ERROR_TIMEOUT:
        return f"timed out ({detail})"
    if result.error_type in (ERROR_EXIT, ERROR_OUT_OF_MEMORY):
        return f"crashed ({detail})"
    if result.error_type == ERROR_THROTTLED:
        return f"was throttled ({detail})"
    if result.error_type == INVOKER_FAILURE:
        return f"could not be invoked ({result.error_message})"
    return f"raised {detail}"


def lambda_request(result: InvocationResult) -> str:
    """Return `, Lambda request <id>` for a log line, or "" when the result has no id.

    The function's START, END and REPORT lines carry this id, not the API
    Gateway request id that the client receives, so a gateway line that names
    both lets a reader find the function's log of a failure.
    """
    return f", Lambda request {result.request_id}" if result.request_id else ""


def decide_connect(result: InvocationResult | None, integration_timeout: float) -> Accept | Reject:
    """Turn the `$connect` result into the handshake response.

    `result` is None when the integration timeout passed first.
    """
    if result is None:
        problem = (
            f"$connect did not answer within the integration timeout of {integration_timeout:g} s"
        )
        return Reject(504, TIMEOUT_BODY, problem=problem)
    if not result.ok:
        problem = f"$connect{lambda_request(result)} {describe_failure(result)}"
        return Reject(502, INTERNAL_ERROR_BODY, problem=problem)

    response = _load_json(result.payload)
    status = _status_code(response.get("statusCode")) if isinstance(response, dict) else None
    if not isinstance(response, dict) or status is None:
        excerpt = (result.payload or b"").decode("utf-8", "replace")[:200]
        problem = f"$connect returned no valid statusCode (200 to 599); it returned {excerpt}"
        return Reject(502, INTERNAL_ERROR_BODY, problem=problem)

    headers = _response_headers(response)
    kept = tuple((name, value) for name, value in headers if name.lower() not in _RESERVED_HEADERS)
    if 200 <= status <= 299:
        subprotocol = next(
            (value for name, value in headers if name.lower() == "sec-websocket-protocol"), None
        )
        return Accept(kept, subprotocol or None)
    return Reject(status, _response_body(response), kept)


def route_response_body(result: InvocationResult) -> str | None:
    """Return the text a route response sends to the client, or None for nothing.

    The function's result is a proxy response whose `body` is the text.
    """
    response = _load_json(result.payload)
    if not isinstance(response, dict) or response.get("body") is None:
        return None
    body = response["body"]
    if isinstance(body, str):
        return body
    # NOTE: sending a non-string body as its JSON text is unverified against AWS.
    return json.dumps(body)


def _load_json(payload: bytes | None) -> object:
    if not payload:
        return None
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        return None


def _status_code(value: object) -> int | None:
    # NOTE: accepting a string of digits ("200") is unverified against AWS;
    # a number is what API Gateway documents.
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 200 <= value <= 599:
        return value
    return None


def _header_value(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def _response_headers(response: dict[str, object]) -> list[tuple[str, str]]:
    """Collect `headers` and `multiValueHeaders`, the two forms of a proxy response."""
    pairs: list[tuple[str, str]] = []
    single = response.get("headers")
    if isinstance(single, dict):
        for name, raw in single.items():
            value = _header_value(raw)
            if value is not None:
                pairs.append((str(name), value))
    multi = response.get("multiValueHeaders")
    if isinstance(multi, dict):
        for name, raw_values in multi.items():
            if not isinstance(raw_values, list):
                continue
            for raw in raw_values:
                value = _header_value(raw)
                if value is not None:
                    pairs.append((str(name), value))
    return pairs


def _response_body(response: dict[str, object]) -> bytes:
    body = response.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        return json.dumps(body).encode()
    if response.get("isBase64Encoded") is True:
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return body.encode()
    return body.encode()
