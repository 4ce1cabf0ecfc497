"""The Python API: `Emulator` options as keywords, invocation records, a thread-served emulator."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import emulator as package
from emulator import Emulator
from emulator.app import Emulator as AppEmulator
from emulator.config import Options
from emulator.errors import EmulatorError
from emulator.records import InvocationRecord
from emulator.testing import ConnectionRejected, SyncWebSocketClient, WebSocketClient
from tests.api.conftest import ECHO_HANDLER, ProjectFactory, alive, descendants

WAIT_TIMEOUT = 20.0

RAISING_HANDLER = """
def handler(event, context):
    print("about to fail")
    raise ValueError("no such room")
"""

REJECTING_CONNECT = """
def handler(event, context):
    return {"statusCode": 403}
"""

REPORT = re.compile(
    r"REPORT RequestId: (?P<id>\S+)\tDuration: (?P<duration>[\d.]+) ms\t"
    r"Billed Duration: \d+ ms\tMemory Size: (?P<size>\d+) MB\tMax Memory Used: (?P<max>\d+) MB"
)


def start(root: Path, **options: Any) -> Emulator:
    return Emulator(root, port=0, internal_port=0, watch=False, ipv6_loopback=False, **options)


def test_package_exports_emulator() -> None:
    assert package.Emulator is AppEmulator
    assert "Emulator" in package.__all__


def test_keywords_override_options(make_project: ProjectFactory) -> None:
    root = make_project({})

    emulator = Emulator(root, Options(stage="beta", port=4000), port=0, route_responses=True)

    assert emulator.options.port == 0
    assert emulator.options.route_responses is True
    assert emulator.options.stage == "beta"
    assert Emulator(root, Options(stage="beta")).options.stage == "beta"
    assert Emulator(root).options == Options()


def test_unknown_keyword_is_rejected(make_project: ProjectFactory) -> None:
    root = make_project({})

    with pytest.raises(TypeError, match="route_response"):
        Emulator(root, route_response=True)


async def test_records_of_a_connection(make_project: ProjectFactory) -> None:
    root = make_project({"default": ECHO_HANDLER, "send": ECHO_HANDLER})

    async with start(root, route_responses=True) as emulator:
        async with WebSocketClient(emulator.url).connect() as websocket:
            reply = await websocket.request({"action": "send", "text": "hi"})
            await websocket.send_text("plain")
            await websocket.receive_text()
        disconnect = await emulator.next_record("disconnect", timeout=WAIT_TIMEOUT)
        records = emulator.records

    routes = [record.route for record in records]
    assert routes == ["connect", "send", "default", "disconnect"]
    assert records[-1] is disconnect
    send = records[1]
    assert send.ok
    assert send.request_id
    assert json.loads(send.response()["body"]) == reply
    assert send.duration_ms > 0
    assert send.max_memory_mb > 0
    assert send.output == ("got send",)
    assert send.logs[0] == f"START RequestId: {send.request_id} Version: $LATEST"
    assert send.logs[-2] == f"END RequestId: {send.request_id}"
    report = REPORT.match(send.logs[-1])
    assert report is not None
    assert report["id"] == send.request_id
    assert float(report["duration"]) == pytest.approx(send.duration_ms, abs=0.01)
    assert int(report["max"]) == send.max_memory_mb
    assert len({record.request_id for record in records}) == 4


async def test_init_duration_on_cold_start_only(make_project: ProjectFactory) -> None:
    root = make_project({"send": ECHO_HANDLER})

    async with start(root, prewarm=False) as emulator:
        event = json.dumps({"requestContext": {"routeKey": "send"}}).encode()
        await emulator.invoke("send", event)
        await emulator.invoke("send", event)
        cold = await emulator.next_record("send")
        warm = await emulator.next_record("send")

    assert cold.init_duration_ms is not None
    assert cold.init_duration_ms > 0
    assert "Init Duration" in cold.logs[-1]
    assert warm.init_duration_ms is None
    assert "Init Duration" not in warm.logs[-1]


async def test_next_record_waits_then_returns_each_once(make_project: ProjectFactory) -> None:
    root = make_project({"send": ECHO_HANDLER})

    async with start(root) as emulator:
        event = json.dumps({"requestContext": {"routeKey": "send"}}).encode()
        waiting = asyncio.ensure_future(emulator.next_record("send", timeout=WAIT_TIMEOUT))
        await asyncio.sleep(0)
        assert not waiting.done()
        first = await emulator.invoke("send", event)
        second = await emulator.invoke("send", event)

        assert (await waiting).request_id == first.request_id
        assert (await emulator.next_record("send")).request_id == second.request_id
        with pytest.raises(TimeoutError, match="route send"):
            await emulator.next_record("send", timeout=0.2)
        assert [record.request_id for record in emulator.records] == [
            first.request_id,
            second.request_id,
        ]


async def test_next_record_filters(make_project: ProjectFactory) -> None:
    root = make_project({"send": ECHO_HANDLER})

    async with start(root) as emulator:
        bodies = [{"requestContext": {"routeKey": "send"}, "n": n} for n in range(3)]
        for body in bodies:
            await emulator.invoke("send", json.dumps(body).encode())

        def third(record: InvocationRecord) -> bool:
            return bool(json.loads(record.response()["body"])["n"] == 2)

        picked = await emulator.next_record(matches=third)
        oldest = await emulator.next_record()

    assert json.loads(picked.response()["body"])["n"] == 2
    assert json.loads(oldest.response()["body"])["n"] == 0


async def test_clear_records(make_project: ProjectFactory) -> None:
    root = make_project({"send": ECHO_HANDLER})

    async with start(root) as emulator:
        await emulator.invoke("send", b'{"requestContext": {"routeKey": "send"}}')
        emulator.clear_records()

        assert emulator.records == []
        with pytest.raises(TimeoutError):
            await emulator.next_record("send", timeout=0.2)


async def test_failed_invocation_record(make_project: ProjectFactory) -> None:
    root = make_project({"send": RAISING_HANDLER})

    async with start(root) as emulator:
        async with WebSocketClient(emulator.url).connect() as websocket:
            error = await websocket.request({"action": "send"})
        record = await emulator.next_record("send", timeout=WAIT_TIMEOUT)

    assert error["message"] == "Internal server error"
    assert not record.ok
    assert record.error_type == "ValueError"
    assert record.error_message == "no such room"
    assert "about to fail" in record.output
    with pytest.raises(ValueError, match="no response"):
        record.response()


async def test_rejected_connect_record(make_project: ProjectFactory) -> None:
    root = make_project({"connect": REJECTING_CONNECT})

    async with start(root) as emulator:
        with pytest.raises(ConnectionRejected) as rejected:
            async with WebSocketClient(emulator.url).connect():
                pass
        record = await emulator.next_record("$connect", timeout=WAIT_TIMEOUT)

    assert rejected.value.status == 403
    assert record.ok
    assert record.response() == {"statusCode": 403}


def test_run_in_background(make_project: ProjectFactory) -> None:
    root = make_project({"connect": ECHO_HANDLER, "send": ECHO_HANDLER})
    before = descendants()

    background = start(root, route_responses=True).run_in_background()
    started = descendants() - before
    client = SyncWebSocketClient(background.url, timeout=WAIT_TIMEOUT)
    try:
        assert background.url == f"ws://127.0.0.1:{background.port}"
        assert background.management_url == f"http://127.0.0.1:{background.port}"
        with client.connect(query={"name": "ada"}) as websocket:
            reply = websocket.request({"action": "send"})
        assert reply["body"] == '{"action": "send"}'
        connect = background.next_record("connect", timeout=WAIT_TIMEOUT)
        assert json.loads(connect.response()["body"])["queryStringParameters"] == {"name": "ada"}
        record = background.next_record("send", timeout=WAIT_TIMEOUT)
        assert record.ok
        assert [r.route for r in background.records][:2] == ["connect", "send"]
        result = background.invoke(
            "$send", b'{"requestContext": {"routeKey": "send"}}', timeout=WAIT_TIMEOUT
        )
        assert result.ok
    finally:
        client.close()
        background.stop()

    assert started, "the emulator started no worker processes"
    assert not alive(started)
    background.stop()


async def test_background_record_awaited_from_test_loop(make_project: ProjectFactory) -> None:
    root = make_project({"send": ECHO_HANDLER})

    with start(root).run_in_background() as background:
        waiting = asyncio.ensure_future(background.next_record_async("send", timeout=WAIT_TIMEOUT))
        async with WebSocketClient(background.url).connect() as websocket:
            await websocket.send_json({"action": "send"})
            record = await waiting

    assert record.route == "send"
    assert record.ok


def test_background_start_error_ends_thread(make_project: ProjectFactory) -> None:
    root = make_project({})
    with start(root).run_in_background() as first:
        busy = Emulator(root, port=first.port, internal_port=0, watch=False, ipv6_loopback=False)
        threads = set(threading.enumerate())
        started = time.monotonic()
        with pytest.raises(EmulatorError, match=str(first.port)):
            busy.run_in_background()
        assert time.monotonic() - started < WAIT_TIMEOUT
        assert set(threading.enumerate()) <= threads
