"""Workers and execution environments, seen through real sockets and real processes.

Each test writes handlers into tmp_path, starts the emulator on free ports
and drives it with a WebSocket client. Handlers reply through route
responses (`route_responses=True`) with their runtime's pid, so that a test
can tell which process served each message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
from typing import Any

import aiohttp
import psutil
import pytest

from tests.e2e.conftest import EmulatorFactory, Project
from tests.e2e.test_exec_support import (
    REPORT_PATTERN,
    assert_error_frame,
    capture_logs,
    descendant_pids,
    invocation_lines,
    receive_json,
    wait_for_runtimes,
    wait_gone,
    wait_until,
    worker_processes,
)

# Replies with its pid. A JSON body `{"sleep": seconds}` makes it sleep first.
PID_HANDLER = """
import json, os, time

def handler(event, context):
    try:
        request = json.loads(event.get("body") or "")
    except ValueError:
        request = None
    if isinstance(request, dict):
        time.sleep(request.get("sleep", 0))
    return {"statusCode": 200, "body": json.dumps({
        "pid": os.getpid(),
        "route": event["requestContext"]["routeKey"],
        "connectionId": event["requestContext"]["connectionId"],
    })}
"""

# On "hang", prints its pid and the API Gateway request id, then sleeps.
HANG_HANDLER = """
import json, os, time

def handler(event, context):
    if event["body"] == "hang":
        print(f"hanging pid={os.getpid()} request={event['requestContext']['requestId']}")
        time.sleep(60)
    return {"statusCode": 200, "body": json.dumps({
        "pid": os.getpid(),
        "connectionId": event["requestContext"]["connectionId"],
    })}
"""

# On "hang", starts a child process, prints both pids, then sleeps past any timeout.
TREE_HANDLER = """
import json, os, subprocess, time

def handler(event, context):
    if event["body"] == "hang":
        child = subprocess.Popen(["sleep", "60"])
        print(f"tree runtime={os.getpid()} child={child.pid}")
        time.sleep(60)
    return {"statusCode": 200, "body": json.dumps({
        "pid": os.getpid(),
        "connectionId": event["requestContext"]["connectionId"],
    })}
"""


async def _send_and_receive(ws: aiohttp.ClientWebSocketResponse[bool], text: str) -> dict[str, Any]:
    await ws.send_str(text)
    reply: dict[str, Any] = await receive_json(ws)
    return reply


def _listening_ports(process: psutil.Process) -> list[int]:
    connections = process.net_connections(kind="tcp")
    return [c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN]


# Processes


async def test_one_worker_per_handler_directory(
    project: Project, start_emulator: EmulatorFactory
) -> None:
    project.handler("default", PID_HANDLER)
    project.handler("rooms/join", PID_HANDLER)
    emulator = await start_emulator()

    workers = worker_processes()
    assert len(emulator.app.functions) == 4
    assert len(workers) == 4
    assert all(worker.ppid() == os.getpid() for worker in workers)

    # Each worker runs one prewarmed environment, in its own handler directory.
    runtimes = await wait_for_runtimes(4)
    assert sorted(runtime.ppid() for runtime in runtimes) == sorted(w.pid for w in workers)
    handler_dirs = {str(function.src) for function in emulator.app.functions}
    assert {runtime.cwd() for runtime in runtimes} == handler_dirs


async def test_warm_invocations_start_no_process(
    project: Project, start_emulator: EmulatorFactory
) -> None:
    project.handler("default", PID_HANDLER)
    emulator = await start_emulator(route_responses=True)
    async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
        first = await _send_and_receive(ws, "first")
        before = descendant_pids()

        pids = [(await _send_and_receive(ws, f"warm {index}"))["pid"] for index in range(5)]

        assert descendant_pids() == before
        assert pids == [first["pid"]] * 5


async def test_first_message_is_warm_after_start(
    project: Project, start_emulator: EmulatorFactory
) -> None:
    project.handler("default", PID_HANDLER)
    emulator = await start_emulator(route_responses=True)
    prewarmed = await wait_for_runtimes(3)
    before = descendant_pids()

    async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
        reply = await _send_and_receive(ws, "first")

    assert reply["pid"] in {runtime.pid for runtime in prewarmed}
    assert descendant_pids() == before


async def test_first_message_is_cold_without_prewarm(
    project: Project, start_emulator: EmulatorFactory
) -> None:
    project.handler("default", PID_HANDLER)
    emulator = await start_emulator(route_responses=True, prewarm=False)
    assert all(not worker.children() for worker in worker_processes())

    async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
        before = descendant_pids()
        reply = await _send_and_receive(ws, "first")

    assert reply["pid"] not in before


# Processes that die


@pytest.mark.timeout(60)
async def test_killed_worker_is_replaced(project: Project, start_emulator: EmulatorFactory) -> None:
    project.handler("default", PID_HANDLER)
    with capture_logs() as logs:
        emulator = await start_emulator(route_responses=True)
        async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
            first = await _send_and_receive(ws, "before")
            runtime = psutil.Process(first["pid"])
            worker = psutil.Process(runtime.ppid())
            assert "emulator.worker" in worker.cmdline()

            os.kill(worker.pid, signal.SIGKILL)
            exited = f"worker {worker.pid} for route default exited"
            await logs.wait_for(
                lambda: next(
                    (m for m in logs.messages("emulator.supervisor") if exited in m), None
                ),
                what=exited,
            )
            # Sent while the replacement worker may still be starting.
            reply = await _send_and_receive(ws, "after")

            assert not ws.closed
            assert reply["connectionId"] == first["connectionId"]
            assert reply["pid"] != first["pid"]
            new_worker = psutil.Process(psutil.Process(reply["pid"]).ppid())
            assert new_worker.pid != worker.pid
            assert "emulator.worker" in new_worker.cmdline()
            assert len(worker_processes()) == len(emulator.app.functions)

    # The orphaned runtime loses its Runtime API and exits. Its new parent
    # is init, which may reap it late, so an exited zombie counts as gone.
    await wait_gone([runtime], zombie_is_gone=True)


async def test_dead_idle_environment_is_replaced(
    project: Project, start_emulator: EmulatorFactory
) -> None:
    project.handler("default", PID_HANDLER)
    emulator = await start_emulator(route_responses=True)
    async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
        first = await _send_and_receive(ws, "before")
        runtime = psutil.Process(first["pid"])
        worker = psutil.Process(runtime.ppid())

        runtime.kill()
        await wait_gone([runtime])
        await wait_until(
            lambda: any(child.pid != runtime.pid for child in worker.children()),
            "a replacement environment",
        )
        # The dead environment's Runtime API server is closed: only the
        # replacement's listens.
        await wait_until(
            lambda: len(_listening_ports(worker)) == 1, "one Runtime API server in the worker"
        )
        # Two messages at once take two environments, and neither may be the dead one.
        await ws.send_str(json.dumps({"sleep": 0.5}))
        await ws.send_str(json.dumps({"sleep": 0.5}))
        replies = [await receive_json(ws), await receive_json(ws)]

    assert all("pid" in reply for reply in replies), replies
    assert runtime.pid not in {reply["pid"] for reply in replies}


async def test_killed_busy_environment_fails_invocation(
    project: Project, start_emulator: EmulatorFactory
) -> None:
    project.handler("default", HANG_HANDLER, config={"timeout": 30})
    with capture_logs() as logs:
        emulator = await start_emulator(route_responses=True)
        async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
            first = await _send_and_receive(ws, "hello")
            await ws.send_str("hang")
            line = await logs.wait_for_line("default", r"hanging pid=\d+ request=\S+")
            match = re.search(r"hanging pid=(\d+) request=(\S+)", line)
            assert match is not None
            pid, request_id = int(match.group(1)), match.group(2)

            os.kill(pid, signal.SIGKILL)
            frame = await receive_json(ws)
            after = await _send_and_receive(ws, "after")

    assert_error_frame(frame, first["connectionId"])
    assert frame["requestId"] == request_id
    lines = logs.function_lines("default")
    assert any("Runtime exited with error: signal: killed" in line for line in lines)
    assert "Runtime.ExitError" in lines
    gateway_errors = logs.messages("emulator.gateway", logging.ERROR)
    assert any(request_id in m and "Runtime.ExitError" in m for m in gateway_errors)
    assert after["pid"] != pid


# Timeouts


@pytest.mark.timeout(60)
async def test_timeout_kills_the_environment_tree(
    project: Project, start_emulator: EmulatorFactory
) -> None:
    project.handler("default", TREE_HANDLER, config={"timeout": 1})
    with capture_logs() as logs:
        emulator = await start_emulator(route_responses=True)
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
            first = await _send_and_receive(ws, "hello")
            sent_at = loop.time()
            await ws.send_str("hang")
            line = await logs.wait_for_line("default", r"tree runtime=\d+ child=\d+")
            match = re.search(r"tree runtime=(\d+) child=(\d+)", line)
            assert match is not None
            tree = [psutil.Process(int(match.group(1))), psutil.Process(int(match.group(2)))]

            frame = await receive_json(ws)
            failed_after = loop.time() - sent_at
            await wait_gone(tree, timeout=5)
            after = await _send_and_receive(ws, "after")

    assert_error_frame(frame, first["connectionId"])
    assert 1.0 <= failed_after < 4.0
    assert after["pid"] != tree[0].pid

    lines = logs.function_lines("default")
    report = next(m for m in map(REPORT_PATTERN.fullmatch, lines) if m and m["timeout"])
    invocation = invocation_lines(lines, report["request_id"])
    assert invocation[1] == line
    assert invocation[2].endswith(f"{report['request_id']} Task timed out after 1.00 seconds")
    assert invocation[-2] == f"END RequestId: {report['request_id']}"
    assert 1000 <= float(report["duration"]) < 3000


async def test_connect_timeout_rejects_with_502(
    project: Project, start_emulator: EmulatorFactory
) -> None:
    project.handler(
        "connect",
        """
        import time

        def handler(event, context):
            time.sleep(10)
            return {"statusCode": 200}
        """,
        config={"timeout": 1},
    )
    with capture_logs() as logs:
        emulator = await start_emulator()
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as raised:
                await session.ws_connect(emulator.url)

    assert raised.value.status == 502
    rejections = [m for m in logs.messages("emulator.gateway") if "rejected connection" in m]
    assert len(rejections) == 1
    assert "502" in rejections[0]
    assert "timed out" in rejections[0]


# Concurrency


async def test_messages_run_concurrently(project: Project, start_emulator: EmulatorFactory) -> None:
    project.handler("default", PID_HANDLER)
    emulator = await start_emulator(route_responses=True)
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
        await _send_and_receive(ws, "warm up")
        started = loop.time()
        await ws.send_str(json.dumps({"sleep": 2}))
        await ws.send_str(json.dumps({"sleep": 2}))
        replies = [await receive_json(ws), await receive_json(ws)]
        elapsed = loop.time() - started

    assert replies[0]["pid"] != replies[1]["pid"]
    # One after the other they would take 4 s; the second environment's
    # cold start gets the rest.
    assert 2.0 <= elapsed < 3.5


async def test_slow_function_does_not_delay_another(
    project: Project, start_emulator: EmulatorFactory
) -> None:
    project.handler("default", PID_HANDLER)
    project.handler("slow", PID_HANDLER)
    emulator = await start_emulator(route_responses=True)
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
        await ws.send_str(json.dumps({"action": "slow", "sleep": 2}))
        started = loop.time()
        await ws.send_str("fast")
        first = await receive_json(ws)
        first_after = loop.time() - started
        second = await receive_json(ws)

    assert first["route"] == "$default"
    assert second["route"] == "slow"
    assert first_after < 1.0
