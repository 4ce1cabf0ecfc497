"""boto3's `apigatewaymanagementapi` client, unchanged, against the emulator.

Handlers build the client as the AWS documentation shows, with
`endpoint_url=f"http://{domainName}/{stage}"` from the event, or with no
`endpoint_url` at all, so that boto3 reads
`AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI` from the function's environment.
The test process also calls the management API through boto3 directly.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import pytest
from botocore.config import Config
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedOK

from emulator.app import Emulator
from tests.e2e.conftest import EmulatorFactory, Project

pytestmark = pytest.mark.timeout(60)

USER_AGENT = "compat-boto3/1.0"
# A well-formed connection id that no connection has.
UNKNOWN_ID = "AAAAAAAAAAAAAAA="

# Each message is a command: `op` says what to do, `endpoint` how to build
# the client ("event" from the event's domainName and stage, "environment"
# from the environment variable). Results go back to the caller through
# the same client's post_to_connection.
BOTO3_HANDLER = """
import json

import boto3
from botocore.exceptions import ClientError

_clients = {}


def management_client(event, endpoint):
    if endpoint == "event":
        context_fields = event["requestContext"]
        url = f"http://{context_fields['domainName']}/{context_fields['stage']}"
    else:
        url = None
    if url not in _clients:
        if url is None:
            _clients[url] = boto3.client("apigatewaymanagementapi")
        else:
            _clients[url] = boto3.client("apigatewaymanagementapi", endpoint_url=url)
    return _clients[url]


def handler(event, context):
    connection_id = event["requestContext"]["connectionId"]
    command = json.loads(event["body"])
    client = management_client(event, command["endpoint"])
    op = command["op"]

    def reply(message):
        data = json.dumps({"op": op, **message}).encode()
        client.post_to_connection(ConnectionId=connection_id, Data=data)

    if op == "whoami":
        reply({"connectionId": connection_id, "endpoint": client.meta.endpoint_url})
    elif op == "post":
        client.post_to_connection(ConnectionId=connection_id, Data=command["data"].encode())
    elif op == "get":
        info = client.get_connection(ConnectionId=connection_id)
        reply(
            {
                "connectedAt": info["ConnectedAt"].isoformat(),
                "lastActiveAt": info["LastActiveAt"].isoformat(),
                "identity": info["Identity"],
            }
        )
    elif op == "delete":
        client.delete_connection(ConnectionId=connection_id)
    elif op == "post-to":
        try:
            client.post_to_connection(ConnectionId=command["id"], Data=b"hello")
            reply({"error": None})
        except ClientError as error:
            reply(
                {
                    "error": {
                        "type": type(error).__name__,
                        "isGoneException": isinstance(error, client.exceptions.GoneException),
                        "code": error.response["Error"]["Code"],
                        "statusCode": error.response["ResponseMetadata"]["HTTPStatusCode"],
                    }
                }
            )
    return {"statusCode": 200}
"""


@pytest.fixture
async def emulator(project: Project, start_emulator: EmulatorFactory) -> Emulator:
    project.handler("default", BOTO3_HANDLER)
    return await start_emulator()


async def receive_json(ws: ClientConnection, timeout: float = 15) -> Any:
    frame = await asyncio.wait_for(ws.recv(), timeout)
    return json.loads(frame)


async def run_command(ws: ClientConnection, command: dict[str, Any]) -> Any:
    """Send one command and return the handler's reply."""
    await ws.send(json.dumps(command))
    reply = await receive_json(ws)
    assert reply.get("op") == command["op"], f"unexpected reply {reply!r}"
    return reply


async def expect_close(ws: ClientConnection, code: int) -> None:
    with pytest.raises(ConnectionClosedOK) as closed:
        await asyncio.wait_for(ws.recv(), 15)
    assert closed.value.rcvd is not None, "the server sent no close frame"
    assert closed.value.rcvd.code == code


@asynccontextmanager
async def member(emulator: Emulator) -> AsyncIterator[tuple[ClientConnection, str]]:
    """Connect and learn the connection id."""
    async with connect(emulator.url, user_agent_header=USER_AGENT, open_timeout=10) as ws:
        whoami = await run_command(ws, {"op": "whoami", "endpoint": "environment"})
        yield ws, whoami["connectionId"]


def parse_time(text: str) -> datetime:
    # Python 3.10's fromisoformat does not accept the `Z` suffix.
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize("endpoint", ["event", "environment"])
async def test_handler_client_manages_connection(emulator: Emulator, endpoint: str) -> None:
    expected_endpoint = {
        "event": f"http://127.0.0.1:{emulator.port}/testing",
        "environment": emulator.management_url,
    }[endpoint]
    before = datetime.now(timezone.utc)

    async with member(emulator) as (ws, connection_id):
        whoami = await run_command(ws, {"op": "whoami", "endpoint": endpoint})
        assert whoami["endpoint"] == expected_endpoint
        assert whoami["connectionId"] == connection_id

        await ws.send(json.dumps({"op": "post", "endpoint": endpoint, "data": "plain text ✓"}))
        assert await asyncio.wait_for(ws.recv(), 15) == "plain text ✓"

        info = await run_command(ws, {"op": "get", "endpoint": endpoint})
        after = datetime.now(timezone.utc)
        connected_at = parse_time(info["connectedAt"])
        # The emulator formats times to the millisecond, so allow that much rounding.
        assert before - timedelta(milliseconds=1) <= connected_at <= after
        assert connected_at <= parse_time(info["lastActiveAt"]) <= after
        assert info["identity"] == {"SourceIp": "127.0.0.1", "UserAgent": USER_AGENT}

        await ws.send(json.dumps({"op": "delete", "endpoint": endpoint}))
        await expect_close(ws, 1000)

    async with member(emulator) as (ws, _):
        for gone_id in (connection_id, UNKNOWN_ID):
            reply = await run_command(ws, {"op": "post-to", "endpoint": endpoint, "id": gone_id})
            error = reply["error"]
            assert error is not None, f"post_to_connection to {gone_id} succeeded"
            assert error["type"] == "GoneException"
            assert error["isGoneException"] is True
            assert error["code"] == "GoneException"
            assert error["statusCode"] == 410


@pytest.mark.parametrize("path", ["", "/testing"], ids=["root", "stage"])
async def test_direct_client_manages_connection(emulator: Emulator, path: str) -> None:
    client = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=emulator.management_url + path,
        region_name="us-west-2",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        config=Config(connect_timeout=5, read_timeout=10, retries={"total_max_attempts": 1}),
    )
    # boto3 blocks, and the emulator runs on this event loop: call it from a thread.
    async with member(emulator) as (ws, connection_id):
        await asyncio.to_thread(
            client.post_to_connection, ConnectionId=connection_id, Data=b'{"from": "test"}'
        )
        assert await receive_json(ws) == {"from": "test"}

        info = await asyncio.to_thread(client.get_connection, ConnectionId=connection_id)
        assert isinstance(info["ConnectedAt"], datetime)
        assert isinstance(info["LastActiveAt"], datetime)
        assert info["ConnectedAt"] <= info["LastActiveAt"]
        assert info["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": USER_AGENT}

        deleted = await asyncio.to_thread(client.delete_connection, ConnectionId=connection_id)
        assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
        await expect_close(ws, 1000)

    calls: list[tuple[Any, dict[str, Any]]] = [
        (client.post_to_connection, {"ConnectionId": connection_id, "Data": b"too late"}),
        (client.get_connection, {"ConnectionId": connection_id}),
        (client.delete_connection, {"ConnectionId": connection_id}),
        (client.post_to_connection, {"ConnectionId": UNKNOWN_ID, "Data": b"nobody"}),
    ]
    for call, arguments in calls:
        with pytest.raises(client.exceptions.GoneException) as gone:
            await asyncio.to_thread(call, **arguments)
        assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410
