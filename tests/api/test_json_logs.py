"""`--log-format json`: every log line parses as JSON, with typed START, END and REPORT objects."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import psutil

from emulator.testing import WebSocketClient
from tests.api.conftest import ECHO_HANDLER, ProjectFactory, alive, cli_environ, run_cli

# Seconds the CLI gets to print its banner, and to write an expected line.
START_TIMEOUT = 60.0
LINE_TIMEOUT = 30.0

SLOW_HANDLER = """
import time

def handler(event, context):
    time.sleep(10)
"""

REPORT_KEYS = {
    "type",
    "route",
    "requestId",
    "durationMs",
    "billedDurationMs",
    "memorySizeMB",
    "maxMemoryUsedMB",
    "initDurationMs",
    "status",
    "time",
}


def parse_lines(text: str) -> list[dict[str, Any]]:
    objects = []
    for line in text.splitlines():
        parsed = json.loads(line)
        assert isinstance(parsed, dict), line
        objects.append(parsed)
    return objects


def check_time(value: str) -> None:
    assert value.endswith("Z")
    assert datetime.fromisoformat(value.removesuffix("Z") + "+00:00")


def test_invoke_lines(make_project: ProjectFactory) -> None:
    root = make_project({"send": ECHO_HANDLER})

    completed = run_cli("invoke", "send", root, "--log-format", "json", "--log-level", "INFO")

    assert completed.returncode == 0, completed.stderr
    objects = parse_lines(completed.stderr)
    function = [item for item in objects if item["type"] != "log"]
    assert [item["type"] for item in function] == ["START", "output", "END", "REPORT"]
    start, output, end, report = function
    request_id = start["requestId"]
    assert start == {
        "type": "START",
        "route": "send",
        "requestId": request_id,
        "version": "$LATEST",
        "time": start["time"],
    }
    assert output == {
        "type": "output",
        "route": "send",
        "requestId": request_id,
        "message": "got send",
        "time": output["time"],
    }
    assert end["requestId"] == request_id
    assert set(report) == REPORT_KEYS
    assert report["requestId"] == request_id
    assert isinstance(report["durationMs"], float)
    assert report["billedDurationMs"] >= report["durationMs"]
    assert isinstance(report["billedDurationMs"], int)
    assert report["memorySizeMB"] == 1152
    assert report["maxMemoryUsedMB"] > 0
    # prewarm is off for invoke, so this was a cold start.
    assert report["initDurationMs"] > 0
    assert report["status"] is None
    for item in objects:
        check_time(item["time"])
    own = [item for item in objects if item["type"] == "log"]
    assert own, "no emulator records at --log-level INFO"
    for item in own:
        assert set(item) == {"type", "level", "logger", "message", "time"}
        assert item["logger"].startswith("emulator")
        assert item["level"] in ("DEBUG", "INFO", "WARNING", "ERROR")


def test_timeout_report_status(make_project: ProjectFactory) -> None:
    root = make_project({"send": SLOW_HANDLER}, config={"send": {"timeout": 1}})

    completed = run_cli("invoke", "send", root, "--log-format", "json")

    assert completed.returncode == 1
    objects = parse_lines(completed.stderr)
    report = [item for item in objects if item["type"] == "REPORT"]
    assert len(report) == 1
    assert report[0]["status"] == "timeout"
    assert report[0]["durationMs"] >= 1000
    messages = [item["message"] for item in objects if item["type"] == "output"]
    assert any(message.endswith("Task timed out after 1.00 seconds") for message in messages)


def test_config_error_as_json(make_project: ProjectFactory) -> None:
    root = make_project({})

    completed = run_cli("invoke", "nope", root, "--log-format", "json")

    assert completed.returncode == 2
    (error,) = parse_lines(completed.stderr)
    assert error["type"] == "log"
    assert error["level"] == "ERROR"
    assert "route nope not found" in error["message"]


@contextlib.asynccontextmanager
async def running_cli(*arguments: str) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "emulator",
        *arguments,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_environ(),
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_start_lines(make_project: ProjectFactory) -> None:
    root = make_project({"send": ECHO_HANDLER})

    async with running_cli(
        "start", str(root), "--port", "0", "--internal-port", "0", "--no-watch",
        "--host", "127.0.0.1", "--log-format", "json",
    ) as process:  # fmt: skip
        assert process.stdout is not None
        assert process.stderr is not None
        url = None
        while url is None:
            banner = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
            assert banner, "the CLI exited before printing its URL"
            found = re.search(r"WebSocket URL:\s+(ws://\S+)", banner.decode())
            url = found[1] if found else None

        async with WebSocketClient(url).connect() as websocket:
            await websocket.send_json({"action": "send"})

        lines: list[dict[str, Any]] = []
        while not any(item["type"] == "REPORT" and item["route"] == "send" for item in lines):
            line = await asyncio.wait_for(process.stderr.readline(), LINE_TIMEOUT)
            assert line, "the CLI exited before logging the REPORT of send"
            lines.append(json.loads(line))

        children = {child.pid for child in psutil.Process(process.pid).children(recursive=True)}
        process.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(process.stderr.read(), LINE_TIMEOUT)
        assert await process.wait() == 0
        assert children, "the CLI started no worker processes"
        assert not alive(children)

    lines.extend(parse_lines(rest.decode()))
    types = {(item["type"], item.get("route")) for item in lines}
    assert ("REPORT", "connect") in types
    assert ("output", "send") in types
    assert ("REPORT", "disconnect") in types
    stopping = [item for item in lines if item["type"] == "log" and item["message"] == "stopped"]
    assert stopping, "no JSON record of the stop"
