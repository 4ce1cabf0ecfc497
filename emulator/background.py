"""An `Emulator` served from a background thread, for code that does not run an event loop.

`Emulator.run_in_background()` starts the emulator on a new event loop in
a daemon thread and returns a `BackgroundEmulator` once it listens. Its
methods are blocking calls that run on that loop, safe from any thread
(`next_record_async` may also be awaited on another event loop). The
pytest plugin serves its emulators this way, so that one emulator
outlives the event loops of individual async tests.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from emulator.invocation import InvocationResult
from emulator.records import InvocationRecord, RecordFilter

if TYPE_CHECKING:
    from emulator.app import Emulator

_T = TypeVar("_T")

# Seconds that `start` waits for the emulator to listen and start its
# workers, and that `stop` waits for it to close connections and stop them.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0


class LoopThread:
    """An event loop running in a daemon thread, taking coroutines from other threads."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def call(self, coroutine: Coroutine[Any, Any, _T], timeout: float | None) -> _T:
        """Run `coroutine` on the loop and block for its result.

        Raises TimeoutError, after cancelling the coroutine, when it takes
        longer than `timeout` seconds.
        """
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            # The coroutine's own TimeoutError carries its message; only a
            # wait that ran out here gets this one. (concurrent.futures'
            # TimeoutError is the built-in one from Python 3.11 on.)
            if future.done():
                raise
            future.cancel()
            raise TimeoutError(f"no result within {timeout} s") from None
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no result within {timeout} s") from None

    def stop(self) -> None:
        """Stop the loop and wait for its thread to end."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()


class BackgroundEmulator:
    """A started `Emulator` running on its own event loop in a daemon thread."""

    emulator: Emulator

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._thread = LoopThread(f"arc-ws-emulator {emulator.app.name}")
        self._stopped = False

    @classmethod
    def start(cls, emulator: Emulator, timeout: float = START_TIMEOUT) -> BackgroundEmulator:
        """Start `emulator` in a new thread and return once it serves.

        Raises what `Emulator.start()` raised, after the thread has ended,
        or TimeoutError when it takes longer than `timeout` seconds.
        """
        background = cls(emulator)
        try:
            background._thread.call(emulator.start(), timeout)
        except TimeoutError:
            # The start was cancelled halfway: stop what it had started.
            try:
                background._thread.call(emulator.stop(), STOP_TIMEOUT)
            finally:
                background._thread.stop()
            raise
        except BaseException:
            background._thread.stop()
            raise
        return background

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the emulator (closing connections, stopping workers) and end its thread.

        Calling it again does nothing.
        """
        if self._stopped:
            return
        self._stopped = True
        try:
            self._thread.call(self.emulator.stop(), timeout)
        finally:
            self._thread.stop()

    @property
    def url(self) -> str:
        """The WebSocket URL clients connect to, such as `ws://127.0.0.1:3333`."""
        return self.emulator.url

    @property
    def management_url(self) -> str:
        """The base URL of the `@connections` management API."""
        return self.emulator.management_url

    @property
    def port(self) -> int:
        return self.emulator.port

    @property
    def internal_port(self) -> int:
        return self.emulator.internal_port

    @property
    def records(self) -> list[InvocationRecord]:
        """Every invocation record so far, oldest first."""
        return self.emulator.records

    def clear_records(self) -> None:
        self.emulator.clear_records()

    def next_record(
        self,
        route: str | None = None,
        *,
        matches: RecordFilter | None = None,
        timeout: float = 10.0,
    ) -> InvocationRecord:
        """Block until `Emulator.next_record` returns; raise TimeoutError after `timeout` s."""
        # The wait inside has its own timeout; the margin covers the hop between threads.
        return self._thread.call(
            self.emulator.next_record(route, matches=matches, timeout=timeout), timeout + 5.0
        )

    async def next_record_async(
        self,
        route: str | None = None,
        *,
        matches: RecordFilter | None = None,
        timeout: float = 10.0,
    ) -> InvocationRecord:
        """Await `Emulator.next_record` from another event loop (an async test's, say)."""
        future = asyncio.run_coroutine_threadsafe(
            self.emulator.next_record(route, matches=matches, timeout=timeout), self._thread.loop
        )
        return await asyncio.wrap_future(future)

    def invoke(self, route: str, event: bytes, timeout: float | None = None) -> InvocationResult:
        """Invoke the function of `route` (`connect`, `$connect` or a custom name) directly."""
        return self._thread.call(self.emulator.invoke(route.removeprefix("$"), event), timeout)

    def __enter__(self) -> BackgroundEmulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
