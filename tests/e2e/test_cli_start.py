"""`python -m emulator PROJECT` as a real subprocess: its banner, a clean stop, a busy port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil
import pytest
from websockets.asyncio.client import connect as websockets_connect

from tests.e2e.conftest import Project
from tests.e2e.test_exec_support import wait_gone, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]

# Seconds the CLI gets to print its banner, and to exit after a signal.
START_TIMEOUT = 30.0
EXIT_TIMEOUT = 20.0

WHOAMI_HANDLER = """
import json

def handler(event, context):
    return {"statusCode": 200, "body": json.dumps({
        "connectionId": event["requestContext"]["connectionId"],
    })}
"""

# Appends each `$disconnect` to the file named by DISCONNECT_LOG (from `.env`).
DISCONNECT_HANDLER = """
import json, os

def handler(event, context):
    request_context = event["requestContext"]
    record = {
        "connectionId": request_context["connectionId"],
        "code": request_context["disconnectStatusCode"],
    }
    with open(os.environ["DISCONNECT_LOG"], "a") as file:
        file.write(json.dumps(record) + "\\n")
    return {"statusCode": 200}
"""


@dataclass
class Cli:
    """A running `python -m emulator` and what it has printed."""

    process: asyncio.subprocess.Process
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def stderr_text(self) -> str:
        return "".join(self.stderr)


def _cli_environ(**overrides: str) -> dict[str, str]:
    environ = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PORT", "ARC_HTTP_PORT", "ARC_INTERNAL_PORT")
    }
    environ["PYTHONPATH"] = str(REPO_ROOT)
    environ.update(overrides)
    return environ


async def _spawn(root: Path, *arguments: str, **environ: str) -> Cli:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "emulator",
        str(root),
        *arguments,
        cwd=REPO_ROOT,
        env=_cli_environ(**environ),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    cli = Cli(process)
    assert process.stderr is not None
    cli.readers.append(asyncio.ensure_future(_collect(process.stderr, cli.stderr)))
    return cli


async def _collect(stream: asyncio.StreamReader, lines: list[str]) -> None:
    async for line in stream:
        lines.append(line.decode("utf-8", "replace"))


async def _read_banner(cli: Cli, route_count: int) -> None:
    """Read stdout up to the last row of the route table."""
    stdout = cli.process.stdout
    assert stdout is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    rows_after_header = -1
    while rows_after_header < route_count:
        remaining = max(0.0, deadline - loop.time())
        line = (await asyncio.wait_for(stdout.readline(), remaining)).decode()
        if not line:
            raise AssertionError(f"the emulator exited early:\n{cli.stderr_text}")
        cli.stdout.append(line.rstrip("\n"))
        if line.startswith("ROUTE"):
            rows_after_header = 0
        elif rows_after_header >= 0:
            rows_after_header += 1
    # Keep reading stdout so that the pipe never fills up.
    cli.readers.append(asyncio.ensure_future(_collect(stdout, cli.stdout)))


@contextlib.asynccontextmanager
async def _running_cli(root: Path, *arguments: str, **environ: str) -> AsyncIterator[Cli]:
    cli = await _spawn(root, *arguments, **environ)
    try:
        yield cli
    finally:
        if cli.process.returncode is None:
            cli.process.kill()
            await cli.process.wait()
        await asyncio.gather(*cli.readers, return_exceptions=True)


def _write_project(project: Project, disconnect_log: Path) -> None:
    project.handler("default", WHOAMI_HANDLER)
    project.handler("disconnect", DISCONNECT_HANDLER)
    project.write()
    (project.root / ".env").write_text(f"DISCONNECT_LOG={disconnect_log}\n")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_stops_cleanly(
    project: Project, tmp_path: Path, stop_signal: signal.Signals
) -> None:
    disconnect_log = tmp_path / "disconnects.jsonl"
    _write_project(project, disconnect_log)

    async with _running_cli(
        project.root, "--port", "0", "--route-responses", ARC_INTERNAL_PORT="0"
    ) as cli:
        await _read_banner(cli, route_count=3)
        banner = "\n".join(cli.stdout)
        assert "testapp" in cli.stdout[0]
        url_match = re.search(r"WebSocket URL:\s+(ws://127\.0\.0\.1:(\d+))\s*$", banner, re.M)
        internal_match = re.search(r"Internal port:\s+(\d+)\s*$", banner, re.M)
        assert url_match is not None, banner
        assert internal_match is not None, banner
        url, internal_port = url_match.group(1), int(internal_match.group(1))
        assert int(url_match.group(2)) != 0
        assert internal_port != 0
        for route in ("connect", "default", "disconnect"):
            assert re.search(rf"^\${route}\s+src/ws/{route}\s+python3\.11\s", banner, re.M), route

        # The internal port serves Architect's management API path.
        async with aiohttp.ClientSession() as session:
            probe = f"http://127.0.0.1:{internal_port}/_arc/ws/@connections/unknown%3D"
            async with session.get(probe) as response:
                assert response.status == 410

        # Every worker has its prewarmed environment, so the tree is complete.
        root_process = psutil.Process(cli.process.pid)
        await wait_until(
            lambda: len(root_process.children(recursive=True)) >= 6, "3 workers and 3 runtimes"
        )
        tree = [root_process, *root_process.children(recursive=True)]

        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(url) as first,
            websockets_connect(url, open_timeout=15) as second,
        ):
            await first.send_str("whoami")
            first_id = json.loads(await first.receive_str(timeout=15))["connectionId"]
            await second.send("whoami")
            second_reply = await asyncio.wait_for(second.recv(), 15)
            second_id = json.loads(second_reply)["connectionId"]

            os.kill(cli.process.pid, stop_signal)

            closing = await first.receive(timeout=EXIT_TIMEOUT)
            assert closing.type is aiohttp.WSMsgType.CLOSE
            assert first.close_code == 1001
            await asyncio.wait_for(second.wait_closed(), EXIT_TIMEOUT)
            assert second.close_code == 1001

        returncode = await asyncio.wait_for(cli.process.wait(), EXIT_TIMEOUT)

    assert returncode == 0, cli.stderr_text
    assert "Traceback" not in cli.stderr_text
    await wait_gone(tree, timeout=5)

    records = [json.loads(line) for line in disconnect_log.read_text().splitlines()]
    assert sorted(record["connectionId"] for record in records) == sorted([first_id, second_id])
    assert all(record["code"] == 1001 for record in records)


@pytest.mark.parametrize(
    ("busy_option", "message_names"),
    [("--port", "--port"), ("ARC_INTERNAL_PORT", "ARC_INTERNAL_PORT")],
)
async def test_port_in_use_fails_at_startup(
    project: Project, busy_option: str, message_names: str
) -> None:
    project.handler("default", WHOAMI_HANDLER)
    project.write()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        if busy_option == "--port":
            arguments, environ = ["--port", port], {"ARC_INTERNAL_PORT": "0"}
        else:
            arguments, environ = ["--port", "0"], {"ARC_INTERNAL_PORT": port}

        async with _running_cli(project.root, *arguments, **environ) as cli:
            returncode = await asyncio.wait_for(cli.process.wait(), START_TIMEOUT)
            await asyncio.gather(*cli.readers)
            assert cli.process.stdout is not None
            stdout = (await cli.process.stdout.read()).decode()

    assert returncode != 0
    assert port in cli.stderr_text
    assert message_names in cli.stderr_text
    assert "Traceback" not in cli.stderr_text + stdout
