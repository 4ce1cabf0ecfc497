"""Node.js's `ws` client, unchanged, against the emulator.

A small Node script connects, optionally offering subprotocols, sends one
message and prints every event it sees as a JSON line. The `$connect`
handler selects `chat.v2` through a returned `Sec-WebSocket-Protocol`
header; the `$default` handler echoes the message and then closes the
connection through the management API.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from emulator.app import Emulator
from tests.e2e.conftest import NODE_MODULES, EmulatorFactory, Project, node_available

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not node_available(), reason="node is not installed"),
]

CLIENT_SCRIPT = """
const WebSocket = require('ws')

const [url, protocolList, message] = process.argv.slice(2)
const protocols = protocolList ? protocolList.split(',') : []
const print = record => console.log(JSON.stringify(record))

const timer = setTimeout(() => {
  print({ event: 'timeout' })
  process.exit(2)
}, 15000)

const ws = new WebSocket(url, protocols)
ws.on('open', () => {
  print({ event: 'open', protocol: ws.protocol })
  ws.send(message)
})
ws.on('message', (data, isBinary) => print({ event: 'message', data: data.toString(), isBinary }))
ws.on('close', (code, reason) => {
  print({ event: 'close', code, reason: reason.toString() })
  clearTimeout(timer)
})
ws.on('error', err => {
  print({ event: 'error', message: err.message })
  process.exitCode = 1
})
"""

# Select `chat.v2` when the client offers it, as API Gateway leaves the
# choice of subprotocol to the `$connect` integration.
CONNECT_HANDLER = """
def handler(event, context):
    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
    offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]
    if "chat.v2" in offered:
        return {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "chat.v2"}}
    return {"statusCode": 200}
"""

ECHO_AND_CLOSE_HANDLER = """
import json
import os
import urllib.parse
import urllib.request


def handler(event, context):
    connection_id = event["requestContext"]["connectionId"]
    url = (
        os.environ["AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"]
        + "/@connections/"
        + urllib.parse.quote(connection_id, safe="")
    )
    reply = json.dumps({"echo": event["body"], "route": event["requestContext"]["routeKey"]})
    urllib.request.urlopen(urllib.request.Request(url, data=reply.encode(), method="POST"))
    urllib.request.urlopen(urllib.request.Request(url, method="DELETE"))
    return {"statusCode": 200}
"""


@pytest.fixture
async def emulator(project: Project, start_emulator: EmulatorFactory) -> Emulator:
    project.handler("connect", CONNECT_HANDLER)
    project.handler("default", ECHO_AND_CLOSE_HANDLER)
    return await start_emulator()


async def run_client(
    tmp_path: Path, url: str, protocols: list[str], message: str
) -> tuple[int | None, list[Any]]:
    """Run the Node client script; return its exit status and the events it printed."""
    script = tmp_path / "client.js"
    script.write_text(CLIENT_SCRIPT)
    process = await asyncio.create_subprocess_exec(
        "node",
        str(script),
        url,
        ",".join(protocols),
        message,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert not stderr, f"the client wrote to stderr: {stderr.decode()}"
    return process.returncode, [json.loads(line) for line in stdout.decode().splitlines()]


@pytest.mark.parametrize(
    ("offered", "selected"),
    [([], ""), (["chat.v1", "chat.v2"], "chat.v2")],
    ids=["no-subprotocol", "subprotocol"],
)
async def test_ws_client_round_trip(
    emulator: Emulator, tmp_path: Path, offered: list[str], selected: str
) -> None:
    message = json.dumps({"text": "hi ✓"})
    status, events = await run_client(tmp_path, emulator.url, offered, message)

    echo = json.dumps({"echo": message, "route": "$default"})
    assert events == [
        {"event": "open", "protocol": selected},
        {"event": "message", "data": echo, "isBinary": False},
        {"event": "close", "code": 1000, "reason": ""},
    ]
    assert status == 0


async def test_ws_client_rejects_unselected_subprotocol(emulator: Emulator, tmp_path: Path) -> None:
    # The handler selects none of these, so the gateway must not pick one
    # either, and `ws` then fails the handshake as it would against AWS.
    status, events = await run_client(tmp_path, emulator.url, ["chat.v1"], "unused")

    assert events[0] == {"event": "error", "message": "Server sent no subprotocol"}
    assert events[-1]["event"] == "close"
    assert events[-1]["code"] == 1006
    assert status == 1
