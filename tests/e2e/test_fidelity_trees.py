"""Process trees that resist: children and runtimes that ignore SIGTERM.

The `stubborn` route's runtime ignores SIGTERM itself, and both routes
start children that ignore it. Timeouts and the memory limit end a tree
with SIGKILL at once. A reload and a shutdown send SIGTERM first, then
SIGKILL after a deadline, and warn when they have to.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import pytest

from emulator.invocation import ERROR_OUT_OF_MEMORY
from emulator.worker.environment import STOP_KILL_TIMEOUT, STOP_TERM_TIMEOUT
from tests.e2e.conftest import EmulatorFactory, Project
from tests.e2e.test_exec_support import (
    LogCapture,
    assert_error_frame,
    capture_logs,
    invocation_lines,
    receive_json,
    wait_gone,
)
from tests.e2e.test_fidelity_support import (
    PY_IGNORES_SIGTERM,
    PY_MISBEHAVING,
    Tree,
    assert_logged_once,
    assert_recovered,
    misbehave,
    send_and_receive,
    wait_for_tree,
)

ESCALATION_WARNING = f"ignored SIGTERM for {STOP_TERM_TIMEOUT:.1f} s, sending SIGKILL"


def _stubborn_project(project: Project, config: dict[str, object] | None = None) -> None:
    """Write `default` (a plain runtime) and `stubborn` (one that ignores SIGTERM)."""
    project.handler("default", PY_MISBEHAVING, config=config)
    project.handler("stubborn", PY_IGNORES_SIGTERM + PY_MISBEHAVING, config=config)


def _escalations(logs: LogCapture) -> list[str]:
    return [m for m in logs.messages("emulator", logging.WARNING) if ESCALATION_WARNING in m]


def _assert_escalated(logs: LogCapture, plain: Tree, stubborn: Tree) -> None:
    """Check one escalation per tree, naming exactly the processes that ignored SIGTERM."""
    escalated = [
        {int(pid) for pid in message.rpartition(": ")[2].split(", ")}
        for message in _escalations(logs)
    ]
    assert len(escalated) == 2, _escalations(logs)
    # The plain runtime exits on SIGTERM; its children and the whole
    # stubborn tree wait for SIGKILL.
    assert plain.pids - {plain.runtime_pid} in escalated
    assert stubborn.pids in escalated
    assert not [m for m in logs.messages("emulator", logging.ERROR) if "survived SIGKILL" in m]


async def _start_stubborn_trees(
    ws: aiohttp.ClientWebSocketResponse[bool], logs: LogCapture, seconds: float
) -> list[Tree]:
    """Start a tree with two SIGTERM-ignoring children on each route; wait for both."""
    trees = []
    for route in ("default", "stubborn"):
        await ws.send_str(misbehave("stubborn", route, route=route, children=2, seconds=seconds))
        trees.append(await wait_for_tree(logs, route, route))
    return trees


@pytest.mark.timeout(60)
async def test_timeout_and_memory_kill_stubborn_tree(
    project: Project, start_emulator: EmulatorFactory
) -> None:
    _stubborn_project(project, {"timeout": 1, "memory": 128})
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("timeout", {"seconds": 60}, "Task timed out after 1.00 seconds"),
        ("memory", {"then": "alloc", "mb": 300, "seconds": 60}, ERROR_OUT_OF_MEMORY),
    ]
    failures = []
    with capture_logs() as logs:
        emulator = await start_emulator(route_responses=True)
        async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
            first = await send_and_receive(ws, json.dumps({"action": "stubborn"}))
            for tag, arguments, expected in cases:
                await ws.send_str(
                    misbehave("stubborn", tag, route="stubborn", children=2, **arguments)
                )
                tree = await wait_for_tree(logs, "stubborn", tag)
                assert len(tree.processes) == 3
                frame = await receive_json(ws)
                assert_error_frame(frame, first["connectionId"])
                # SIGKILL needs no escalation: the tree goes at once.
                await wait_gone(tree.processes, timeout=STOP_KILL_TIMEOUT + 1)
                await assert_recovered(ws, first["connectionId"], tree, route="stubborn")
                failures.append((tree, frame, expected))

    lines = logs.function_lines("stubborn")
    for tree, frame, expected in failures:
        assert any(expected in line for line in invocation_lines(lines, tree.request_id))
        assert_logged_once(logs, "stubborn", tree.request_id, frame, expected)
    assert _escalations(logs) == []


@pytest.mark.timeout(60)
async def test_reload_stops_stubborn_trees(
    project: Project, start_emulator: EmulatorFactory
) -> None:
    _stubborn_project(project)
    with capture_logs() as logs:
        emulator = await start_emulator(route_responses=True, watch=True)
        async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
            # The invocations end, and the children keep running in the background.
            trees = await _start_stubborn_trees(ws, logs, seconds=0)
            replies = [await receive_json(ws), await receive_json(ws)]
            connection_id = replies[0]["connectionId"]

            for route in ("default", "stubborn"):
                handler_file = project.root / "src" / "ws" / route / "lambda.py"
                handler_file.write_text(handler_file.read_text() + "\n# edited\n")
            for tree in trees:
                await wait_gone(tree.processes, timeout=15)
            for tree, route in zip(trees, ("default", "stubborn"), strict=True):
                await assert_recovered(ws, connection_id, tree, route=route)

    _assert_escalated(logs, *trees)


@pytest.mark.timeout(60)
async def test_shutdown_stops_stubborn_trees(
    project: Project, start_emulator: EmulatorFactory
) -> None:
    _stubborn_project(project, {"timeout": 60})
    with capture_logs() as logs:
        emulator = await start_emulator(route_responses=True)
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
            # `default` goes idle with its children running; `stubborn` stays busy.
            idle_tree_reply = await send_and_receive(
                ws, misbehave("stubborn", "default", children=2, seconds=0)
            )
            idle_tree = await wait_for_tree(logs, "default", "default")
            await ws.send_str(
                misbehave("stubborn", "stubborn", route="stubborn", children=2, seconds=60)
            )
            busy_tree = await wait_for_tree(logs, "stubborn", "stubborn")
            assert idle_tree_reply["pid"] in idle_tree.pids

        # The client has left; the busy invocation runs on until the shutdown.
        started = loop.time()
        await emulator.stop()
        stop_duration = loop.time() - started

    for tree in (idle_tree, busy_tree):
        await wait_gone(tree.processes, timeout=1)
    # Each step has its deadline: SIGTERM's is waited out, SIGKILL ends it.
    assert STOP_TERM_TIMEOUT <= stop_duration < STOP_TERM_TIMEOUT + STOP_KILL_TIMEOUT + 4
    _assert_escalated(logs, idle_tree, busy_tree)
