"""The per-invocation log lines: START, the function's output, END and REPORT.

Lines are captured with a `logging.Handler` on the `emulator` logger, where
the gateway forwards what its workers send, each record carrying the route
it belongs to.
"""

from __future__ import annotations

import math
import re

import aiohttp
import pytest

from emulator.logs import OutputFormatter, function_lines
from tests.e2e.conftest import OK_HANDLER, EmulatorFactory, Project
from tests.e2e.test_exec_support import (
    END_PATTERN,
    REPORT_PATTERN,
    START_PATTERN,
    capture_logs,
    invocation_lines,
    receive_json,
)

PY_HANDLER = """
import json, os, sys

def handler(event, context):
    body = event["body"]
    print(f"stdout {body}")
    print(f"stderr {body}", file=sys.stderr)
    if body == "big":
        block = b"x" * (200 * 1024 * 1024)
        print(f"allocated {len(block)} bytes")
    if body == "raise":
        raise ValueError(f"failed on {body}")
    return {"statusCode": 200, "body": json.dumps({
        "requestId": context.aws_request_id,
        "pid": os.getpid(),
    })}
"""

NODE_HANDLER = """
exports.handler = async (event, context) => {
  console.log(`stdout ${event.body}`);
  process.stderr.write(`stderr ${event.body}\\n`);
  return {
    statusCode: 200,
    body: JSON.stringify({ requestId: context.awsRequestId, pid: process.pid }),
  };
};
"""

# What each runtime makes of the handler's two output lines for `body`.
ISO_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
OUTPUT_LINES = {
    "python": lambda request_id, body: [f"stdout {body}", f"stderr {body}"],
    "node": lambda request_id, body: [
        rf"{ISO_TIME}\t{request_id}\tINFO\tstdout {body}",
        f"stderr {body}",
    ],
}


def _report(line: str) -> re.Match[str]:
    match = REPORT_PATTERN.fullmatch(line)
    assert match is not None, f"not a REPORT line: {line!r}"
    return match


@pytest.mark.parametrize("runtime", ["python", "node"])
async def test_invocation_lines_in_order(
    project: Project, start_emulator: EmulatorFactory, runtime: str
) -> None:
    source = PY_HANDLER if runtime == "python" else NODE_HANDLER
    project.handler("default", source, runtime=runtime, config={"memory": 256})
    with capture_logs() as logs:
        emulator = await start_emulator(route_responses=True)
        async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
            request_ids = []
            for body in ("one", "two", "three"):
                await ws.send_str(body)
                request_ids.append((await receive_json(ws))["requestId"])

        lines = logs.function_lines("default")
        for index, (request_id, body) in enumerate(
            zip(request_ids, ("one", "two", "three"), strict=True)
        ):
            invocation = invocation_lines(lines, request_id)
            assert invocation[0] == f"START RequestId: {request_id} Version: $LATEST"
            expected_output = OUTPUT_LINES[runtime](request_id, body)
            assert len(invocation) == len(expected_output) + 3, invocation
            for line, pattern in zip(invocation[1:-2], expected_output, strict=True):
                assert re.fullmatch(pattern, line), (line, pattern)
            assert invocation[-2] == f"END RequestId: {request_id}"

            report = _report(invocation[-1])
            assert report["request_id"] == request_id
            assert invocation[-1].count("\t") == (4 if index else 5)
            assert int(report["billed"]) == max(1, math.ceil(float(report["duration"])))
            assert int(report["memory_size"]) == 256
            assert 1 <= int(report["max_memory"]) < 256
            assert report["timeout"] is None
            # The environment started at startup, so only its first REPORT
            # has an Init Duration.
            if index == 0:
                assert report["init"] is not None
                assert float(report["init"]) > 0
            else:
                assert report["init"] is None

        # Every line of an invocation is attributed to its route.
        formatter = OutputFormatter()
        for record in logs.records:
            lines = function_lines(record)
            if any(request_id in line for line in lines for request_id in request_ids):
                assert record.name == "emulator.function.default"
                assert getattr(record, "route", None) == "default"
                expected = [f"[default] {line}" for line in lines]
                assert formatter.format(record).split("\n") == expected


async def test_builtin_routes_are_logged(project: Project, start_emulator: EmulatorFactory) -> None:
    project.handler("default", OK_HANDLER)
    with capture_logs() as logs:
        emulator = await start_emulator()
        async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
            await ws.send_str("hello")
            await logs.wait_for_line("default", "^REPORT ")
        await logs.wait_for_line("disconnect", "^REPORT ")

    for route in ("connect", "default", "disconnect"):
        lines = logs.function_lines(route)
        assert len(lines) == 3, lines
        start = START_PATTERN.fullmatch(lines[0])
        end = END_PATTERN.fullmatch(lines[1])
        report = REPORT_PATTERN.fullmatch(lines[2])
        assert start is not None
        assert end is not None
        assert report is not None
        assert start["request_id"] == end["request_id"] == report["request_id"]


async def test_error_output_between_start_and_end(
    project: Project, start_emulator: EmulatorFactory
) -> None:
    project.handler("default", PY_HANDLER)
    with capture_logs() as logs:
        emulator = await start_emulator(route_responses=True)
        async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
            await ws.send_str("raise")
            frame = await receive_json(ws)
            report_line = await logs.wait_for_line("default", "^REPORT ")

    assert frame["message"] == "Internal server error"
    request_id = _report(report_line)["request_id"]
    invocation = invocation_lines(logs.function_lines("default"), request_id)
    assert invocation[1:3] == ["stdout raise", "stderr raise"]
    assert "[ERROR] ValueError: failed on raise" in invocation[3:-2]
    assert invocation[-2] == f"END RequestId: {request_id}"


async def test_max_memory_used_is_measured(
    project: Project, start_emulator: EmulatorFactory
) -> None:
    project.handler("default", PY_HANDLER)
    with capture_logs() as logs:
        emulator = await start_emulator(route_responses=True)
        async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
            await ws.send_str("small")
            small_id = (await receive_json(ws))["requestId"]
            await ws.send_str("big")
            big_id = (await receive_json(ws))["requestId"]

    lines = logs.function_lines("default")
    small = _report(invocation_lines(lines, small_id)[-1])
    big = _report(invocation_lines(lines, big_id)[-1])
    assert int(small["memory_size"]) == int(big["memory_size"]) == 1152
    assert int(small["max_memory"]) < 100
    assert int(big["max_memory"]) - int(small["max_memory"]) >= 190


async def test_init_duration_once_per_environment(
    project: Project, start_emulator: EmulatorFactory
) -> None:
    project.handler(
        "default",
        """
        import json, os, time

        def handler(event, context):
            time.sleep(float(event["body"]))
            return {"statusCode": 200, "body": json.dumps({
                "requestId": context.aws_request_id,
                "pid": os.getpid(),
            })}
        """,
    )
    replies = []
    with capture_logs() as logs:
        emulator = await start_emulator(route_responses=True)
        async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
            # Two at once need a second environment; the last reuses a warm one.
            for batch in (["0"], ["0.5", "0.5"], ["0"]):
                for body in batch:
                    await ws.send_str(body)
                replies += [await receive_json(ws) for _ in batch]

    pid_of = {reply["requestId"]: reply["pid"] for reply in replies}
    assert len(set(pid_of.values())) == 2
    reports = [_report(line) for line in logs.function_lines("default") if line.startswith("REP")]
    assert len(reports) == 4
    seen_pids = set()
    for report in reports:
        pid = pid_of[report["request_id"]]
        if pid in seen_pids:
            assert report["init"] is None, report.string
        else:
            assert report["init"] is not None, report.string
        seen_pids.add(pid)
