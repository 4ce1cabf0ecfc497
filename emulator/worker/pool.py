"""The execution environments of one function, and the invocations they run.

The pool grows on demand up to the function's concurrency, queues
invocations beyond it up to a bound, and throttles past that bound. It
keeps at least one environment warm once the function has started one,
and stops the others after they sit idle for a while.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.invocation import ERROR_REQUEST_TOO_LARGE, ERROR_THROTTLED, MAX_PAYLOAD_BYTES
from emulator.ipc.messages import Log, Result, WorkerConfig
from emulator.worker import proctree, reports
from emulator.worker.environment import (
    RUNTIME_PIDS,
    Environment,
    Invocation,
    Outcome,
    OutputSink,
    State,
)
from emulator.worker.runtime_api import InitFailure

logger = logging.getLogger(__name__)

# How often the memory of busy environments is sampled, in seconds. A
# spike shorter than this can pass unseen by the limit check; REPORT still
# shows it through the runtime process's kernel-kept peak (VmHWM), but
# not a short spike in a child process.
MEMORY_SAMPLE_INTERVAL = 0.05
# Idle environments are sampled less often: only background work grows them.
IDLE_SAMPLE_INTERVAL = 1.0

Send = Callable[[Log], None]


class _Retired:
    """Handed to queued invocations of a pool that a new configuration replaced."""


RETIRED = _Retired()


@dataclass
class _Waiter:
    future: asyncio.Future[Environment | InitFailure | _Retired]
    queued_at: float = field(default_factory=time.monotonic)


class FunctionPool(OutputSink):
    """Runs invocations of one function on a pool of warm environments."""

    config: WorkerConfig
    environments: list[Environment]

    def __init__(
        self,
        config: WorkerConfig,
        send_log: Send,
        runtime_dir: Path,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        """Set up the pool; `on_change` is called whenever an environment starts or ends."""
        self.config = config
        self._on_change = on_change
        self.environments = []
        self._send_log = send_log
        self._runtime_dir = runtime_dir
        self._idle: collections.deque[Environment] = collections.deque()
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._starting = 0
        self._next_index = 0
        self._init_failure: InitFailure | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._sampler: asyncio.Task[None] | None = None
        self._closing = False
        self._drained = asyncio.Event()

    # -- lifecycle -------------------------------------------------------

    def start(self) -> None:
        self._sampler = asyncio.ensure_future(self._sample_memory())
        if self.config.prewarm:
            self._launch()

    async def retire(self) -> None:
        """Stop serving, for a reload: the pool that replaces this one takes new invocations.

        Idle environments stop at once, busy ones as soon as their invocation
        ends, and queued invocations get None from `invoke()` so that the
        caller runs them on the new pool.
        """
        self._closing = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_result(RETIRED)
        idle = list(self._idle)
        self._idle.clear()
        await asyncio.gather(*(env.stop() for env in idle))
        self._check_drained()
        await self._drained.wait()

    def _check_drained(self) -> None:
        """Finish a retirement once no environment runs or starts."""
        if self._closing and not self.environments and not self._starting:
            if self._sampler is not None:
                self._sampler.cancel()
            self._drained.set()

    async def stop(self) -> None:
        """Stop every environment now, busy or not; queued invocations are cancelled."""
        self._closing = True
        if self._sampler is not None:
            self._sampler.cancel()
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.cancel()
        self._waiters.clear()
        await asyncio.gather(*(env.stop() for env in list(self.environments)))
        for task in list(self._background):
            task.cancel()

    @property
    def busy(self) -> int:
        return sum(1 for env in self.environments if env.state is State.BUSY)

    @property
    def queued(self) -> int:
        return len(self._waiters)

    # -- invoke ----------------------------------------------------------

    async def invoke(self, invocation_id: int, event: bytes) -> Result | None:
        """Run one invocation; return None if the pool retired before it started."""
        if self._closing:
            return None
        invocation = Invocation(request_id=str(uuid.uuid4()), event=event)
        if len(event) > MAX_PAYLOAD_BYTES:
            message = (
                f"Request must be smaller than {MAX_PAYLOAD_BYTES} bytes for the "
                f"RequestResponse invocation type (got {len(event)})"
            )
            self._log_failure(invocation, ERROR_REQUEST_TOO_LARGE, message)
            return Result(
                invocation_id, invocation.request_id, None, ERROR_REQUEST_TOO_LARGE, message
            )
        acquired = await self._acquire()
        if acquired is RETIRED:
            return None
        if isinstance(acquired, InitFailure):
            return self._fail_init(invocation_id, invocation, acquired)
        if acquired is None:
            message = "Rate Exceeded."
            self._log_failure(invocation, ERROR_THROTTLED, message)
            return Result(invocation_id, invocation.request_id, None, ERROR_THROTTLED, message)
        assert isinstance(acquired, Environment)
        environment = acquired
        outcome = await environment.invoke(invocation)
        result = self._finish_invocation(invocation_id, invocation, environment, outcome)
        self._release(environment)
        return result

    def _finish_invocation(
        self,
        invocation_id: int,
        invocation: Invocation,
        environment: Environment,
        outcome: Outcome,
    ) -> Result:
        lines: list[str] = []
        if not invocation.start_logged:
            lines.append(reports.start_line(invocation.request_id))
        if outcome.error_type and outcome.error_body is None:
            lines.extend(reports.error_lines(invocation.request_id, outcome))
        lines.append(reports.end_line(invocation.request_id))
        max_memory = environment.max_memory_used_mb()
        init_duration = environment.init_duration_ms if environment.invocations == 1 else None
        lines.append(
            reports.report_line(
                invocation.request_id,
                duration_ms=outcome.duration_ms,
                memory_size=self.config.memory,
                max_memory_used=max_memory,
                init_duration_ms=init_duration,
                timed_out=outcome.timed_out,
            )
        )
        return Result(
            id=invocation_id,
            request_id=invocation.request_id,
            payload=outcome.response,
            error_type=outcome.error_type,
            error_message=outcome.error_message,
            duration_ms=outcome.duration_ms,
            max_memory_mb=max_memory,
            init_duration_ms=init_duration,
            lines=lines,
        )

    def _fail_init(
        self, invocation_id: int, invocation: Invocation, failure: InitFailure
    ) -> Result:
        self._log_failure(invocation, failure.error_type, failure.error_message)
        return Result(
            invocation_id, invocation.request_id, None, failure.error_type, failure.error_message
        )

    def _log_failure(self, invocation: Invocation, error_type: str, message: str) -> None:
        lines = [
            reports.start_line(invocation.request_id),
            reports.failure_line(invocation.request_id, error_type, message),
            reports.end_line(invocation.request_id),
            reports.report_line(
                invocation.request_id,
                duration_ms=0.0,
                memory_size=self.config.memory,
                max_memory_used=0,
                init_duration_ms=None,
                timed_out=False,
            ),
        ]
        self._send_log(Log(lines=lines, request_id=invocation.request_id, level="ERROR"))

    # -- environments ----------------------------------------------------

    async def _acquire(self) -> Environment | InitFailure | _Retired | None:
        """Return an idle environment, the cached init failure, or None when throttled."""
        if self._init_failure is not None:
            return self._init_failure
        while self._idle:
            environment = self._idle.popleft()
            if environment.state is State.IDLE:
                return environment
        unclaimed_starts = self._starting - len(self._waiters)
        if unclaimed_starts > 0:
            pass  # An environment already starting will serve this invocation.
        elif len(self.environments) + self._starting < self.config.concurrency:
            self._launch()
        elif len(self._waiters) - self._starting >= self.config.queue_size:
            # Waiters that a starting environment will serve are not queued:
            # only those beyond the concurrency count against the queue.
            return None
        waiter = _Waiter(asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            if waiter.future.done() and not waiter.future.cancelled():
                handed = waiter.future.result()
                if isinstance(handed, Environment):
                    self._release(handed)
            raise

    def _launch(self) -> None:
        self._starting += 1
        self._run_in_background(self._start_environment())

    def _run_in_background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _start_environment(self) -> None:
        try:
            await self._start_and_add_environment()
        finally:
            self._check_drained()

    async def _start_and_add_environment(self) -> None:
        environment = Environment(self.config, self._next_index, self, self._runtime_dir)
        self._next_index += 1
        try:
            failure = await environment.start()
        except asyncio.TimeoutError as error:
            logger.error("%s: %s; the next invocation starts a new one", environment.label, error)
            self._starting -= 1
            self._hand_over_failure(InitFailure("Sandbox.Timedout", str(error), b""))
            return
        except Exception:
            self._starting -= 1
            logger.exception("%s: failed to start", environment.label)
            # Whatever it had started (its server, perhaps its runtime) goes.
            await environment.stop(graceful=False)
            self._hand_over_failure(
                InitFailure("Runtime.Unknown", "environment failed to start", b"")
            )
            return
        self._starting -= 1
        if failure is not None:
            logger.error(
                "%s: init failed with %s: %s; every invocation fails until its files change",
                self.config.function_name,
                failure.error_type,
                failure.error_message,
            )
            self._init_failure = failure
            self._hand_over_failure(failure)
            return
        if self._closing:
            await environment.stop()
            return
        self.environments.append(environment)
        self._on_change()
        environment.exited.add_done_callback(lambda _: self._on_exit(environment))
        self._release(environment)

    def _hand_over_failure(self, failure: InitFailure) -> None:
        """Fail the invocation that a failed environment start would have served.

        Each start serves one waiter; the waiters past the starts in
        progress wait for a busy environment to finish. After an init
        failure every invocation fails until the files change, so every
        waiter fails. After any other failure only one does, and the others
        get starts of their own if no environment is left to serve them.
        """
        every_waiter = self._init_failure is not None
        while self._waiters and (every_waiter or len(self._waiters) > self._starting):
            waiter = self._waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_result(failure)
                if not every_waiter:
                    break
        if not every_waiter:
            self._replace_if_needed()

    def _release(self, environment: Environment) -> None:
        if environment.state is not State.IDLE:
            self._replace_if_needed()
            return
        if self._closing:
            self._run_in_background(environment.stop())
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.future.done():
                environment.state = State.BUSY
                waiter.future.set_result(environment)
                return
        self._idle.appendleft(environment)

    def _on_exit(self, environment: Environment) -> None:
        if environment in self.environments:
            self.environments.remove(environment)
            self._on_change()
        self._check_drained()
        if environment.state is State.IDLE and not self._closing:
            logger.warning(
                "%s: runtime exited while idle (exit status %s); replacing it",
                environment.label,
                environment.exited.result(),
            )
            # Its state is still IDLE, so it must leave the idle queue or the
            # next invocation gets it. Stopping it closes its Runtime API
            # server and kills what the runtime left running.
            if environment in self._idle:
                self._idle.remove(environment)
            self._run_in_background(environment.stop(graceful=False))
        self._replace_if_needed()

    def _replace_if_needed(self) -> None:
        """Start environments for the waiters that none running or starting will serve."""
        if self._closing or self._init_failure is not None:
            return
        wanted = len(self._waiters) + (1 if self.config.prewarm else 0)
        while len(self.environments) + self._starting < min(wanted, self.config.concurrency):
            self._launch()

    # -- memory and idle environments ------------------------------------

    async def _sample_memory(self) -> None:
        limit = self.config.memory * 1024 * 1024
        last_idle_sample = 0.0
        while True:
            busy = [env for env in self.environments if env.state is State.BUSY]
            now = time.monotonic()
            sample_idle = now - last_idle_sample >= IDLE_SAMPLE_INTERVAL
            for environment in self.environments:
                measured = environment.state is State.BUSY or sample_idle
                rss = environment.measure() if measured else 0
                if rss > limit:
                    # A WARNING, not an ERROR: the failed invocation, if one
                    # runs, is logged by the gateway with its request ids.
                    logger.warning(
                        "%s: its process tree uses %d MB, over the %d MB limit; killing it",
                        environment.label,
                        rss >> 20,
                        self.config.memory,
                    )
                    environment.kill_for_memory()
            if sample_idle:
                last_idle_sample = now
                self._stop_idle_environments(now)
                proctree.reap_orphans(RUNTIME_PIDS)
            await asyncio.sleep(MEMORY_SAMPLE_INTERVAL if busy else IDLE_SAMPLE_INTERVAL / 4)

    def _stop_idle_environments(self, now: float) -> None:
        timeout = self.config.idle_environment_timeout
        idle = [env for env in self._idle if env.state is State.IDLE]
        # Keep the most recently used environment warm.
        for environment in idle[1:]:
            if now - environment.idle_since >= timeout:
                self._idle.remove(environment)
                logger.info("%s: idle for %.0f s; stopping it", environment.label, timeout)
                self._run_in_background(environment.stop())

    # -- output ----------------------------------------------------------

    def output(self, environment: Environment, lines: list[str]) -> None:
        invocation = environment.current
        if invocation is None:
            self._send_log(Log(lines=lines))
            return
        if not invocation.start_logged:
            invocation.start_logged = True
            lines = [reports.start_line(invocation.request_id), *lines]
        self._send_log(Log(lines=lines, request_id=invocation.request_id))
