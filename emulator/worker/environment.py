"""One execution environment: a runtime process and its Runtime API endpoint.

An environment starts its runtime, waits for it to finish init (its first
`GET /next`), then runs one invocation at a time until it is stopped or
its process dies. Timeouts and memory limits end the whole process tree
with SIGKILL, as Lambda ends a sandbox; a graceful stop (reload, shutdown)
sends SIGTERM first.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from emulator.invocation import ERROR_EXIT, ERROR_OUT_OF_MEMORY, ERROR_TIMEOUT
from emulator.ipc.messages import WorkerConfig
from emulator.manifest.handlers import resolve_handler
from emulator.worker import proctree
from emulator.worker.output import OutputReader
from emulator.worker.runtime_api import InitFailure, InvocationAbortedError, RuntimeApi

logger = logging.getLogger(__name__)

# Lambda gives a function's init phase 10 seconds before it gives up.
INIT_TIMEOUT = 10.0
# Seconds a runtime gets to exit after SIGTERM, then after SIGKILL.
STOP_TERM_TIMEOUT = 2.0
STOP_KILL_TIMEOUT = 2.0

ERROR_INVALID_ENTRYPOINT = "Runtime.InvalidEntrypoint"

# Runtime processes of this worker that have not been waited for, across
# every pool: orphan reaping must leave them to their own `Popen.wait()`,
# which would otherwise lose their exit status.
RUNTIME_PIDS: set[int] = set()


class State(enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    STOPPING = "stopping"
    DEAD = "dead"


@dataclass(slots=True)
class Invocation:
    """One event on its way through an environment."""

    request_id: str
    event: bytes
    started: float = 0.0
    start_logged: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """The end of one invocation, in the terms of the REPORT line."""

    response: bytes | None
    error_type: str | None
    error_message: str | None
    error_body: bytes | None
    duration_ms: float
    timed_out: bool = False


class OutputSink:
    """The receiver of an environment's runtime output lines."""

    def output(self, environment: Environment, lines: list[str]) -> None:
        raise NotImplementedError


def describe_exit(returncode: int) -> str:
    """Return Lambda's wording for a runtime exit status."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name.removeprefix("SIG").lower()
        except ValueError:
            name = str(-returncode)
        if name == "kill":
            name = "killed"
        return f"Runtime exited with error: signal: {name}"
    return f"Runtime exited with error: exit status {returncode}"


def _trace_id() -> str:
    random = secrets.token_hex(20)
    return f"Root=1-{int(time.time()):08x}-{random[:24]};Parent={random[24:]};Sampled=0"


def _log_stream_name() -> str:
    return time.strftime("%Y/%m/%d/[$LATEST]", time.gmtime()) + secrets.token_hex(16)


class Environment:
    """A runtime process, its Runtime API server and its process tree."""

    config: WorkerConfig
    index: int
    state: State
    current: Invocation | None
    init_duration_ms: float | None
    invocations: int
    peak_rss: int
    oom: bool
    idle_since: float

    def __init__(
        self,
        config: WorkerConfig,
        index: int,
        sink: OutputSink,
        runtime_dir: Path,
    ) -> None:
        self.config = config
        self.index = index
        self.state = State.STARTING
        self.current = None
        self.init_duration_ms = None
        self.invocations = 0
        self.peak_rss = 0
        self.oom = False
        self.idle_since = time.monotonic()
        self._sink = sink
        self._runtime_dir = runtime_dir
        self._api = RuntimeApi(function_arn=config.function_arn)
        self._process: subprocess.Popen[bytes] | None = None
        self._output: OutputReader | None = None
        self._exit_watch: int = -1
        self._status_fd = -1
        self._known_pids: set[int] = set()
        self._loop = asyncio.get_running_loop()
        self.exited: asyncio.Future[object] = self._loop.create_future()

    @property
    def label(self) -> str:
        return f"{self.config.function_name}[{self.index}]"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    # -- start -----------------------------------------------------------

    async def start(self) -> InitFailure | None:
        """Start the runtime and wait for its init; return the failure if it failed.

        Raises asyncio.TimeoutError when init takes longer than
        INIT_TIMEOUT (the environment is then already stopped).
        """
        started = time.perf_counter()
        port = await self._api.start()
        failure = self._spawn(port)
        if failure is not None:
            await self._finish(kill=False)
            return failure
        init: asyncio.Future[object] = asyncio.ensure_future(self._api.wait_init())
        try:
            done, _ = await asyncio.wait(
                {init, self.exited}, timeout=INIT_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            init.cancel()
            await self.stop(graceful=False)
            raise
        if init in done:
            failure = cast(InitFailure | None, init.result())
            if failure is None:
                self.init_duration_ms = (time.perf_counter() - started) * 1000
                self.state = State.IDLE
                # One sample now, off the invocation path: the sampler may not
                # see a runtime that dies within milliseconds of an invocation,
                # and REPORT must still show the runtime's footprint.
                self.measure()
                self.idle_since = time.monotonic()
                return None
            await self.stop(graceful=False)
            return failure
        init.cancel()
        if self.exited in done:
            self._drain_output()
            failure = InitFailure(
                error_type=ERROR_EXIT,
                error_message=describe_exit(cast(int, self.exited.result())),
                body=b"",
            )
            # The runtime is gone, but what it started and its server are not.
            await self._finish(kill=True)
            return failure
        await self.stop(graceful=False)
        raise asyncio.TimeoutError(f"init did not finish within {INIT_TIMEOUT:.0f} seconds")

    def _spawn(self, port: int) -> InitFailure | None:
        config = self.config
        handler, _, _ = resolve_handler(config.runtime, Path(config.src), config.handler_setting)
        command = list(config.command)
        if config.runtime.startswith("provided"):
            bootstrap = Path(config.src) / "bootstrap"
            if not bootstrap.is_file():
                return InitFailure(
                    ERROR_INVALID_ENTRYPOINT,
                    # Lambda's own message, then what to do about it.
                    f"Couldn't find valid bootstrap(s): [{bootstrap}]. A provided runtime "
                    "runs the executable file `bootstrap` in the handler directory: create "
                    f"it and run `chmod +x {bootstrap}`",
                    b"",
                )
            if not os.access(bootstrap, os.X_OK):
                return InitFailure(
                    ERROR_INVALID_ENTRYPOINT,
                    f"{bootstrap} is not executable: run `chmod +x {bootstrap}`",
                    b"",
                )
        environment = dict(config.environment)
        environment.update(
            {
                "_HANDLER": handler,
                "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
                "AWS_LAMBDA_LOG_STREAM_NAME": _log_stream_name(),
                "LAMBDA_RUNTIME_DIR": str(self._runtime_dir),
            }
        )
        read_fd, write_fd = os.pipe()
        try:
            self._process = subprocess.Popen(
                command,
                cwd=config.src,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as error:
            os.close(read_fd)
            return InitFailure(
                ERROR_INVALID_ENTRYPOINT, f"cannot start {command[0]}: {error.strerror}", b""
            )
        finally:
            os.close(write_fd)
        self._known_pids.add(self._process.pid)
        RUNTIME_PIDS.add(self._process.pid)
        self._output = OutputReader(read_fd, self._on_output, self._loop)
        self._exit_watch = os.pidfd_open(self._process.pid)
        self._status_fd = proctree.open_status(self._process.pid)
        self._loop.add_reader(self._exit_watch, self._on_process_exit)
        return None

    def _on_output(self, lines: list[str]) -> None:
        self._sink.output(self, lines)

    def _on_process_exit(self) -> None:
        self._loop.remove_reader(self._exit_watch)
        os.close(self._exit_watch)
        self._exit_watch = -1
        assert self._process is not None
        returncode = self._process.wait()
        RUNTIME_PIDS.discard(self._process.pid)
        self._drain_output()
        if not self.exited.done():
            self.exited.set_result(returncode)

    def _drain_output(self) -> None:
        if self._output is not None:
            self._output.drain()

    # -- invoke ----------------------------------------------------------

    async def invoke(self, invocation: Invocation) -> Outcome:
        """Run one invocation; the environment is DEAD afterwards if it had to be killed."""
        self.state = State.BUSY
        self.current = invocation
        self.invocations += 1
        timeout = self.config.timeout
        invocation.started = time.perf_counter()
        deadline_ms = int(time.time() * 1000) + timeout * 1000
        request_id = invocation.request_id

        # The runtime's exit or the timeout ends the call through abort().
        # Awaiting the call in this task, with callbacks instead of
        # asyncio.wait() on a second task, saves a task and two event loop
        # turns per invocation.
        timed_out = False

        def on_timeout() -> None:
            nonlocal timed_out
            timed_out = True
            self._api.abort(request_id)

        def on_exit(_: object) -> None:
            self._api.abort(request_id)

        timer = asyncio.get_running_loop().call_later(timeout, on_timeout)
        self.exited.add_done_callback(on_exit)
        try:
            outcome = await self._api.invoke(request_id, invocation.event, deadline_ms, _trace_id())
        except InvocationAbortedError:
            if not (timed_out or self.exited.done()):
                raise
            outcome = None
        finally:
            timer.cancel()
            self.exited.remove_done_callback(on_exit)
        duration_ms = (time.perf_counter() - invocation.started) * 1000
        if outcome is not None:
            self._drain_output()
            self.current = None
            self.state = State.IDLE
            self.idle_since = time.monotonic()
            return Outcome(
                response=outcome.response,
                error_type=outcome.error_type,
                error_message=outcome.error_message,
                error_body=outcome.error_body,
                duration_ms=duration_ms,
            )
        if self.exited.done():
            message = describe_exit(cast(int, self.exited.result()))
            error_type = ERROR_EXIT
            if self.oom:
                error_type = ERROR_OUT_OF_MEMORY
                message = f"{message} (the environment used more than {self.config.memory} MB)"
            await self._finish(kill=True)
            return Outcome(None, error_type, message, None, duration_ms)
        await self.stop(graceful=False)
        return Outcome(
            None,
            ERROR_TIMEOUT,
            f"Task timed out after {timeout:.2f} seconds",
            None,
            duration_ms,
            timed_out=True,
        )

    # -- memory ----------------------------------------------------------

    def measure(self) -> int:
        """Sample the tree's resident memory, record the peak, return the sample."""
        if self._process is None or self.state in (State.DEAD, State.STOPPING):
            return 0
        pids = proctree.tree_pids(self._process.pid, self._known_pids)
        self._known_pids = pids
        rss = proctree.rss_bytes(pids)
        self.peak_rss = max(self.peak_rss, rss)
        return rss

    def max_memory_used_mb(self) -> int:
        """Return the peak memory for REPORT, in MB.

        The sampler can miss a short spike, so the root process's own
        kernel-kept peak (VmHWM) is taken into account too.
        """
        peak = max(self.peak_rss, proctree.peak_rss_bytes(self._status_fd))
        return max(1, -(-peak // (1024 * 1024)))

    def kill_for_memory(self) -> None:
        """Kill the tree now because it passed the memory limit."""
        self.oom = True
        if self._process is not None:
            pids = proctree.tree_pids(self._process.pid, self._known_pids)
            proctree.signal_pids(pids, signal.SIGKILL)

    # -- stop ------------------------------------------------------------

    async def stop(self, *, graceful: bool = True) -> None:
        """Stop the process tree (SIGTERM then SIGKILL, or SIGKILL at once) and the server."""
        if self.state is State.DEAD:
            return
        self.state = State.STOPPING
        if self._process is not None and not self.exited.done() and graceful:
            # Send the runtime its SIGTERM while its Runtime API still responds.
            await proctree.stop_tree(
                self._process.pid,
                self._known_pids,
                term_timeout=STOP_TERM_TIMEOUT,
                kill_timeout=STOP_KILL_TIMEOUT,
                label=self.label,
            )
        await self._finish(kill=True)

    async def _finish(self, *, kill: bool) -> None:
        if kill and self._process is not None:
            await proctree.stop_tree(
                self._process.pid,
                self._known_pids,
                graceful=False,
                kill_timeout=STOP_KILL_TIMEOUT,
                label=self.label,
            )
            if not self.exited.done():
                await asyncio.wait({self.exited}, timeout=STOP_KILL_TIMEOUT)
        if self._output is not None:
            self._output.close()
        if self._status_fd >= 0:
            os.close(self._status_fd)
            self._status_fd = -1
        if self._exit_watch >= 0:
            self._loop.remove_reader(self._exit_watch)
            os.close(self._exit_watch)
            self._exit_watch = -1
            if self._process is not None and not self.exited.done():
                self.exited.set_result(self._process.wait())
                RUNTIME_PIDS.discard(self._process.pid)
        if not self.exited.done():
            self.exited.set_result(0)
        await self._api.close()
        self.state = State.DEAD
        self.current = None
