"""Run the image's entrypoint (docker/entrypoint.sh) outside Docker, as a real process.

`running_entrypoint()` starts the script with the variables that replace
the container's values (project directory, address, port) and waits for
the banner that names the ports. On exit it stops the emulator with
SIGTERM, as `docker stop` does, and checks that no process of it is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO_ROOT / "docker"
ENTRYPOINT = DOCKER_DIR / "entrypoint.sh"
HEALTHCHECK = DOCKER_DIR / "healthcheck.py"
WS_CLIENT = DOCKER_DIR / "ws_client.py"
CHAT_EXAMPLE = REPO_ROOT / "examples" / "chat"

# Seconds for the emulator to print its banner (it starts every worker
# first), and for it to exit after SIGTERM (its shutdown timeout is 5 s).
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0

_WEBSOCKET_URL = re.compile(r"WebSocket URL:\s+ws://(\S+):(\d+)")
_INTERNAL_PORT = re.compile(r"Internal port:\s+(\d+)")


@dataclass
class ServerProcess:
    """An emulator started by the entrypoint, with the output read so far."""

    process: asyncio.subprocess.Process
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    host: str = ""
    port: int = 0
    internal_port: int = 0
    returncode: int | None = None

    @property
    def log(self) -> str:
        return "\n".join(self.stderr)

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"


def entrypoint_environ(**variables: str) -> dict[str, str]:
    """Return this process's environment with `variables` set, for the entrypoint.

    The entrypoint runs `python3` from PATH, as in the image; the directory
    of the interpreter running the tests comes first, so that is the one
    with the emulator installed. Polling is left to each test.
    """
    environ = dict(os.environ)
    environ.pop("WATCHFILES_FORCE_POLLING", None)
    environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), environ.get("PATH", "")])
    environ.update(variables)
    return environ


async def _collect(stream: asyncio.StreamReader | None, lines: list[str]) -> None:
    assert stream is not None
    while line := await stream.readline():
        lines.append(line.decode(errors="replace").rstrip("\n"))


async def _read_banner(server: ServerProcess) -> None:
    """Read stdout until the banner has named both ports; fail if it ends first."""
    stream = server.process.stdout
    assert stream is not None
    while not (server.port and server.internal_port):
        line = await stream.readline()
        if not line:
            await server.process.wait()
            stdout = "\n".join(server.stdout)
            pytest.fail(
                f"the entrypoint exited with {server.process.returncode} before its banner\n"
                f"stdout:\n{stdout}\nstderr:\n{server.log}"
            )
        text = line.decode(errors="replace").rstrip("\n")
        server.stdout.append(text)
        if url := _WEBSOCKET_URL.search(text):
            server.host = url.group(1)
            server.port = int(url.group(2))
        elif internal := _INTERNAL_PORT.search(text):
            server.internal_port = int(internal.group(1))


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


async def stop(server: ServerProcess) -> int:
    """Send SIGTERM, as `docker stop` does, and return the exit status."""
    if server.returncode is not None:
        return server.returncode
    if server.process.returncode is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        server.returncode = await asyncio.wait_for(server.process.wait(), STOP_TIMEOUT)
    except asyncio.TimeoutError:
        server.process.kill()
        await server.process.wait()
        pytest.fail(f"the emulator did not exit within {STOP_TIMEOUT} s of SIGTERM\n{server.log}")
    return server.returncode


@contextlib.asynccontextmanager
async def running_entrypoint(
    arguments: Sequence[str], environ: dict[str, str], *, prefix: Sequence[str] = ()
) -> AsyncIterator[ServerProcess]:
    """Run `sh docker/entrypoint.sh ARGUMENTS` with `environ` until the block ends.

    `prefix` goes before `sh`, such as `ip netns exec NAME`, which must
    exec the script in its own process so that signals reach the emulator.
    """
    process = await asyncio.create_subprocess_exec(
        *prefix,
        "sh",
        str(ENTRYPOINT),
        *arguments,
        env=environ,
        cwd=REPO_ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    server = ServerProcess(process)
    readers = [asyncio.create_task(_collect(process.stderr, server.stderr))]
    tree: list[psutil.Process] = []
    try:
        await asyncio.wait_for(_read_banner(server), START_TIMEOUT)
        readers.append(asyncio.create_task(_collect(process.stdout, server.stdout)))
        tree = _descendants(process.pid)
        yield server
    finally:
        tree += _descendants(process.pid)
        await stop(server)
        await asyncio.gather(*readers, return_exceptions=True)
        _, alive = psutil.wait_procs(tree, timeout=5)
        for leftover in alive:
            leftover.kill()
        assert not alive, f"processes left behind after the emulator stopped: {alive}"


async def run_script(
    *command: str, environ: dict[str, str] | None = None, timeout: float = 30.0
) -> tuple[int, str, str]:
    """Run a command to its end; return its exit status, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        *command,
        env=environ,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"{command} did not finish within {timeout} s")
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()
