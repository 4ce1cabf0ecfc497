"""API Gateway's limits through real workers: sizes, idle and old connections, slow integrations.

The gateway tests cover these limits with a test invoker; here each runs
once end to end, with real handlers and real `$disconnect` invocations.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re

import aiohttp
import psutil
import pytest

from emulator.gateway.connections import SEND_BUFFER_HIGH_WATER
from tests.e2e.conftest import EmulatorFactory, Project
from tests.e2e.test_exec_support import (
    REPORT_PATTERN,
    LogCapture,
    assert_error_frame,
    capture_logs,
    receive_json,
)
from tests.e2e.test_fidelity_support import PY_MISBEHAVING, emulator_lines, send_and_receive
from tests.gateway.clients import OP_CLOSE, OP_CONTINUATION, OP_TEXT, RawWebSocket

MAX_MESSAGE_BYTES = 128 * 1024
MAX_FRAME_BYTES = 32 * 1024

# Replies with the length of the message it received.
LENGTH_HANDLER = """
import json

def handler(event, context):
    return {"statusCode": 200, "body": json.dumps({
        "length": len(event["body"]),
        "connectionId": event["requestContext"]["connectionId"],
    })}
"""

DISCONNECT_HANDLER = """
def handler(event, context):
    context_ = event["requestContext"]
    print(
        f"disconnect connection={context_['connectionId']} "
        f"code={context_['disconnectStatusCode']} reason={context_['disconnectReason']}"
    )
    return {"statusCode": 200}
"""

# Sleeps 3 s when the upgrade request has `?slow=1`.
SLOW_CONNECT_HANDLER = """
import time

def handler(event, context):
    if (event.get("queryStringParameters") or {}).get("slow"):
        print(f"slow connect request={context.aws_request_id}")
        time.sleep(3)
    return {"statusCode": 200}
"""


async def _disconnect_code(logs: LogCapture, connection_id: str) -> int:
    line = await logs.wait_for_line(
        "disconnect", rf"^disconnect connection={re.escape(connection_id)} code=\d+"
    )
    match = re.search(r"code=(\d+)", line)
    assert match is not None
    return int(match.group(1))


async def _open_raw(port: int, receive_buffer: int | None = None) -> tuple[RawWebSocket, str]:
    """Open a raw connection and learn its id from one small message."""
    client = await RawWebSocket.open(port, receive_buffer=receive_buffer)
    assert client.handshake.status == 101
    await client.send_text("hello")
    opcode, payload = await asyncio.wait_for(client.read_frame(), 15)
    assert opcode == OP_TEXT
    return client, json.loads(payload)["connectionId"]


@pytest.mark.timeout(60)
async def test_size_limits_close_with_1009(
    project: Project, start_emulator: EmulatorFactory
) -> None:
    project.handler("default", LENGTH_HANDLER)
    project.handler("disconnect", DISCONNECT_HANDLER)
    with capture_logs() as logs:
        emulator = await start_emulator(route_responses=True)

        # The largest message: four frames of the largest size.
        client, connection_id = await _open_raw(emulator.port)
        chunk = b"x" * MAX_FRAME_BYTES
        await client.send(OP_TEXT, chunk, fin=False)
        for index in range(3):
            await client.send(OP_CONTINUATION, chunk, fin=index == 2)
        opcode, payload = await asyncio.wait_for(client.read_frame(), 15)
        assert opcode == OP_TEXT
        assert json.loads(payload)["length"] == MAX_MESSAGE_BYTES

        # One byte more, in a fifth frame.
        await client.send(OP_TEXT, chunk, fin=False)
        for _ in range(3):
            await client.send(OP_CONTINUATION, chunk, fin=False)
        await client.send(OP_CONTINUATION, b"x", fin=True)
        assert (await asyncio.wait_for(client.read_close(), 15))[0] == 1009
        client.drop()
        assert await _disconnect_code(logs, connection_id) == 1009

        # A single frame one byte over its limit.
        client, connection_id = await _open_raw(emulator.port)
        await client.send(OP_TEXT, b"x" * (MAX_FRAME_BYTES + 1))
        assert (await asyncio.wait_for(client.read_close(), 15))[0] == 1009
        client.drop()
        assert await _disconnect_code(logs, connection_id) == 1009

    # Only the small messages and the largest one reached the handler.
    reports = [line for line in logs.function_lines("default") if REPORT_PATTERN.match(line)]
    assert len(reports) == 3


@pytest.mark.timeout(60)
async def test_idle_and_old_connections_close_with_1001(
    project: Project, start_emulator: EmulatorFactory
) -> None:
    idle_timeout, max_duration = 1.0, 2.5
    project.handler("default", LENGTH_HANDLER)
    project.handler("disconnect", DISCONNECT_HANDLER)
    with capture_logs() as logs:
        emulator = await start_emulator(
            route_responses=True, idle_timeout=idle_timeout, max_connection_duration=max_duration
        )
        loop = asyncio.get_running_loop()

        async def idle_client() -> tuple[float, int | None, str]:
            opened_at = loop.time()
            client, connection_id = await _open_raw(emulator.port)
            code, _ = await asyncio.wait_for(client.answer_close(), 15)
            return loop.time() - opened_at, code, connection_id

        async def active_client() -> tuple[float, int | None, str]:
            opened_at = loop.time()
            client, connection_id = await _open_raw(emulator.port)
            # A message every 0.3 s keeps it from idling; only its age closes it.
            while True:
                await client.send_text("ping")
                try:
                    opcode, payload = await asyncio.wait_for(client.read_frame(), 15)
                except asyncio.IncompleteReadError:
                    return loop.time() - opened_at, None, connection_id
                if opcode == OP_CLOSE:
                    code = int.from_bytes(payload[:2], "big")
                    await client.close_reply(code)
                    return loop.time() - opened_at, code, connection_id
                await asyncio.sleep(0.3)

        idle, active = await asyncio.gather(idle_client(), active_client())

        idle_for, idle_code, idle_id = idle
        assert idle_code == 1001
        assert idle_timeout <= idle_for < max_duration
        assert await _disconnect_code(logs, idle_id) == 1001

        open_for, active_code, active_id = active
        assert active_code == 1001
        assert max_duration <= open_for < max_duration + 2
        assert await _disconnect_code(logs, active_id) == 1001


@pytest.mark.timeout(60)
async def test_integration_timeout_leaves_function_running(
    project: Project, start_emulator: EmulatorFactory
) -> None:
    project.handler("connect", SLOW_CONNECT_HANDLER, config={"timeout": 5})
    project.handler("default", PY_MISBEHAVING, config={"timeout": 5})
    with capture_logs() as logs:
        emulator = await start_emulator(route_responses=True, integration_timeout=1.0)
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
            first = await send_and_receive(ws, "hello")

            # A message: the error frame after 1 s, while the function runs on.
            sent_at = loop.time()
            await ws.send_str(json.dumps({"do": "sleep", "seconds": 3, "tag": "slow"}))
            frame = await receive_json(ws)
            waited = loop.time() - sent_at
            assert_error_frame(frame, first["connectionId"])
            assert 1.0 <= waited < 2.5
            after = await send_and_receive(ws, "after")
            assert after["connectionId"] == first["connectionId"]

            # `$connect`: rejected with 504 after 1 s.
            sent_at = loop.time()
            with pytest.raises(aiohttp.WSServerHandshakeError) as raised:
                await session.ws_connect(emulator.url + "/?slow=1")
            assert raised.value.status == 504
            assert 1.0 <= loop.time() - sent_at < 2.5

            # Both functions ran to their end.
            message_line = await logs.wait_for_line("default", r"tree tag=slow request=\S+")
            connect_line = await logs.wait_for_line("connect", r"slow connect request=\S+")
            for route, line in (("default", message_line), ("connect", connect_line)):
                request_id = line.rpartition("request=")[2].split()[0]
                report_line = await logs.wait_for_line(route, f"^REPORT RequestId: {request_id}")
                report = REPORT_PATTERN.fullmatch(report_line)
                assert report is not None
                assert float(report["duration"]) >= 3000
                assert report["timeout"] is None
                assert f"END RequestId: {request_id}" in logs.function_lines(route)

    errors = emulator_lines(logs, frame["requestId"], logging.ERROR)
    assert len(errors) == 1, errors
    assert "integration timeout of 1 s" in errors[0]
    rejections = emulator_lines(logs, "with 504", logging.ERROR)
    assert len(rejections) == 1, rejections
    assert "integration timeout" in rejections[0]


@pytest.mark.timeout(60)
async def test_slow_client_gets_429_and_bounded_memory(
    project: Project, start_emulator: EmulatorFactory
) -> None:
    project.handler("default", PY_MISBEHAVING, config={"timeout": 30})
    post_count, post_kib = 200, 100
    with capture_logs() as logs:
        emulator = await start_emulator()
        gateway_process = psutil.Process()
        client = await RawWebSocket.open(emulator.port, receive_buffer=4096)
        assert client.handshake.status == 101
        rss_before = gateway_process.memory_info().rss

        # The client sends one message and never reads again.
        await client.send_text(json.dumps({"do": "post", "count": post_count, "kib": post_kib}))
        line = await logs.wait_for_line("default", r"^posted ")
        rss_after = gateway_process.memory_info().rss
        client.drop()

        # Another client is served as before.
        async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
            await ws.send_str("hello")
            await logs.wait_for_line("default", r"^REPORT ")

    posted = json.loads(line.removeprefix("posted "))
    statuses: list[int] = posted["statuses"]
    assert 429 in statuses
    first_rejected = statuses.index(429)
    # Some messages fit in the buffers; once full, every post is rejected.
    assert first_rejected >= SEND_BUFFER_HIGH_WATER // (post_kib * 1024)
    assert set(statuses[:first_rejected]) == {200}
    assert set(statuses[first_rejected:]) == {429}
    assert posted["errorTypes"] == ["LimitExceededException"]
    # 20 MB were posted; the gateway kept no more than its buffer limit of them.
    growth_mb = (rss_after - rss_before) / (1 << 20)
    assert growth_mb < 3 * SEND_BUFFER_HIGH_WATER / (1 << 20), growth_mb
    # The rejections are logged once, not once per post.
    warnings = emulator_lines(logs, "is not reading", logging.WARNING)
    assert len(warnings) == 1, warnings
