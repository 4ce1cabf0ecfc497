"""The emulator's output: its own log lines and its functions' lines.

Function lines (START, the function's output, END, REPORT) come through
loggers named `emulator.function.<route>` and print as `[route] line`, so
each is attributed to its function. The emulator's own records print
with their level and logger name.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

FUNCTION_LOGGER = "emulator.function"


class OutputFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        route = getattr(record, "route", None)
        if route is not None:
            return f"[{route}] {record.getMessage()}"
        return super().format(record)


def configure_logging(level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Send the emulator's and its functions' records to `stream` (stderr by default)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(OutputFormatter())
    root = logging.getLogger("emulator")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # aiohttp's access log would repeat every management API call.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
