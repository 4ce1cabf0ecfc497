"""Helpers for the execution tests: log capture, process lookups and client calls.

This module contains no tests. Its name starts with `test_exec_` so that it
sits beside the test files that import it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import psutil

from emulator.app import Emulator
from emulator.config import Options
from emulator.logs import function_lines

T = TypeVar("T")

# Seconds a test waits for something the emulator does on its own (a reply,
# a replacement process, a log line) before it fails.
WAIT_TIMEOUT = 15.0
# Polling interval for process state, which no event reports.
POLL_INTERVAL = 0.05

REPORT_PATTERN = re.compile(
    r"REPORT RequestId: (?P<request_id>[0-9a-f-]{36})"
    r"\tDuration: (?P<duration>\d+\.\d{2}) ms"
    r"\tBilled Duration: (?P<billed>\d+) ms"
    r"\tMemory Size: (?P<memory_size>\d+) MB"
    r"\tMax Memory Used: (?P<max_memory>\d+) MB"
    r"(?P<timeout>\tStatus: timeout)?"
    r"(?:\tInit Duration: (?P<init>\d+\.\d{2}) ms)?"
)
START_PATTERN = re.compile(r"START RequestId: (?P<request_id>[0-9a-f-]{36}) Version: \$LATEST")
END_PATTERN = re.compile(r"END RequestId: (?P<request_id>[0-9a-f-]{36})")


class LogCapture(logging.Handler):
    """Records of the `emulator` logger, with a way to await the one a test expects."""

    records: list[logging.LogRecord]

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records = []
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._changed.set)

    def function_lines(self, route: str) -> list[str]:
        """Return the lines attributed to the function of `route`, in order."""
        return [
            line
            for record in self.records
            if getattr(record, "route", None) == route
            for line in function_lines(record)
        ]

    def messages(self, logger_name: str, level: int = logging.DEBUG) -> list[str]:
        """Return the messages of `logger_name` (and its children) at `level` or above."""
        return [
            record.getMessage()
            for record in self.records
            if (record.name == logger_name or record.name.startswith(logger_name + "."))
            and record.levelno >= level
        ]

    async def wait_for(
        self, find: Callable[[], T | None], timeout: float = WAIT_TIMEOUT, what: str = ""
    ) -> T:
        """Return the first non-None result of `find`, called again after each new record."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        deadline = loop.time() + timeout
        while True:
            self._changed.clear()
            found = find()
            if found is not None:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no log record for {what or find} within {timeout} s")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def wait_for_line(self, route: str, pattern: str, timeout: float = WAIT_TIMEOUT) -> str:
        """Return the first line of `route` matching the regular expression `pattern`."""
        compiled = re.compile(pattern)

        def find() -> str | None:
            return next(
                (line for line in self.function_lines(route) if compiled.search(line)), None
            )

        return await self.wait_for(find, timeout, f"route {route}: {pattern}")


@contextlib.contextmanager
def capture_logs() -> Iterator[LogCapture]:
    """Collect the emulator's records, at INFO and above, while the block runs.

    The level is set on the `emulator` logger before the emulator starts, so
    workers get it too and forward their function lines.
    """
    capture = LogCapture()
    root = logging.getLogger("emulator")
    previous_level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(capture)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(previous_level)


def invocation_lines(lines: list[str], request_id: str) -> list[str]:
    """Return the lines from START to REPORT of one invocation.

    Lines between them that belong to another request (a concurrent
    invocation's START, END or REPORT) are left out.
    """
    start = lines.index(f"START RequestId: {request_id} Version: $LATEST")
    report = next(
        index
        for index, line in enumerate(lines)
        if index > start and line.startswith(f"REPORT RequestId: {request_id}\t")
    )
    return [
        line
        for line in lines[start : report + 1]
        if not re.match(r"(START|END|REPORT) RequestId: ", line) or request_id in line
    ]


# Processes


def worker_processes() -> list[psutil.Process]:
    """Return the worker subprocesses that this (test) process started."""
    workers = []
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.NoSuchProcess):
            if "emulator.worker" in child.cmdline():
                workers.append(child)
    return workers


def descendant_pids(pid: int | None = None) -> set[int]:
    """Return the pids of every live descendant of `pid` (this process by default)."""
    process = psutil.Process(pid)
    return {child.pid for child in process.children(recursive=True)}


def is_gone(process: psutil.Process, *, zombie_is_gone: bool = False) -> bool:
    """Tell whether `process` has exited (and been reaped, unless `zombie_is_gone`)."""
    try:
        if not process.is_running():
            return True
        return zombie_is_gone and process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def wait_until(
    condition: Callable[[], bool], what: str, timeout: float = WAIT_TIMEOUT
) -> None:
    """Poll `condition` until it holds, or fail naming `what` after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(POLL_INTERVAL)


async def wait_gone(
    processes: Iterable[psutil.Process],
    timeout: float = WAIT_TIMEOUT,
    *,
    zombie_is_gone: bool = False,
) -> None:
    """Wait until every process has exited, or fail listing the ones still alive."""
    remaining = list(processes)

    def all_gone() -> bool:
        remaining[:] = [p for p in remaining if not is_gone(p, zombie_is_gone=zombie_is_gone)]
        return not remaining

    try:
        await wait_until(all_gone, "processes to exit", timeout)
    except AssertionError:
        alive = ", ".join(f"{p.pid} {_describe(p)}" for p in remaining)
        raise AssertionError(f"processes still alive after {timeout} s: {alive}") from None


def _describe(process: psutil.Process) -> str:
    try:
        return f"({process.status()}: {' '.join(process.cmdline())})"
    except psutil.Error:
        return "(gone)"


async def wait_for_runtimes(count: int, timeout: float = WAIT_TIMEOUT) -> list[psutil.Process]:
    """Wait until the workers have `count` runtime processes in total, and return them.

    A runtime process is a worker's direct child. With `prewarm` on, each
    worker starts one at startup.
    """
    found: list[psutil.Process] = []

    def enough() -> bool:
        found[:] = [
            child
            for worker in worker_processes()
            for child in _children(worker)
            if not is_gone(child)
        ]
        return len(found) >= count

    await wait_until(enough, f"{count} runtime processes", timeout)
    return found


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children()
    except psutil.NoSuchProcess:
        return []


# Clients


async def receive_json(
    ws: aiohttp.ClientWebSocketResponse[bool], timeout: float = WAIT_TIMEOUT
) -> Any:
    """Receive one text frame and parse it as JSON."""
    return json.loads(await ws.receive_str(timeout=timeout))


def assert_error_frame(frame: Any, connection_id: str) -> None:
    """Check the frame API Gateway sends when an invocation fails."""
    assert set(frame) == {"message", "connectionId", "requestId"}
    assert frame["message"] == "Internal server error"
    assert frame["connectionId"] == connection_id
    assert re.fullmatch(r"[A-Za-z0-9]{15}=", frame["requestId"])


@contextlib.asynccontextmanager
async def running_emulator(
    root: Path, environ: Mapping[str, str], **overrides: Any
) -> AsyncIterator[Emulator]:
    """Run an emulator for the project at `root` with the environment `environ`.

    The `start_emulator` fixture always passes the test process's own
    environment; this passes `environ` instead. Like the fixture, it checks
    that stopping leaves no process behind.
    """
    before = descendant_pids()
    settings: dict[str, Any] = {"port": 0, "internal_port": 0, **overrides}
    emulator = Emulator(root, Options(**settings), environ=environ)
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()
    left = [psutil.Process(pid) for pid in descendant_pids() - before if psutil.pid_exists(pid)]
    assert not left, f"processes left behind after stop: {[p.pid for p in left]}"
