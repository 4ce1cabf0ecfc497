"""Architect's runtime libraries, unchanged, against the emulator.

`@architect/functions` (Node.js, installed under tests/node) and
`architect-functions` (Python, imported as `arc`) find the management API
through the internal port in `ARC_SANDBOX`, at `http://localhost:<port>/_arc/ws`.
The handlers below take one command per message (`{"op": "info"}` and so
on), run it through the library and report the result to the client with
the library's own `send`. Their `$disconnect` handler reports to a probe,
an HTTP server the test runs on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from aiohttp import web
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedOK

from tests.e2e.conftest import EmulatorFactory, Project, node_available

pytestmark = pytest.mark.timeout(60)

USER_AGENT = "compat-test/1.0"
# A well-formed connection id that no connection has.
UNKNOWN_ID = "AAAAAAAAAAAAAAA="

# The handler body shared by the CommonJS and the ES module variants. Only
# how they load the library and export the handler differ.
NODE_MESSAGE_BODY = """
function describeError (err) {
  return { name: err.name, code: err.code, statusCode: err.statusCode }
}

async function handler (event) {
  const { connectionId } = event.requestContext
  const command = JSON.parse(event.body)
  const report = payload => arc.ws.send({ id: connectionId, payload })

  if (command.op === 'send') {
    await arc.ws.send({ id: connectionId, payload: command.payload })
  }
  else if (command.op === 'send-callback') {
    const payload = command.payload
    await new Promise((resolve, reject) => {
      arc.ws.send({ id: connectionId, payload }, err => err ? reject(err) : resolve())
    })
  }
  else if (command.op === 'whoami') {
    await report({ op: 'whoami', connectionId })
  }
  else if (command.op === 'info') {
    const info = await arc.ws.info({ id: connectionId })
    await report({ op: 'info', info })
  }
  else if (command.op === 'close') {
    await arc.ws.close({ id: connectionId })
  }
  else if (command.op === 'send-to') {
    let error = null
    try {
      await arc.ws.send({ id: command.id, payload: { text: 'hello' } })
    }
    catch (err) {
      error = describeError(err)
    }
    await report({ op: 'send-to', error })
  }
  return { statusCode: 200 }
}
"""

NODE_CJS_MESSAGE = (
    "const arc = require('@architect/functions')\n"
    + NODE_MESSAGE_BODY
    + "module.exports = { handler }\n"
)
NODE_ESM_MESSAGE = (
    "import arc from '@architect/functions'\n" + NODE_MESSAGE_BODY + "export { handler }\n"
)

NODE_DISCONNECT = """
const arc = require('@architect/functions')

exports.handler = async function (event) {
  const { connectionId, disconnectStatusCode } = event.requestContext
  let error = null
  try {
    await arc.ws.send({ id: connectionId, payload: { text: 'too late' } })
  }
  catch (err) {
    error = { name: err.name, code: err.code, statusCode: err.statusCode }
  }
  const record = { connectionId, disconnectStatusCode, error }
  await fetch(process.env.PROBE_URL, { method: 'POST', body: JSON.stringify(record) })
  return { statusCode: 200 }
}
"""

PYTHON_MESSAGE = """
import json

import arc


def describe_error(error):
    return {
        "name": type(error).__name__,
        "code": error.response["Error"]["Code"],
        "statusCode": error.response["ResponseMetadata"]["HTTPStatusCode"],
    }


def handler(event, context):
    connection_id = event["requestContext"]["connectionId"]
    command = json.loads(event["body"])
    op = command["op"]

    if op in ("send", "send-callback"):
        arc.ws.send(connection_id, command["payload"])
    elif op == "whoami":
        arc.ws.send(connection_id, {"op": "whoami", "connectionId": connection_id})
    elif op == "info":
        info = arc.ws.info(connection_id)
        described = {
            "ConnectedAt": info["ConnectedAt"].isoformat(),
            "Identity": info["Identity"],
            "LastActiveAt": info["LastActiveAt"].isoformat(),
        }
        arc.ws.send(connection_id, {"op": "info", "info": described})
    elif op == "close":
        arc.ws.close(connection_id)
    elif op == "send-to":
        error = None
        try:
            arc.ws.send(command["id"], {"text": "hello"})
        except arc.ws.api().exceptions.GoneException as gone:
            error = describe_error(gone)
        arc.ws.send(connection_id, {"op": "send-to", "error": error})
    return {"statusCode": 200}
"""

PYTHON_DISCONNECT = """
import json
import os
import urllib.request

import arc


def handler(event, context):
    context_fields = event["requestContext"]
    connection_id = context_fields["connectionId"]
    error = None
    try:
        arc.ws.send(connection_id, {"text": "too late"})
    except arc.ws.api().exceptions.GoneException as gone:
        error = {
            "name": type(gone).__name__,
            "code": gone.response["Error"]["Code"],
            "statusCode": gone.response["ResponseMetadata"]["HTTPStatusCode"],
        }
    record = {
        "connectionId": connection_id,
        "disconnectStatusCode": context_fields.get("disconnectStatusCode"),
        "error": error,
    }
    request = urllib.request.Request(
        os.environ["PROBE_URL"], data=json.dumps(record).encode(), method="POST"
    )
    urllib.request.urlopen(request, timeout=5).read()
    return {"statusCode": 200}
"""


@dataclass(frozen=True)
class Variant:
    """One library in one module system: the handler files and their runtime."""

    message: str
    disconnect: str
    runtime: str
    disconnect_runtime: str
    # How the library names the fields of `Identity` in `info`'s result:
    # aws-lite keeps API Gateway's JSON names, boto3 uses its model's names.
    source_ip_key: str
    user_agent_key: str


VARIANTS = {
    "node-cjs": Variant(NODE_CJS_MESSAGE, NODE_DISCONNECT, "node", "node", "sourceIp", "userAgent"),
    "node-esm": Variant(
        NODE_ESM_MESSAGE, NODE_DISCONNECT, "node-esm", "node", "sourceIp", "userAgent"
    ),
    "python": Variant(
        PYTHON_MESSAGE, PYTHON_DISCONNECT, "python", "python", "SourceIp", "UserAgent"
    ),
}


@dataclass
class Probe:
    """An HTTP server on 127.0.0.1 that collects what `$disconnect` handlers POST."""

    url: str = ""
    records: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def receive(self, request: web.Request) -> web.Response:
        record = await request.json()
        async with self.arrived:
            self.records.append(record)
            self.arrived.notify_all()
        return web.Response(status=204)

    def records_of(self, connection_id: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("connectionId") == connection_id]

    async def wait_for(self, connection_id: str, timeout: float = 15) -> dict[str, Any]:
        """Return the first record about `connection_id`, waiting for it to arrive."""

        async def first_record() -> dict[str, Any]:
            async with self.arrived:
                await self.arrived.wait_for(lambda: bool(self.records_of(connection_id)))
                return self.records_of(connection_id)[0]

        return await asyncio.wait_for(first_record(), timeout)


@pytest.fixture
async def probe() -> AsyncIterator[Probe]:
    probe = Probe()
    app = web.Application()
    app.router.add_post("/", probe.receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    probe.url = f"http://127.0.0.1:{port}/"
    yield probe
    await runner.cleanup()


@dataclass(frozen=True)
class Library:
    """A running emulator whose handlers use one library variant."""

    variant: Variant
    url: str
    probe: Probe

    @asynccontextmanager
    async def member(self) -> AsyncIterator[tuple[ClientConnection, str]]:
        """Connect, learn the connection id, and after leaving wait for `$disconnect`.

        Waiting keeps `$disconnect` from running while the emulator stops.
        """
        async with connect(self.url, user_agent_header=USER_AGENT, open_timeout=10) as ws:
            whoami = await run_command(ws, {"op": "whoami"})
            connection_id = whoami["connectionId"]
            yield ws, connection_id
        await self.probe.wait_for(connection_id)


@pytest.fixture(params=list(VARIANTS))
async def library(
    request: pytest.FixtureRequest,
    probe: Probe,
    project: Project,
    start_emulator: EmulatorFactory,
) -> Library:
    """Start an emulator whose handlers use the library variant of the test's parameter."""
    variant = VARIANTS[request.param]
    if variant.runtime.startswith("node") and not node_available():
        pytest.skip("node is not installed")
    project.handler("default", variant.message, runtime=variant.runtime)
    project.handler("disconnect", variant.disconnect, runtime=variant.disconnect_runtime)
    project.link_node_modules()
    (project.root / ".env").write_text(f"PROBE_URL={probe.url}\n")
    emulator = await start_emulator()
    return Library(variant, emulator.url, probe)


async def receive_json(ws: ClientConnection, timeout: float = 15) -> Any:
    frame = await asyncio.wait_for(ws.recv(), timeout)
    return json.loads(frame)


async def run_command(ws: ClientConnection, command: dict[str, Any]) -> Any:
    """Send one command and return the handler's report."""
    await ws.send(json.dumps(command))
    reply = await receive_json(ws)
    assert reply.get("op") == command["op"], f"unexpected reply {reply!r}"
    return reply


def parse_time(text: str) -> datetime:
    # Python 3.10's fromisoformat does not accept the `Z` suffix.
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_send_reaches_client(library: Library) -> None:
    payload = {"text": "héllo ✓", "numbers": [1, 2.5], "nested": {"ok": True}}
    async with library.member() as (ws, _):
        await ws.send(json.dumps({"op": "send", "payload": payload}))
        assert await receive_json(ws) == payload

        await ws.send(json.dumps({"op": "send-callback", "payload": {"form": "callback"}}))
        assert await receive_json(ws) == {"form": "callback"}


async def test_info_describes_connection(library: Library) -> None:
    before = datetime.now(timezone.utc)
    async with library.member() as (ws, _):
        reply = await run_command(ws, {"op": "info"})
        after = datetime.now(timezone.utc)

    info = reply["info"]
    assert set(info) >= {"ConnectedAt", "Identity", "LastActiveAt"}
    connected_at = parse_time(info["ConnectedAt"])
    last_active_at = parse_time(info["LastActiveAt"])
    # The emulator formats times to the millisecond, so allow that much rounding.
    slack = timedelta(milliseconds=1)
    assert before - slack <= connected_at <= after
    assert connected_at <= last_active_at <= after
    identity = info["Identity"]
    assert identity[library.variant.source_ip_key] == "127.0.0.1"
    assert identity[library.variant.user_agent_key] == USER_AGENT


async def test_close_ends_connection(library: Library) -> None:
    async with library.member() as (ws, connection_id):
        assert library.probe.records_of(connection_id) == [], "$disconnect ran before the close"

        await ws.send(json.dumps({"op": "close"}))
        with pytest.raises(ConnectionClosedOK) as closed:
            await asyncio.wait_for(ws.recv(), 15)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1000

    record = await library.probe.wait_for(connection_id)
    assert record["disconnectStatusCode"] == 1000
    # `$disconnect` runs after the socket closed, so sending to it is too late.
    assert record["error"] is not None, "send to a closed connection succeeded"
    assert record["error"]["name"] == "GoneException"
    assert record["error"]["code"] == "GoneException"
    assert record["error"]["statusCode"] == 410


async def test_send_to_gone_connection_raises(library: Library) -> None:
    async with library.member() as (_, closed_id):
        pass

    async with library.member() as (ws, _):
        for gone_id in (closed_id, UNKNOWN_ID):
            reply = await run_command(ws, {"op": "send-to", "id": gone_id})

            error = reply["error"]
            assert error is not None, f"send to {gone_id} succeeded"
            assert error["name"] == "GoneException"
            assert error["code"] == "GoneException"
            assert error["statusCode"] == 410
