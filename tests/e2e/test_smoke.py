from __future__ import annotations

import json

import aiohttp

from tests.e2e.conftest import EmulatorFactory, Project

ECHO = """
import json, os, urllib.request, urllib.parse

def handler(event, context):
    ctx = event["requestContext"]
    endpoint = os.environ["AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"]
    url = endpoint + "/@connections/" + urllib.parse.quote(ctx["connectionId"], safe="")
    reply = {"route": ctx["routeKey"], "body": event["body"], "pid": os.getpid()}
    body = json.dumps(reply).encode()
    urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST")).read()
    return {"statusCode": 200}
"""


async def test_message_reaches_default_handler(
    project: Project, start_emulator: EmulatorFactory
) -> None:
    project.handler("default", ECHO)
    emulator = await start_emulator()
    async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
        await ws.send_str("hello")
        reply = json.loads(await ws.receive_str(timeout=10))
        assert reply["route"] == "$default"
        assert reply["body"] == "hello"
        await ws.send_str("again")
        second = json.loads(await ws.receive_str(timeout=10))
        assert second["pid"] == reply["pid"]
