"""How invocations end under real emulators: timeouts, exits, failed starts, log batches.

A worker ends the Runtime API call of an invocation through callbacks: a
timer for the timeout and the runtime's exit. Handlers here time out,
exit, exit at the moment of their timeout, or pass their memory limit,
with another message queued behind them. Each message must get exactly
one frame in reply, and the queued one must run on the replacement
environment. Other tests cover an init timeout with messages waiting, the
JSON log lines of a batch of function output, and a Node.js module that
fails its init asynchronously.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from emulator.invocation import ERROR_EXIT, ERROR_OUT_OF_MEMORY, ERROR_TIMEOUT
from emulator.logs import JsonFormatter
from emulator.worker.environment import INIT_TIMEOUT
from tests.e2e.conftest import EmulatorFactory, Project, node_available
from tests.e2e.test_exec_support import assert_error_frame, receive_json

# Act on `{"do": ...}` messages, then reply with the runtime's pid.
PY_ACTIONS = """
import json, os, threading, time

def handler(event, context):
    request = json.loads(event.get("body") or "{}")
    action = request.get("do")
    if action == "sleep":
        time.sleep(request["seconds"])
    elif action == "exit-after":
        time.sleep(request["seconds"])
        os._exit(request.get("status", 3))
    elif action == "alloc":
        block = b"x" * (request["mb"] << 20)
        time.sleep(5)
    elif action == "reply-then-exit":
        threading.Timer(request["delay"], os._exit, [0]).start()
    reply = {"tag": request.get("tag"), "pid": os.getpid(), "requestId": context.aws_request_id}
    return {"statusCode": 200, "body": json.dumps(reply)}
"""

ANSWER_TIMEOUT = 20.0


def message(action: str | None = None, tag: str = "", **arguments: Any) -> str:
    return json.dumps({"do": action, "tag": tag, **arguments})


async def assert_nothing_more(ws: aiohttp.ClientWebSocketResponse[bool]) -> None:
    """Check that no further frame arrives within half a second."""
    with pytest.raises(asyncio.TimeoutError):
        await ws.receive_str(timeout=0.5)


@pytest.mark.parametrize(
    ("action", "arguments", "error_type"),
    [
        ("sleep", {"seconds": 5}, ERROR_TIMEOUT),
        ("exit-after", {"seconds": 0.3}, ERROR_EXIT),
        ("alloc", {"mb": 400}, ERROR_OUT_OF_MEMORY),
    ],
    ids=["timeout", "exit", "out-of-memory"],
)
@pytest.mark.timeout(90)
async def test_queued_message_after_failure(
    project: Project,
    start_emulator: EmulatorFactory,
    action: str,
    arguments: dict[str, Any],
    error_type: str,
) -> None:
    project.handler("default", PY_ACTIONS, config={"timeout": 1, "concurrency": 1, "memory": 128})
    emulator = await start_emulator(route_responses=True)
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(emulator.url) as failing,
        session.ws_connect(emulator.url) as queued,
    ):
        await failing.send_str(message("sleep", "warm", seconds=0))
        warm = await receive_json(failing, ANSWER_TIMEOUT)
        emulator.clear_records()

        await failing.send_str(message(action, "failing", **arguments))
        await asyncio.sleep(0.2)
        # Concurrency 1: this one waits for the failing invocation's environment.
        await queued.send_str(message(tag="queued"))

        frame = await receive_json(failing, ANSWER_TIMEOUT)
        assert_error_frame(frame, frame["connectionId"])
        served = await receive_json(queued, ANSWER_TIMEOUT)
        assert served["tag"] == "queued"
        assert served["pid"] != warm["pid"]
        await assert_nothing_more(failing)
        await assert_nothing_more(queued)

    failed = await emulator.next_record("default", matches=lambda record: not record.ok)
    assert failed.error_type == error_type


@pytest.mark.parametrize("offset", [-0.05, -0.01, 0.0, 0.01, 0.05])
@pytest.mark.timeout(90)
async def test_exit_at_timeout(
    project: Project, start_emulator: EmulatorFactory, offset: float
) -> None:
    # The runtime exits within milliseconds of its 1 s timeout: either
    # cause may win, but each message gets one frame and the queued one runs.
    project.handler("default", PY_ACTIONS, config={"timeout": 1, "concurrency": 1})
    emulator = await start_emulator(route_responses=True)
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(emulator.url) as racing,
        session.ws_connect(emulator.url) as queued,
    ):
        await racing.send_str(message("exit-after", "racing", seconds=1.0 + offset))
        await asyncio.sleep(0.2)
        await queued.send_str(message(tag="queued"))

        frame = await receive_json(racing, ANSWER_TIMEOUT)
        assert_error_frame(frame, frame["connectionId"])
        served = await receive_json(queued, ANSWER_TIMEOUT)
        assert served["tag"] == "queued"

        await racing.send_str(message(tag="next"))
        following = await receive_json(racing, ANSWER_TIMEOUT)
        assert following["tag"] == "next"
        assert following["pid"] == served["pid"]
        await assert_nothing_more(racing)
        await assert_nothing_more(queued)

    failed = await emulator.next_record("default", matches=lambda record: not record.ok)
    assert failed.error_type in (ERROR_TIMEOUT, ERROR_EXIT)
    succeeded = await emulator.next_record("default", matches=lambda record: record.ok)
    assert succeeded.request_id == served["requestId"]


# The first environment hangs in init until the init timeout stops it;
# every later one starts at once.
PY_FIRST_INIT_HANGS = """
import json, os, time

try:
    os.mkdir(MARKER)
    time.sleep(120)
except FileExistsError:
    pass


def handler(event, context):
    request = json.loads(event.get("body") or "{}")
    reply = {"tag": request.get("tag"), "pid": os.getpid()}
    return {"statusCode": 200, "body": json.dumps(reply)}
"""


@pytest.mark.timeout(90)
async def test_init_timeout_fails_one_of_three(
    project: Project, start_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    marker = tmp_path / "first-init"
    source = PY_FIRST_INIT_HANGS.replace("MARKER", repr(str(marker)))
    project.handler("default", source, config={"concurrency": 1})
    emulator = await start_emulator(route_responses=True, prewarm=False)
    async with aiohttp.ClientSession() as session:
        sockets = [await session.ws_connect(emulator.url) for _ in range(3)]
        try:
            for index, ws in enumerate(sockets):
                await ws.send_str(message(tag=str(index)))
                await asyncio.sleep(0.2)
            # The first message starts the environment whose init times
            # out; the other two wait for it, then for its replacement.
            answers = [await receive_json(ws, INIT_TIMEOUT + ANSWER_TIMEOUT) for ws in sockets]
        finally:
            for ws in sockets:
                await ws.close()

    assert_error_frame(answers[0], answers[0]["connectionId"])
    assert [answer["tag"] for answer in answers[1:]] == ["1", "2"]
    assert answers[1]["pid"] == answers[2]["pid"]
    failed = await emulator.next_record("default", matches=lambda record: not record.ok)
    assert failed.error_type == ERROR_TIMEOUT


# -- function lines in batches ----------------------------------------------------------

PY_PRINTS_LINES = """
import sys

def handler(event, context):
    for index in range(3000):
        print(f"line {index}")
    print("")
    sys.stdout.write("carriage\\rreturn\\r\\n")
    sys.stdout.write("\\r\\n")
    sys.stdout.write("tab\\there \\u00e9\\n")
    sys.stdout.write("no final newline")
    return {"statusCode": 200}
"""

# The function's own lines, as the output reader splits them (at "\n" and "\r").
EXPECTED_OUTPUT = [
    *(f"line {index}" for index in range(3000)),
    "",
    "carriage",
    "return",
    "",
    "tab\there \u00e9",
    "no final newline",
]


@pytest.mark.timeout(60)
async def test_json_lines_of_a_batch(project: Project, start_emulator: EmulatorFactory) -> None:
    project.handler("default", PY_PRINTS_LINES)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("emulator")
    previous_level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        emulator = await start_emulator()
        async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
            await ws.send_str("print")
            record = await emulator.next_record("default", timeout=ANSWER_TIMEOUT)
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)

    assert record.ok, record
    assert list(record.output) == EXPECTED_OUTPUT

    # One JSON object per line, and the function's lines in order.
    objects = [json.loads(line) for line in stream.getvalue().splitlines()]
    lines = [
        item
        for item in objects
        if item.get("route") == "default" and item.get("requestId") == record.request_id
    ]
    assert [item["type"] for item in lines[:1] + lines[-2:]] == ["START", "END", "REPORT"]
    output = lines[1:-2]
    assert {item["type"] for item in output} == {"output"}
    assert [item["message"] for item in output] == EXPECTED_OUTPUT


# -- Node.js init errors ----------------------------------------------------------------

NODE_REJECTS_AT_INIT = """
Promise.reject(new Error('async init failed'));
exports.handler = async () => ({ statusCode: 200 });
"""


@pytest.mark.skipif(not node_available(), reason="node is not on PATH")
@pytest.mark.timeout(60)
async def test_node_rejection_at_init(project: Project, start_emulator: EmulatorFactory) -> None:
    project.handler("default", NODE_REJECTS_AT_INIT, runtime="node")
    emulator = await start_emulator(prewarm=False)
    async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
        await ws.send_str("hello")
        frame = await receive_json(ws, ANSWER_TIMEOUT)
        assert_error_frame(frame, frame["connectionId"])

    failed = await emulator.next_record("default", timeout=ANSWER_TIMEOUT)
    assert failed.error_type == "Runtime.UnhandledPromiseRejection", failed.error_message
    assert failed.error_message == "Error: async init failed"
