"""Records of finished invocations, for the Python API and the pytest plugin.

A worker sends the log lines of an invocation (LOG frames carrying its
request id) before its result (the RESULT frame), over one ordered
channel. So when a result arrives, the lines of its invocation are
complete, and the record is built at once.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emulator.ipc.messages import Log, Result

# Records kept per emulator; older ones are dropped first. About 1 KB each
# plus their log lines, so a long session stays bounded.
MAX_RECORDS = 10_000
# Invocations whose lines are kept while their result is outstanding. Lines
# of an invocation whose worker died never get a result, so this is bounded.
MAX_PENDING_INVOCATIONS = 1_000


@dataclass(frozen=True)
class InvocationRecord:
    """One finished invocation of a route's function, with its REPORT figures and log lines.

    `route` is the route's name without `$` (`connect`, `default`, `send`).
    `request_id` is empty when the worker process exited before the
    invocation could report. `logs` are the lines of the invocation:
    START, the function's output, END and REPORT.
    """

    route: str
    request_id: str
    error_type: str | None
    error_message: str | None
    duration_ms: float
    init_duration_ms: float | None
    max_memory_mb: int
    logs: tuple[str, ...]
    payload: bytes | None
    # Wall-clock time the result arrived, in seconds since the epoch.
    finished_at: float

    @property
    def ok(self) -> bool:
        return self.error_type is None

    @property
    def output(self) -> tuple[str, ...]:
        """The function's own output lines, without START, END and REPORT."""
        platform = ("START RequestId: ", "END RequestId: ", "REPORT RequestId: ")
        return tuple(line for line in self.logs if not line.startswith(platform))

    def response(self) -> Any:
        """Return the function's response parsed from JSON; raise ValueError without one."""
        if self.payload is None:
            raise ValueError(
                f"invocation {self.request_id} of route {self.route} has no response "
                f"({self.error_type}: {self.error_message})"
            )
        return json.loads(self.payload)


RecordFilter = Callable[[InvocationRecord], bool]


@dataclass
class _Waiter:
    route: str | None
    matches: RecordFilter | None
    future: asyncio.Future[InvocationRecord]

    def accepts(self, record: InvocationRecord) -> bool:
        if self.route is not None and record.route != self.route:
            return False
        return self.matches is None or self.matches(record)


class InvocationRecorder:
    """Builds an `InvocationRecord` from each worker result and its log lines.

    `on_log` and `on_result` run on the emulator's event loop, and so does
    `next_record`. `records` and `clear` may be called from any thread.
    """

    def __init__(self, max_records: int = MAX_RECORDS) -> None:
        self._records: deque[InvocationRecord] = deque(maxlen=max_records)
        # Records not yet returned by `next_record`, oldest first.
        self._unclaimed: deque[InvocationRecord] = deque(maxlen=max_records)
        self._lines: OrderedDict[str, list[str]] = OrderedDict()
        self._waiters: list[_Waiter] = []
        self._lock = threading.Lock()

    def on_log(self, route: str, log: Log) -> None:
        if log.request_id is None:
            return
        lines = self._lines.get(log.request_id)
        if lines is None:
            lines = self._lines[log.request_id] = []
            while len(self._lines) > MAX_PENDING_INVOCATIONS:
                self._lines.popitem(last=False)
        lines.extend(log.lines)

    def on_result(self, route: str, result: Result) -> None:
        lines = self._lines.pop(result.request_id, []) if result.request_id else []
        record = InvocationRecord(
            route=route,
            request_id=result.request_id,
            error_type=result.error_type,
            error_message=result.error_message,
            duration_ms=result.duration_ms,
            init_duration_ms=result.init_duration_ms,
            max_memory_mb=result.max_memory_mb,
            logs=tuple(lines),
            payload=result.payload,
            finished_at=time.time(),
        )
        with self._lock:
            self._records.append(record)
            for waiter in self._waiters:
                if not waiter.future.done() and waiter.accepts(record):
                    waiter.future.set_result(record)
                    return
            self._unclaimed.append(record)

    @property
    def records(self) -> list[InvocationRecord]:
        """Every record so far, oldest first (at most `MAX_RECORDS` of the latest)."""
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        """Forget every record, including those `next_record` has not returned yet."""
        with self._lock:
            self._records.clear()
            self._unclaimed.clear()

    async def next_record(
        self,
        route: str | None = None,
        *,
        matches: RecordFilter | None = None,
        timeout: float | None = 10.0,
    ) -> InvocationRecord:
        """Return the oldest record of `route` that no earlier call has returned.

        Waits for one when there is none yet, up to `timeout` seconds, then
        raises TimeoutError. `route` is a route name, with or without `$`;
        None accepts every route. `matches` filters further.
        """
        name = route.removeprefix("$") if route is not None else None
        waiter = _Waiter(name, matches, asyncio.get_running_loop().create_future())
        with self._lock:
            for record in self._unclaimed:
                if waiter.accepts(record):
                    self._unclaimed.remove(record)
                    return record
            self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
        except asyncio.TimeoutError:
            if waiter.future.done():
                return waiter.future.result()
            which = f"route {name}" if name is not None else "any route"
            raise TimeoutError(
                f"no invocation of {which} finished within {timeout} s "
                f"({len(self._records)} invocations of any route are recorded)"
            ) from None
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                # The record arrived just before the cancellation: keep it
                # for the next call instead of losing it.
                with self._lock:
                    self._unclaimed.appendleft(waiter.future.result())
            raise
        finally:
            with self._lock:
                self._waiters.remove(waiter)
