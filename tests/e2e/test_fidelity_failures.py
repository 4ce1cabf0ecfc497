"""Lambda's failures, caused by real handlers: exits, signals, init errors, big responses.

Each failure must reach the client as the error frame and leave the
connection open. The emulator logs it once: one ERROR line of the gateway
names the route, the API Gateway request id of the error frame, the Lambda
request id and the cause. The function's own log keeps Lambda's wording
(START, the error, END, REPORT).
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from emulator.invocation import ERROR_EXIT, ERROR_RESPONSE_TOO_LARGE
from emulator.worker.environment import INIT_TIMEOUT
from tests.e2e.conftest import EmulatorFactory, Project, node_available
from tests.e2e.test_exec_support import (
    REPORT_PATTERN,
    START_PATTERN,
    assert_error_frame,
    capture_logs,
    invocation_lines,
    receive_json,
    worker_processes,
)
from tests.e2e.test_fidelity_support import (
    PY_MISBEHAVING,
    assert_logged_once,
    assert_recovered,
    emulator_lines,
    function_lines_with,
    misbehave,
    send_and_receive,
    wait_for_tree,
)

# Init failures: route -> (runtime, handler file or None, source, error type, message part).
INIT_FAILURES: dict[str, tuple[str, str | None, str, str, str]] = {
    "import-error": (
        "python",
        "lambda.py",
        """
        import os
        with open(os.environ["SPAWN_LOG"], "a") as log:
            log.write(f"{os.getpid()}\\n")
        import module_that_does_not_exist
        def handler(event, context):
            return {"statusCode": 200}
        """,
        "Runtime.ImportModuleError",
        "No module named 'module_that_does_not_exist'",
    ),
    "syntax-error": (
        "python",
        "lambda.py",
        """
        def handler(event, context)
            return {"statusCode": 200}
        """,
        "Runtime.UserCodeSyntaxError",
        "Syntax error in module 'lambda'",
    ),
    "missing-method": (
        "python",
        "lambda.py",
        """
        def other(event, context):
            return {"statusCode": 200}
        """,
        "Runtime.HandlerNotFound",
        "Handler 'handler' missing on module 'lambda'",
    ),
    "missing-file": (
        "python",
        None,
        "",
        "Runtime.ImportModuleError",
        "No module named 'lambda'",
    ),
    "node-import-error": (
        "node",
        "index.js",
        """
        require('module-that-does-not-exist');
        exports.handler = async () => ({ statusCode: 200 });
        """,
        "Runtime.ImportModuleError",
        "Cannot find module 'module-that-does-not-exist'",
    ),
}
INVOCATIONS_PER_ROUTE = 3


@pytest.mark.timeout(60)
async def test_runtime_exit_fails_invocation(
    project: Project, start_emulator: EmulatorFactory
) -> None:
    project.handler("default", PY_MISBEHAVING)
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("exit", {"status": 3}, "Runtime exited with error: exit status 3"),
        ("sigkill", {}, "Runtime exited with error: signal: killed"),
    ]
    failures = []
    with capture_logs() as logs:
        emulator = await start_emulator(route_responses=True)
        async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
            first = await send_and_receive(ws, "hello")
            for action, arguments, cause in cases:
                await ws.send_str(misbehave(action, action, **arguments))
                tree = await wait_for_tree(logs, "default", action)
                frame = await receive_json(ws)
                assert_error_frame(frame, first["connectionId"])
                await assert_recovered(ws, first["connectionId"], tree)
                failures.append((tree.request_id, frame, cause))

    lines = logs.function_lines("default")
    for request_id, frame, cause in failures:
        invocation = invocation_lines(lines, request_id)
        # START, the tree line, Lambda's error line and type, END, REPORT.
        assert len(invocation) == 6, invocation
        assert re.fullmatch(rf"\S+Z {request_id} Error: {re.escape(cause)}", invocation[2])
        assert invocation[3] == ERROR_EXIT
        assert function_lines_with(logs, "default", request_id, cause) == [invocation[2]]
        report = REPORT_PATTERN.fullmatch(invocation[-1])
        assert report is not None
        # Measured: the runtime was resident, even though it died in a few ms.
        assert int(report["max_memory"]) >= 5
        assert_logged_once(logs, "default", request_id, frame, cause)
        assert ERROR_EXIT in emulator_lines(logs, request_id)[0]


@pytest.mark.timeout(60)
async def test_init_failure_reported_without_respawn(
    project: Project, start_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    if not node_available():
        pytest.skip("node is not installed")
    spawn_log = tmp_path / "spawns.log"
    spawn_log.touch()
    for route, (runtime, filename, source, _, _) in INIT_FAILURES.items():
        directory = project.handler(route, source or "", runtime=runtime, filename=filename)
        if filename is None:
            (directory / "lambda.py").unlink()
    (project.root / ".env").parent.mkdir(parents=True, exist_ok=True)
    (project.root / ".env").write_text(f"SPAWN_LOG={spawn_log}\n")

    frames: dict[str, list[dict[str, Any]]] = {route: [] for route in INIT_FAILURES}
    with capture_logs() as logs:
        emulator = await start_emulator()
        async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
            for _ in range(INVOCATIONS_PER_ROUTE):
                for route in INIT_FAILURES:
                    await ws.send_str(json.dumps({"action": route}))
                    frames[route].append(await receive_json(ws))
            await ws.send_str("still served")
            await logs.wait_for_line("default", "^REPORT ")
            assert not ws.closed

    # The import error's module ran once: one runtime process, not one per invocation.
    assert len(spawn_log.read_text().split()) == 1
    # The failed runtimes exited, and none was started again: only the
    # runtimes of connect, default and disconnect are left.
    runtimes = [child for worker in worker_processes() for child in worker.children()]
    assert len(runtimes) == 3, runtimes
    for route, (_, _, _, error_type, message) in INIT_FAILURES.items():
        connection_id = frames[route][0]["connectionId"]
        for frame in frames[route]:
            assert_error_frame(frame, connection_id)
        lines = logs.function_lines(route)
        # The runtime reports its init error once, when it starts; no
        # invocation starts another runtime.
        init_reports = [
            line for line in lines if error_type in line and not re.search(r"[0-9a-f-]{36}", line)
        ]
        assert len(init_reports) == 1, init_reports
        starts = [match for match in map(START_PATTERN.fullmatch, lines) if match]
        assert len(starts) == INVOCATIONS_PER_ROUTE
        for start, frame in zip(starts, frames[route], strict=True):
            request_id = start["request_id"]
            failure = function_lines_with(logs, route, request_id, error_type, message)
            assert len(failure) == 1, invocation_lines(lines, request_id)
            assert_logged_once(logs, route, request_id, frame, message)
            assert error_type in emulator_lines(logs, request_id)[0]


@pytest.mark.timeout(60)
async def test_oversized_response_fails(project: Project, start_emulator: EmulatorFactory) -> None:
    project.handler("default", PY_MISBEHAVING)
    with capture_logs() as logs:
        emulator = await start_emulator(route_responses=True)
        async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
            first = await send_and_receive(ws, "hello")
            await ws.send_str(misbehave("big-response", "big", mb=7))
            tree = await wait_for_tree(logs, "default", "big")
            frame = await receive_json(ws)
            assert_error_frame(frame, first["connectionId"])
            # The runtime survives a rejected response: the same process serves on.
            after = await send_and_receive(ws, "after")
            assert after["connectionId"] == first["connectionId"]
            assert after["pid"] == first["pid"]

    assert tree.pids == {first["pid"]}
    assert_logged_once(logs, "default", tree.request_id, frame, ERROR_RESPONSE_TOO_LARGE)
    assert "exceeded maximum allowed payload size" in emulator_lines(logs, tree.request_id)[0]


# The first environment starts at once; every later one hangs in init
# until the init timeout stops it. Replies go through the management API.
PY_LATER_INITS_HANG = """
import json, os, time, urllib.parse, urllib.request

try:
    os.mkdir(MARKER)
except FileExistsError:
    time.sleep(120)


def handler(event, context):
    request = json.loads(event["body"])
    time.sleep(request.get("sleep", 0))
    endpoint = os.environ["AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"]
    connection_id = urllib.parse.quote(event["requestContext"]["connectionId"], safe="")
    reply = json.dumps({"tag": request["tag"], "pid": os.getpid()}).encode()
    urllib.request.urlopen(f"{endpoint}/@connections/{connection_id}", data=reply).close()
    return {"statusCode": 200}
"""


@pytest.mark.timeout(90)
async def test_failed_start_fails_one_waiter(
    project: Project, start_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    marker = tmp_path / "first-init"
    source = PY_LATER_INITS_HANG.replace("MARKER", repr(str(marker)))
    project.handler("default", source, config={"concurrency": 2, "timeout": 60})
    emulator = await start_emulator()
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(emulator.url) as busy,
        session.ws_connect(emulator.url) as starting,
        session.ws_connect(emulator.url) as queued,
    ):
        # The prewarmed environment stays busy past the init timeout of the
        # second, which its invocation starts. The third invocation waits
        # for the busy one: the failed start is not its to fail.
        await busy.send_str(json.dumps({"tag": "busy", "sleep": INIT_TIMEOUT + 3}))
        await asyncio.sleep(1.0)
        await starting.send_str(json.dumps({"tag": "starting"}))
        await asyncio.sleep(1.0)
        await queued.send_str(json.dumps({"tag": "queued"}))

        failed = await receive_json(starting, timeout=INIT_TIMEOUT + 10)
        assert failed["message"] == "Internal server error"
        first = await receive_json(busy, timeout=20)
        served = await receive_json(queued, timeout=20)
    assert first["tag"] == "busy"
    assert served == {"tag": "queued", "pid": first["pid"]}
