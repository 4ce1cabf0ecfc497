"""The network safety rules, tested with a real non-loopback peer.

The emulator runs in one network namespace on 192.0.2.1, through the
image's entrypoint, and the clients run in another on 192.0.2.2; a veth
pair joins the two. The test makes both namespaces and deletes them
afterwards, even when a test fails. Nothing is sent outside the two.

This machine's own interface may already use 192.0.2.0/24, as it does in
the sandbox these tests were written in. So the test adds no address to
the machine's own namespace. Each end of the veth pair lives in one of
the test's namespaces, where it is the only route.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import pytest

from tests.docker.servers import ServerProcess, entrypoint_environ, running_entrypoint

pytestmark = pytest.mark.timeout(90)

NAMESPACE_PREFIX = "arcws-"
SERVER_ADDRESS = "192.0.2.1"
PEER_ADDRESS = "192.0.2.2"
PREFIX_LENGTH = 24
NETNS_CLIENT = Path(__file__).with_name("netns_client.py")
# Seconds to wait for each line from a client in the peer namespace.
CLIENT_TIMEOUT = 15.0

NETWORK_WARNING = f"listening on {SERVER_ADDRESS}: the emulator is reachable from the network"
REMOTE_MANAGEMENT_WARNING = "remote management is allowed"


@dataclass(frozen=True)
class Namespaces:
    server: str
    peer: str


def _ip(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", *arguments], capture_output=True, text=True, timeout=10, check=False
    )


def _ip_or_fail(*arguments: str) -> None:
    result = _ip(*arguments)
    if result.returncode != 0:
        pytest.fail(
            f"`ip {' '.join(arguments)}` failed with exit status {result.returncode}: "
            f"{result.stderr.strip()}"
        )


def _remove_stale_namespaces() -> None:
    """Delete namespaces that an earlier run left behind when it was killed."""
    for line in _ip("netns", "list").stdout.splitlines():
        name = line.split(" ", 1)[0]
        owner = name.rsplit("-", 1)[-1]
        stale = owner.isdigit() and not psutil.pid_exists(int(owner))
        if name.startswith(NAMESPACE_PREFIX) and stale:
            _ip("netns", "del", name)


@pytest.fixture(scope="module")
def namespaces() -> Iterator[Namespaces]:
    """Make a server and a peer namespace joined by a veth pair; delete them afterwards."""
    if shutil.which("ip") is None:
        pytest.fail("the `ip` command is missing: install iproute2 (apt-get install -y iproute2)")
    _remove_stale_namespaces()
    pid = os.getpid()
    spaces = Namespaces(
        server=f"{NAMESPACE_PREFIX}server-{pid}", peer=f"{NAMESPACE_PREFIX}peer-{pid}"
    )
    try:
        _ip_or_fail("netns", "add", spaces.server)
        _ip_or_fail("netns", "add", spaces.peer)
        # Both ends are created inside the namespaces, never in this one.
        _ip_or_fail(
            "link", "add", "veth0", "netns", spaces.server,
            "type", "veth", "peer", "name", "veth1", "netns", spaces.peer,
        )  # fmt: skip
        for namespace, device, address in (
            (spaces.server, "veth0", SERVER_ADDRESS),
            (spaces.peer, "veth1", PEER_ADDRESS),
        ):
            _ip_or_fail("-n", namespace, "addr", "add", f"{address}/{PREFIX_LENGTH}", "dev", device)
            _ip_or_fail("-n", namespace, "link", "set", device, "up")
            # The emulator's workers serve the Runtime API on 127.0.0.1.
            _ip_or_fail("-n", namespace, "link", "set", "lo", "up")
        yield spaces
    finally:
        for namespace in (spaces.server, spaces.peer):
            _ip("netns", "del", namespace)


# Every message gets its own connection id back, as a route response.
ID_HANDLER = """
def handler(event, context):
    return {"statusCode": 200, "body": event["requestContext"]["connectionId"]}
"""

OK_HANDLER = """
def handler(event, context):
    return {"statusCode": 200}
"""


def _write_project(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "app.arc").write_text("@app\nnetapp\n\n@ws\n\n@aws\nruntime python3.11\n")
    for route, source in (
        ("connect", OK_HANDLER),
        ("default", ID_HANDLER),
        ("disconnect", OK_HANDLER),
    ):
        directory = root / "src" / "ws" / route
        directory.mkdir(parents=True)
        (directory / "lambda.py").write_text(textwrap.dedent(source))
    return root


@contextlib.asynccontextmanager
async def _server(spaces: Namespaces, project: Path, *options: str) -> AsyncIterator[ServerProcess]:
    """Run the image's entrypoint in the server namespace, listening on SERVER_ADDRESS."""
    environ = entrypoint_environ(
        EMULATOR_PROJECT_DIR=str(project), EMULATOR_HOST=SERVER_ADDRESS, EMULATOR_PORT="0"
    )
    arguments = ["--internal-port", "0", "--route-responses", *options]
    prefix = ["ip", "netns", "exec", spaces.server]
    async with running_entrypoint(arguments, environ, prefix=prefix) as server:
        assert server.host == SERVER_ADDRESS
        yield server


async def _peer_request(spaces: Namespaces, method: str, url: str, body: str = "") -> Any:
    """Send one HTTP request from the peer namespace; return status, error type and body."""
    command = ["ip", "netns", "exec", spaces.peer, sys.executable, str(NETNS_CLIENT)]
    command += ["request", method, url, *([body] if body else [])]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), CLIENT_TIMEOUT)
    assert process.returncode == 0, stderr.decode()
    return json.loads(stdout)


@dataclass
class PeerWebSocket:
    """A WebSocket client running in the peer namespace, driven through its stdin."""

    process: asyncio.subprocess.Process

    async def next_record(self) -> Any:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), CLIENT_TIMEOUT)
        if not line:
            assert self.process.stderr is not None
            stderr = await self.process.stderr.read()
            pytest.fail(f"the peer's WebSocket client exited: {stderr.decode()}")
        return json.loads(line)

    async def send(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")
        await self.process.stdin.drain()

    async def ask_connection_id(self) -> str:
        """Send a message; its route response is the connection id, the next frame."""
        await self.send("which connection is this?")
        record = await self.next_record()
        assert record["event"] == "frame", record
        return str(record["data"])


@contextlib.asynccontextmanager
async def _peer_websocket(spaces: Namespaces, url: str) -> AsyncIterator[PeerWebSocket]:
    command = ["ip", "netns", "exec", spaces.peer, sys.executable, str(NETNS_CLIENT)]
    process = await asyncio.create_subprocess_exec(
        *command,
        "websocket",
        url,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    client = PeerWebSocket(process)
    try:
        assert await client.next_record() == {"event": "open"}
        yield client
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), CLIENT_TIMEOUT)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()


def _management_urls(server: ServerProcess, connection_id: str) -> dict[str, str]:
    """The three paths of the management API, on both ports, for one connection."""
    encoded = quote(connection_id, safe="")
    return {
        "main": f"{server.http_url}/@connections/{encoded}",
        "staged": f"{server.http_url}/testing/@connections/{encoded}",
        "internal": f"http://{SERVER_ADDRESS}:{server.internal_port}/_arc/ws/@connections/{encoded}",
    }


async def test_remote_peer_rejected_by_default(namespaces: Namespaces, tmp_path: Path) -> None:
    project = _write_project(tmp_path / "project")
    async with (
        _server(namespaces, project) as server,
        _peer_websocket(namespaces, server.url) as client,
    ):
        connection_id = await client.ask_connection_id()

        # The health endpoint serves remote peers.
        health = await _peer_request(namespaces, "GET", f"{server.http_url}/_emulator/health")
        assert health["status"] == 200
        assert json.loads(health["body"])["status"] == "ok"

        # Every management API path, on both ports, rejects them.
        for name, url in _management_urls(server, connection_id).items():
            for method in ("POST", "GET", "DELETE"):
                body = "must not arrive" if method == "POST" else ""
                reply = await _peer_request(namespaces, method, url, body)
                assert reply["status"] == 403, (name, method, reply)
                assert reply["error_type"] == "ForbiddenException", (name, method, reply)
                assert "loopback" in reply["body"], (name, method, reply)

        # The connection is still open, and the next frame is the reply to
        # this message, not a rejected post.
        assert await client.ask_connection_id() == connection_id

    assert NETWORK_WARNING in server.log
    assert f"rejected a management API request from {PEER_ADDRESS}" in server.log
    assert REMOTE_MANAGEMENT_WARNING not in server.log


async def test_remote_peer_allowed_with_option(namespaces: Namespaces, tmp_path: Path) -> None:
    project = _write_project(tmp_path / "project")
    async with (
        _server(namespaces, project, "--allow-remote-management") as server,
        _peer_websocket(namespaces, server.url) as client,
    ):
        connection_id = await client.ask_connection_id()
        urls = _management_urls(server, connection_id)

        for name in ("main", "staged", "internal"):
            text = f"posted to the {name} path from {PEER_ADDRESS}"
            reply = await _peer_request(namespaces, "POST", urls[name], text)
            assert reply["status"] == 200, (name, reply)
            assert await client.next_record() == {"event": "frame", "data": text}

        reply = await _peer_request(namespaces, "GET", urls["main"])
        assert reply["status"] == 200, reply
        assert json.loads(reply["body"])["identity"]["sourceIp"] == PEER_ADDRESS

        reply = await _peer_request(namespaces, "DELETE", urls["main"])
        assert reply["status"] == 204, reply
        assert await client.next_record() == {"event": "close", "code": 1000}

    assert NETWORK_WARNING in server.log
    assert REMOTE_MANAGEMENT_WARNING in server.log
    assert "rejected a management API request" not in server.log


# Replies through the management API, on the address the emulator gave it.
SELF_POST_HANDLER = """
import os, urllib.parse, urllib.request

def handler(event, context):
    connection_id = event["requestContext"]["connectionId"]
    url = (
        os.environ["AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"]
        + "/@connections/"
        + urllib.parse.quote(connection_id, safe="")
    )
    request = urllib.request.Request(url, data=connection_id.encode(), method="POST")
    urllib.request.urlopen(request, timeout=5).read()
    return {"statusCode": 200}
"""


async def test_functions_reach_management_on_bound_address(
    namespaces: Namespaces, tmp_path: Path
) -> None:
    project = _write_project(tmp_path / "project")
    (project / "src" / "ws" / "default" / "lambda.py").write_text(
        textwrap.dedent(SELF_POST_HANDLER)
    )
    async with (
        _server(namespaces, project) as server,
        _peer_websocket(namespaces, server.url) as client,
    ):
        # No route responses reach the client from this handler: the frame
        # is what the function posted from the server's own address.
        await client.send("post to myself")
        record = await client.next_record()
        assert record["event"] == "frame", record
        assert str(record["data"]).endswith("="), record

    assert "rejected a management API request" not in server.log
