"""The emulator's output: its own log lines and its functions' lines.

Function lines (START, the function's output, END, REPORT) come through
loggers named `emulator.function.<route>` and print as `[route] line`, so
each is attributed to its function. One record carries all the lines a
worker sent together (`function_lines()` returns them): logging each line
on its own costs the gateway more than the rest of an invocation. The
emulator's own records print with their level and logger name.

With the JSON format (`--log-format json`) each line is one JSON object
on its own line instead: START, END and REPORT lines become objects with
their fields as keys, the function's output `{"type": "output", ...}`, and
the emulator's own records `{"type": "log", ...}`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone
from typing import Any, Literal, TextIO

FUNCTION_LOGGER = "emulator.function"

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")

_START = re.compile(r"START RequestId: (?P<id>\S+) Version: (?P<version>\S+)")
_END = re.compile(r"END RequestId: (?P<id>\S+)")
_REPORT_PREFIX = "REPORT RequestId: "
# REPORT fields, tab-separated after the request id: label -> (JSON key, unit suffix).
_REPORT_FIELDS: dict[str, tuple[str, str]] = {
    "Duration": ("durationMs", " ms"),
    "Billed Duration": ("billedDurationMs", " ms"),
    "Memory Size": ("memorySizeMB", " MB"),
    "Max Memory Used": ("maxMemoryUsedMB", " MB"),
    "Init Duration": ("initDurationMs", " ms"),
}


class OutputFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        route = getattr(record, "route", None)
        if route is not None:
            return "\n".join(f"[{route}] {line}" for line in function_lines(record))
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """Formats each record as one line of JSON; see the module docstring for the shapes."""

    def format(self, record: logging.LogRecord) -> str:
        time = _iso_time(record.created)
        route = getattr(record, "route", None)
        if route is not None:
            request_id = getattr(record, "request_id", None)
            return "\n".join(
                json.dumps(
                    {**function_line_fields(route, request_id, line), "time": time},
                    ensure_ascii=False,
                )
                for line in function_lines(record)
            )
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        fields = {
            "type": "log",
            "level": record.levelname,
            "logger": record.name,
            "message": message,
            "time": time,
        }
        return json.dumps(fields, ensure_ascii=False)


def function_lines(record: logging.LogRecord) -> list[str]:
    """Return the function log lines a record carries."""
    lines: list[str] | None = getattr(record, "lines", None)
    return lines if lines is not None else [record.getMessage()]


def function_line_fields(route: str, request_id: str | None, line: str) -> dict[str, Any]:
    """Return the JSON fields of one function log line.

    START, END and REPORT lines give `type` and their own fields; any other
    line is the function's output. In a REPORT object `initDurationMs` is
    null on a warm start and `status` is null unless the line has one
    (`timeout`).
    """
    if line.startswith(_REPORT_PREFIX):
        report = _report_fields(line)
        if report is not None:
            return {"type": "REPORT", "route": route, **report}
    start = _START.fullmatch(line)
    if start is not None:
        return {
            "type": "START",
            "route": route,
            "requestId": start["id"],
            "version": start["version"],
        }
    end = _END.fullmatch(line)
    if end is not None:
        return {"type": "END", "route": route, "requestId": end["id"]}
    return {"type": "output", "route": route, "requestId": request_id, "message": line}


def _report_fields(line: str) -> dict[str, Any] | None:
    """Parse a REPORT line; return None if it does not read as one."""
    request_id, *parts = line.removeprefix(_REPORT_PREFIX).split("\t")
    fields: dict[str, Any] = {
        "requestId": request_id,
        "durationMs": None,
        "billedDurationMs": None,
        "memorySizeMB": None,
        "maxMemoryUsedMB": None,
        "initDurationMs": None,
        "status": None,
    }
    for part in parts:
        label, separator, value = part.partition(": ")
        if not separator:
            return None
        if label == "Status":
            fields["status"] = value
            continue
        known = _REPORT_FIELDS.get(label)
        if known is None or not value.endswith(known[1]):
            return None
        key, unit = known
        try:
            number = float(value.removesuffix(unit))
        except ValueError:
            return None
        fields[key] = number if key in ("durationMs", "initDurationMs") else int(number)
    if fields["durationMs"] is None or " " in request_id:
        return None
    return fields


def _iso_time(created: float) -> str:
    """Format a record's time as ISO 8601 in UTC with milliseconds."""
    moment = datetime.fromtimestamp(created, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def configure_logging(
    level: int = logging.INFO, stream: TextIO | None = None, log_format: LogFormat = "text"
) -> None:
    """Send the emulator's and its functions' records to `stream` (stderr by default)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else OutputFormatter())
    root = logging.getLogger("emulator")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # aiohttp's access log would repeat every management API call.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if log_format == "json":
        # Warnings of other libraries (aiohttp, asyncio) come out as JSON too,
        # instead of as logging's plain last-resort lines.
        other = logging.getLogger()
        other.handlers[:] = [handler]
        other.setLevel(logging.WARNING)


def current_log_format() -> LogFormat:
    """Return the format that `configure_logging` set up, so child processes can match it."""
    for handler in logging.getLogger("emulator").handlers:
        if isinstance(handler.formatter, JsonFormatter):
            return "json"
    return "text"
