"""The image's entrypoint, health check and client script, run outside Docker on 127.0.0.1.

No Docker engine runs here, so these tests run docker/entrypoint.sh itself
with the variables that replace the container's values: the project
directory (/app in the image), the address (0.0.0.0) and the port (3333).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import textwrap
import time
from pathlib import Path

import aiohttp
import pytest
from websockets.asyncio.client import connect

from tests.docker.servers import (
    CHAT_EXAMPLE,
    ENTRYPOINT,
    HEALTHCHECK,
    WS_CLIENT,
    entrypoint_environ,
    run_script,
    running_entrypoint,
    stop,
)

pytestmark = pytest.mark.timeout(90)

NETWORK_WARNING = "reachable from the network"


def _loopback_environ(project: Path, **variables: str) -> dict[str, str]:
    return entrypoint_environ(
        EMULATOR_PROJECT_DIR=str(project), EMULATOR_HOST="127.0.0.1", EMULATOR_PORT="0", **variables
    )


def _remove_chat_database(port: int) -> None:
    # The chat example keeps its members in an SQLite file named after the port.
    database = Path(tempfile.gettempdir()) / f"chat-{port}.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)


async def test_entrypoint_container_defaults(tmp_path: Path) -> None:
    # A stand-in python3 prints the arguments it gets, so the defaults can be
    # read without listening on 0.0.0.0.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_python = bin_dir / "python3"
    fake_python.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake_python.chmod(0o755)
    environ = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}

    status, stdout, stderr = await run_script(
        "sh", str(ENTRYPOINT), "--watch-polling", environ=environ
    )

    assert status == 0, stderr
    assert stdout.splitlines() == [
        "-m",
        "emulator",
        "start",
        "/app",
        "--host",
        "0.0.0.0",
        "--port",
        "3333",
        "--watch-polling",
    ]


async def test_entrypoint_serves_chat_example() -> None:
    environ = _loopback_environ(CHAT_EXAMPLE)
    port = 0
    try:
        async with running_entrypoint(["--internal-port", "0"], environ) as server:
            port = server.port
            assert server.host == "127.0.0.1"

            # The health endpoint, directly and through the image's health check.
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{server.http_url}/_emulator/health") as response,
            ):
                assert response.status == 200
                health = await response.json()
            assert health["status"] == "ok"
            assert health["app"] == "chat"
            check_environ = entrypoint_environ(EMULATOR_PORT=str(port))
            status, stdout, stderr = await run_script(
                "python3", str(HEALTHCHECK), environ=check_environ
            )
            assert status == 0, stderr
            assert "healthy" in stdout

            # A WebSocket round trip: `send` broadcasts to everyone, the sender too.
            async with connect(f"{server.url}/?name=ada", open_timeout=10) as ada:
                await ada.send(json.dumps({"action": "send", "text": "hello"}))
                reply = json.loads(await asyncio.wait_for(ada.recv(), 15))
            assert reply == {"event": "message", "from": "ada", "text": "hello"}

            # The tests service's client script, pointed at this emulator.
            message = json.dumps({"action": "send", "text": "from the client script"})
            status, stdout, stderr = await run_script(
                "python3",
                str(WS_CLIENT),
                "--url",
                f"{server.url}/?name=tests",
                message,
                environ=check_environ,
            )
            assert status == 0, stderr
            expected = {"event": "message", "from": "tests", "text": "from the client script"}
            assert f"< {json.dumps(expected)}" in stdout

            # Without ?name=, the chat's $connect rejects the client: the script fails.
            status, _, stderr = await run_script(
                "python3", str(WS_CLIENT), "--url", f"{server.url}/", "x", environ=check_environ
            )
            assert status == 1
            assert "handshake" in stderr

            assert await stop(server) == 0
            assert NETWORK_WARNING not in server.log
            assert "stopped" in server.log

        # Once the emulator has stopped, the health check reports it.
        status, _, stderr = await run_script("python3", str(HEALTHCHECK), environ=check_environ)
        assert status == 1
        assert "unhealthy" in stderr
    finally:
        if port:
            _remove_chat_database(port)


ENV_HANDLER = """
import os

def handler(event, context):
    return {"statusCode": 200, "body": os.environ.get("GREETING", "GREETING is not set")}
"""

OK_HANDLER = """
def handler(event, context):
    return {"statusCode": 200}
"""


def _write_project(root: Path, default_handler: str) -> None:
    root.mkdir(parents=True)
    (root / "app.arc").write_text("@app\nenvapp\n\n@ws\n\n@aws\nruntime python3.11\n")
    for route, source in (
        ("connect", OK_HANDLER),
        ("default", default_handler),
        ("disconnect", OK_HANDLER),
    ):
        directory = root / "src" / "ws" / route
        directory.mkdir(parents=True)
        (directory / "lambda.py").write_text(textwrap.dedent(source))


async def test_entrypoint_reads_project_env_file(tmp_path: Path) -> None:
    # In the container the project's .env arrives with the mount; Compose
    # passes nothing for it. Extra arguments reach the emulator's options.
    project = tmp_path / "project"
    _write_project(project, ENV_HANDLER)
    (project / ".env").write_text("GREETING=hello from .env\n")

    environ = _loopback_environ(project)
    async with (
        running_entrypoint(["--internal-port", "0", "--route-responses"], environ) as server,
        connect(server.url, open_timeout=10) as client,
    ):
        await client.send("anything")
        assert await asyncio.wait_for(client.recv(), 15) == "hello from .env"


def _inotify_count(pid: int) -> int:
    """Count the inotify instances that process `pid` has open."""
    fd_dir = Path(f"/proc/{pid}/fd")
    count = 0
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed since the listing
        if target == "anon_inode:inotify":
            count += 1
    return count


VERSIONED_HANDLER = """
def handler(event, context):
    return {"statusCode": 200, "body": "@VERSION@"}
"""

# Seconds to wait for an edit to show; polling scans every 300 ms.
RELOAD_TIMEOUT = 15.0


async def _wait_for_reply(url: str, expected: str) -> None:
    """Send messages until one gets `expected` back, within RELOAD_TIMEOUT."""
    async with connect(url, open_timeout=10) as client:
        deadline = asyncio.get_running_loop().time() + RELOAD_TIMEOUT
        while True:
            await client.send("version?")
            reply = await asyncio.wait_for(client.recv(), 15)
            if reply == expected:
                return
            assert asyncio.get_running_loop().time() < deadline, (
                f"still {reply!r} after {RELOAD_TIMEOUT} s, expected {expected!r}"
            )
            # A message per 50 ms is enough while the reload runs.
            await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("force_polling", "polling"),
    [("true", True), ("1", True), ("false", False), ("", False)],
)
async def test_reload_with_force_polling_variable(
    tmp_path: Path, force_polling: str, polling: bool
) -> None:
    # Compose sets WATCHFILES_FORCE_POLLING; polling means no inotify instance.
    project = tmp_path / "project"
    _write_project(project, VERSIONED_HANDLER.replace("@VERSION@", "one"))
    handler = project / "src" / "ws" / "default" / "lambda.py"
    # watchfiles' polling watcher compares modification times in whole
    # seconds (watchfiles 1.3), so an edit within the same second as the
    # file's creation would go unseen: date the first version back.
    earlier = time.time() - 5
    os.utime(handler, (earlier, earlier))

    environ = _loopback_environ(project, WATCHFILES_FORCE_POLLING=force_polling)
    async with running_entrypoint(["--internal-port", "0", "--route-responses"], environ) as server:
        await _wait_for_reply(server.url, "one")
        if polling:
            assert _inotify_count(server.process.pid) == 0
        else:
            assert _inotify_count(server.process.pid) >= 1

        handler.write_text(textwrap.dedent(VERSIONED_HANDLER.replace("@VERSION@", "two")))
        await _wait_for_reply(server.url, "two")
    assert "changed: src/ws/default/lambda.py" in server.log
