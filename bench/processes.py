"""Start and stop the servers a benchmark measures: the emulator and the baseline."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import psutil

BENCH_APP = Path(__file__).resolve().parent / "app"
_URL = re.compile(rb"WebSocket URL:\s+(ws://\S+)")
_PORT = re.compile(rb"^port (\d+)$")


@dataclass
class Server:
    """A server process under measurement."""

    process: asyncio.subprocess.Process
    url: str
    started_at: float
    ready_at: float

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_bytes(self) -> int:
        return int(psutil.Process(self.pid).memory_info().rss)


def raise_file_limit() -> int:
    """Raise this process's open-file limit to its hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def _read_until(stream: asyncio.StreamReader, pattern: re.Pattern[bytes]) -> bytes:
    while True:
        line = await stream.readline()
        if not line:
            raise RuntimeError("the server exited before it printed its address")
        match = pattern.search(line.strip())
        if match:
            return match.group(1)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 20)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()


@contextlib.asynccontextmanager
async def emulator(
    project: Path = BENCH_APP, log_path: Path | None = None, *extra: str
) -> AsyncIterator[Server]:
    """Run `python -m emulator` on `project`; its log goes to `log_path` (or nowhere)."""
    env = dict(os.environ, ARC_INTERNAL_PORT="0")
    log = open(log_path or os.devnull, "wb")  # noqa: SIM115 - closed below
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "emulator",
        str(project),
        "--port",
        "0",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
        env=env,
    )
    try:
        assert process.stdout is not None
        url = (await asyncio.wait_for(_read_until(process.stdout, _URL), 60)).decode()
        yield Server(process, url, started, time.perf_counter())
    finally:
        await _stop(process)
        log.close()


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[Server]:
    """Run the baseline echo server."""
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.echo_server", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        port = (await asyncio.wait_for(_read_until(process.stdout, _PORT), 60)).decode()
        yield Server(process, f"ws://127.0.0.1:{port}", started, time.perf_counter())
    finally:
        await _stop(process)
