"""One worker subprocess, seen from the gateway: spawn, talk, replace, stop."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable

import psutil

from emulator.invocation import ERROR_EXIT
from emulator.ipc.channel import Channel
from emulator.ipc.framing import FrameError
from emulator.ipc.messages import Hello, Invoke, Log, Result, Shutdown, Status, WorkerConfig

logger = logging.getLogger(__name__)

# Seconds a worker gets to send HELLO after it starts.
HELLO_TIMEOUT = 30.0
# A worker gets this long to stop its environments after SHUTDOWN, then
# SIGTERM, then SIGKILL, each with the same deadline.
STOP_TIMEOUT = 6.0
# Restarts of a worker that keeps dying are spaced out, doubling up to this.
MAX_RESTART_DELAY = 10.0

LogHandler = Callable[[str, Log], None]
# Called with the route and every RESULT, awaited or not, before its caller sees it.
ResultHandler = Callable[[str, Result], None]


class WorkerProcess:
    """A worker subprocess running the environments of one function."""

    config: WorkerConfig
    pid: int | None
    status: Status

    def __init__(
        self, config: WorkerConfig, on_log: LogHandler, on_result: ResultHandler | None = None
    ) -> None:
        self.config = config
        self.pid = None
        self.status = Status(environments=0, busy=0, queued=0)
        self._on_log = on_log
        self._on_result = on_result
        self._process: asyncio.subprocess.Process | None = None
        self._channel: Channel | None = None
        self._pending: dict[int, asyncio.Future[Result]] = {}
        self._ids = itertools.count(1)
        self._ready: asyncio.Future[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._restarting: asyncio.Task[None] | None = None
        self._stopping = False
        self._restart_delay = 0.5

    @property
    def route(self) -> str:
        return self.config.route

    async def start(self) -> None:
        """Spawn the worker and wait until it has taken its configuration."""
        loop = asyncio.get_running_loop()
        if self._ready is None or self._ready.done():
            self._ready = loop.create_future()
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "emulator.worker",
                "--fd",
                str(child_sock.fileno()),
                "--log-level",
                logging.getLevelName(logging.getLogger("emulator").getEffectiveLevel()),
                pass_fds=(child_sock.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            child_sock.close()
        self.pid = self._process.pid
        self._channel = await Channel.open(parent_sock)
        self._channel.send(self.config)
        self._reader = asyncio.ensure_future(self._read(self._channel, self._process))
        await asyncio.wait_for(asyncio.shield(self._ready), HELLO_TIMEOUT)
        logger.debug("worker %d for route %s started", self.pid, self.route)

    async def invoke(self, event: bytes) -> Result:
        ready = self._ready
        if ready is not None and not ready.done():
            # Wait for a worker that is starting or replacing one that died.
            # If it fails to start, its channel is closed by then.
            await asyncio.wait({ready})
        channel = self._channel
        if channel is None or channel.closing:
            return Result(0, "", None, ERROR_EXIT, "the function's worker process is not running")
        invocation_id = next(self._ids)
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending[invocation_id] = future
        try:
            channel.send(Invoke(id=invocation_id, event=event))
            return await future
        finally:
            self._pending.pop(invocation_id, None)

    def configure(self, config: WorkerConfig) -> None:
        """Send a new configuration; the worker replaces its environments."""
        self.config = config
        if self._channel is not None and not self._channel.closing:
            self._channel.send(config)

    async def _read(self, channel: Channel, process: asyncio.subprocess.Process) -> None:
        try:
            while True:
                message = await channel.receive()
                if message is None:
                    break
                if isinstance(message, Result):
                    if message.lines:
                        self._on_log(
                            self.route, Log(lines=message.lines, request_id=message.request_id)
                        )
                    if self._on_result is not None:
                        self._on_result(self.route, message)
                    future = self._pending.get(message.id)
                    if future is not None and not future.done():
                        future.set_result(message)
                elif isinstance(message, Log) and message.logger is not None:
                    _relay_worker_record(message)
                elif isinstance(message, Log):
                    self._on_log(self.route, message)
                elif isinstance(message, Hello):
                    self._restart_delay = 0.5
                    if self._ready is not None and not self._ready.done():
                        self._ready.set_result(None)
                elif isinstance(message, Status):
                    self.status = message
        except (FrameError, ConnectionError) as error:
            logger.error(
                "worker %s for route %s: broken channel: %s", process.pid, self.route, error
            )
        channel.close()
        returncode = await process.wait()
        if self.status.sessions:
            await _stop_sessions(self.status.sessions, self.route)
            self.status = Status(environments=0, busy=0, queued=0)
        self._fail_pending(returncode)
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(
                RuntimeError(f"worker for route {self.route} exited with status {returncode}")
            )
        if not self._stopping:
            # Invocations that arrive until the replacement is ready wait for it.
            self._ready = asyncio.get_running_loop().create_future()
            self._restarting = asyncio.ensure_future(self._restart(returncode))

    def _fail_pending(self, returncode: int) -> None:
        message = f"the function's worker process exited ({_describe(returncode)})"
        for invocation_id, future in list(self._pending.items()):
            if not future.done():
                result = Result(invocation_id, "", None, ERROR_EXIT, message)
                if self._on_result is not None:
                    self._on_result(self.route, result)
                future.set_result(result)

    async def _restart(self, returncode: int) -> None:
        logger.warning(
            "worker %s for route %s exited (%s); restarting it in %.1f s",
            self.pid,
            self.route,
            _describe(returncode),
            self._restart_delay,
        )
        ready = self._ready
        await asyncio.sleep(self._restart_delay)
        self._restart_delay = min(self._restart_delay * 2, MAX_RESTART_DELAY)
        try:
            if self._stopping:
                return
            await self.start()
        except (OSError, RuntimeError, asyncio.TimeoutError) as error:
            logger.error("worker for route %s failed to restart: %s", self.route, error)
        finally:
            # Wake the invocations that waited for this start. They fail
            # unless the worker is running.
            if ready is not None and not ready.done():
                ready.cancel()

    async def stop(self, *, drain: bool = False) -> None:
        """Ask the worker to stop its environments and exit, then escalate.

        With `drain`, invocations in flight first get up to the function's
        timeout to finish.
        """
        if drain and self._pending:
            await asyncio.wait(set(self._pending.values()), timeout=self.config.timeout + 1)
        self._stopping = True
        if self._ready is not None and not self._ready.done():
            # No replacement will start, so wake the invocations waiting for one.
            self._ready.cancel()
        if self._restarting is not None and not self._restarting.done():
            # A replacement may be waiting out its delay or starting: end
            # that, and stop the new process below if it was spawned.
            self._restarting.cancel()
            await asyncio.wait({self._restarting}, timeout=STOP_TIMEOUT)
        process = self._process
        if process is None or process.returncode is not None:
            return
        started = time.monotonic()
        if self._channel is not None and not self._channel.closing:
            try:
                self._channel.send(Shutdown())
                await self._channel.drain()
            except (ConnectionError, FrameError):
                pass
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                logger.warning(
                    "worker %d for route %s did not exit within %.1f s; sending %s",
                    process.pid,
                    self.route,
                    STOP_TIMEOUT,
                    sig.name,
                )
                try:
                    os.kill(process.pid, sig)
                except ProcessLookupError:
                    break
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
                break
            except asyncio.TimeoutError:
                continue
        if self._reader is not None:
            await asyncio.wait({self._reader}, timeout=1.0)
        logger.debug(
            "worker %d for route %s stopped in %.2f s",
            process.pid,
            self.route,
            time.monotonic() - started,
        )


def _relay_worker_record(log: Log) -> None:
    """Log a record the worker process logged, under its original logger name."""
    assert log.logger is not None
    level = logging.getLevelName(log.level)
    record_logger = logging.getLogger(log.logger)
    for line in log.lines:
        record_logger.log(level if isinstance(level, int) else logging.INFO, "%s", line)


async def _stop_sessions(sessions: list[int], route: str) -> None:
    """Kill what is left of the environments of a worker that died.

    A worker that is killed cannot stop its runtimes, and their process
    trees would run on, orphaned. Each runtime leads its own session, so
    every process still in one of those sessions belongs to them.
    """
    # The scan reads /proc for every process on the machine: off the loop.
    leftovers = await asyncio.to_thread(_kill_sessions, set(sessions))
    if leftovers:
        logger.warning(
            "route %s: killed %d leftover process(es) of the dead worker's environments",
            route,
            len(leftovers),
        )
        await asyncio.to_thread(psutil.wait_procs, leftovers, 2.0)


def _kill_sessions(sessions: set[int]) -> list[psutil.Process]:
    """Send SIGKILL to every process in `sessions`; return the processes signalled."""
    killed: list[psutil.Process] = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) in sessions:
                process.kill()
                killed.append(process)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return killed


def _describe(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"
