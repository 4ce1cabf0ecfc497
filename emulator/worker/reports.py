"""The per-invocation log lines, worded exactly as Lambda writes them."""

from __future__ import annotations

import math
import time
from typing import Protocol


class _Failure(Protocol):
    @property
    def error_type(self) -> str | None: ...

    @property
    def error_message(self) -> str | None: ...


def timestamp() -> str:
    """Return the current UTC time as Lambda's log lines show it (ms precision)."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def start_line(request_id: str) -> str:
    return f"START RequestId: {request_id} Version: $LATEST"


def end_line(request_id: str) -> str:
    return f"END RequestId: {request_id}"


def report_line(
    request_id: str,
    *,
    duration_ms: float,
    memory_size: int,
    max_memory_used: int,
    init_duration_ms: float | None,
    timed_out: bool,
) -> str:
    # Billed from the duration as printed, so that a reader who rounds the
    # printed Duration up gets the Billed Duration (2.004 ms prints as 2.00
    # and bills 2 ms, not 3).
    billed_ms = max(1, math.ceil(round(duration_ms, 2)))
    fields = [
        f"REPORT RequestId: {request_id}",
        f"Duration: {duration_ms:.2f} ms",
        f"Billed Duration: {billed_ms} ms",
        f"Memory Size: {memory_size} MB",
        f"Max Memory Used: {max_memory_used} MB",
    ]
    if timed_out:
        fields.append("Status: timeout")
    if init_duration_ms is not None:
        fields.append(f"Init Duration: {init_duration_ms:.2f} ms")
    return "\t".join(fields)


def failure_line(request_id: str, error_type: str, message: str) -> str:
    return f"{timestamp()} {request_id} {error_type}: {message}"


def error_lines(request_id: str, outcome: _Failure) -> list[str]:
    """Return the lines Lambda logs for a failure the runtime did not report itself."""
    if outcome.error_type == "Sandbox.Timedout":
        return [f"{timestamp()} {request_id} {outcome.error_message}"]
    return [
        f"{timestamp()} {request_id} Error: {outcome.error_message}",
        f"{outcome.error_type}",
    ]
