"""Entry point of a worker process: `python -m emulator.worker --fd N`.

The gateway starts one worker per function and passes it one end of a
Unix socket pair. The worker waits for CONFIGURE, replies with HELLO, then runs
INVOKE messages concurrently until SHUTDOWN or the end of the stream.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
from pathlib import Path

import runtime_shim
from emulator.ipc.channel import Channel
from emulator.ipc.framing import FrameError
from emulator.ipc.messages import Hello, Invoke, Log, Result, Shutdown, Status, WorkerConfig
from emulator.logs import configure_logging
from emulator.worker import proctree
from emulator.worker.pool import FunctionPool

logger = logging.getLogger("emulator.worker")

RUNTIME_DIR = Path(runtime_shim.__file__).resolve().parent


class Worker:
    """Connects one function's pool to the gateway's channel."""

    def __init__(self, channel: Channel, runtime_dir: Path) -> None:
        self._channel = channel
        self._runtime_dir = runtime_dir
        self._pool: FunctionPool | None = None
        self._retiring: set[FunctionPool] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        try:
            await self._serve()
        except FrameError as error:
            logger.error("worker %d: broken channel to the gateway: %s", os.getpid(), error)
        finally:
            pools = [*self._retiring, *([self._pool] if self._pool else [])]
            await asyncio.gather(*(pool.stop() for pool in pools))
            for task in list(self._tasks):
                task.cancel()

    async def _serve(self) -> None:
        while True:
            message = await self._channel.receive()
            if message is None or isinstance(message, Shutdown):
                return
            if isinstance(message, Invoke):
                self._start_invocation(message)
            elif isinstance(message, WorkerConfig):
                self._configure(message)
            else:
                raise FrameError(f"unexpected {type(message).__name__} message from the gateway")

    def _configure(self, config: WorkerConfig) -> None:
        """Start a pool for `config`; a reload retires the previous pool."""
        previous = self._pool
        self._pool = FunctionPool(config, self._send_log, self._runtime_dir, self._send_status)
        self._pool.start()
        if previous is None:
            self._channel.send(Hello(pid=os.getpid(), route=config.route))
        else:
            # Retire in the background, so that invocations reach the new
            # pool while the old one waits for its busy environments.
            self._retiring.add(previous)
            task = asyncio.ensure_future(previous.retire())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(lambda _: self._retiring.discard(previous))

    def _start_invocation(self, message: Invoke) -> None:
        task = asyncio.ensure_future(self._invoke(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _invoke(self, message: Invoke) -> None:
        result: Result | None = None
        try:
            while result is None:
                if self._pool is None:
                    raise FrameError("INVOKE before CONFIGURE")
                # None: the pool was replaced by a reload before the invocation
                # started, so it runs on the new pool.
                result = await self._pool.invoke(message.id, message.event)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            # The gateway waits for a RESULT for every INVOKE, so a failure
            # of the worker itself still sends one.
            logger.exception("invocation %d failed in the worker", message.id)
            result = Result(message.id, "", None, "Runtime.Unknown", f"worker error: {error}")
        self._send_log(result)

    def _send_log(self, message: Log | Status | Result) -> None:
        if self._channel.closing:
            return
        try:
            self._channel.send(message)
        except FrameError as error:
            logger.error("dropped a %s message: %s", type(message).__name__, error)

    def _send_status(self) -> None:
        """Tell the gateway which environments run, across the current and retiring pools."""
        pools = [*self._retiring, *([self._pool] if self._pool else [])]
        environments = [env for pool in pools for env in pool.environments]
        status = Status(
            environments=len(environments),
            busy=sum(pool.busy for pool in pools),
            queued=sum(pool.queued for pool in pools),
            sessions=[env.pid for env in environments if env.pid is not None],
        )
        self._send_log(status)


class ChannelLogHandler(logging.Handler):
    """Sends the worker's own log records to the gateway, which logs them as its own."""

    def __init__(self, channel: Channel) -> None:
        super().__init__()
        self._channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        if self._channel.closing:
            return
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        self._channel.send(
            Log(lines=message.splitlines(), level=record.levelname, logger=record.name)
        )


async def _main(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    channel = await Channel.open(sock)
    # From here on, the worker's records reach the gateway's log.
    logging.getLogger("emulator").handlers[:] = [ChannelLogHandler(channel)]
    worker = Worker(channel, RUNTIME_DIR)
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    # SIGTERM from the gateway's escalation: stop the environments first.
    serve = asyncio.ensure_future(worker.run())
    loop.add_signal_handler(signal.SIGTERM, serve.cancel)
    # Ctrl+C reaches the whole foreground process group; the gateway
    # decides when workers stop, so the worker ignores SIGINT.
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    with contextlib.suppress(asyncio.CancelledError):
        await serve
    channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m emulator.worker")
    parser.add_argument("--fd", type=int, required=True, help="socket file descriptor")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    configure_logging(getattr(logging, args.log_level, logging.INFO))
    proctree.become_subreaper()
    asyncio.run(_main(args.fd))


if __name__ == "__main__":
    main()
