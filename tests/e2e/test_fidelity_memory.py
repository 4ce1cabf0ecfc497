"""The memory limit: an environment whose process tree passes `memory` is killed.

Handlers allocate for real: Python fills a bytes object, Node.js fills
Buffers, and a child process allocates in the last test. REPORT's
`Max Memory Used` must show what was measured.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from emulator.invocation import ERROR_OUT_OF_MEMORY
from tests.e2e.conftest import EmulatorFactory, Project, node_available
from tests.e2e.test_exec_support import (
    REPORT_PATTERN,
    assert_error_frame,
    capture_logs,
    invocation_lines,
    receive_json,
)
from tests.e2e.test_fidelity_support import (
    NODE_MISBEHAVING,
    PY_MISBEHAVING,
    assert_recovered,
    emulator_lines,
    misbehave,
    send_and_receive,
    wait_for_tree,
)

LIMIT_MB = 128
# Under the limit with any runtime's own footprint (Node.js 20 starts near 45 MB).
UNDER_LIMIT_MB = 50
OVER_LIMIT_MB = 300


def _report(lines: list[str], request_id: str) -> dict[str, str | None]:
    match = REPORT_PATTERN.fullmatch(invocation_lines(lines, request_id)[-1])
    assert match is not None, invocation_lines(lines, request_id)
    return match.groupdict()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("runtime", ["python", "node"])
async def test_memory_limit_kills_environment(
    project: Project, start_emulator: EmulatorFactory, runtime: str
) -> None:
    if runtime == "node" and not node_available():
        pytest.skip("node is not installed")
    source = PY_MISBEHAVING if runtime == "python" else NODE_MISBEHAVING
    project.handler("default", source, runtime=runtime, config={"memory": LIMIT_MB})
    with capture_logs() as logs:
        emulator = await start_emulator(route_responses=True)
        async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
            # Under the limit: the peak shows in REPORT.
            under = await send_and_receive(
                ws, misbehave("alloc", "under", mb=UNDER_LIMIT_MB, hold=0.3)
            )
            assert under["allocated"] == UNDER_LIMIT_MB << 20
            await logs.wait_for_line("default", f"^REPORT RequestId: {under['requestId']}")

            # Over the limit: killed, replaced, and the invocation fails.
            await ws.send_str(misbehave("alloc", "over", mb=OVER_LIMIT_MB, hold=5))
            tree = await wait_for_tree(logs, "default", "over")
            frame = await receive_json(ws)
            assert_error_frame(frame, under["connectionId"])
            after = await assert_recovered(ws, under["connectionId"], tree)
            assert after["pid"] != under["pid"]

    lines = logs.function_lines("default")
    under_report = _report(lines, under["requestId"])
    assert int(under_report["memory_size"] or 0) == LIMIT_MB
    assert UNDER_LIMIT_MB <= int(under_report["max_memory"] or 0) < LIMIT_MB

    over_lines = invocation_lines(lines, tree.request_id)
    assert ERROR_OUT_OF_MEMORY in over_lines
    over_report = _report(lines, tree.request_id)
    assert int(over_report["max_memory"] or 0) > LIMIT_MB
    assert over_report["timeout"] is None

    gateway_errors = emulator_lines(logs, frame["requestId"], logging.ERROR)
    assert len(gateway_errors) == 1, gateway_errors
    assert ERROR_OUT_OF_MEMORY in gateway_errors[0]
    assert tree.request_id in gateway_errors[0]
    # The worker warns once that it killed the environment, without the ids.
    kills = emulator_lines(logs, f"over the {LIMIT_MB} MB limit; killing it")
    assert len(kills) == 1, kills
    assert emulator_lines(logs, f"over the {LIMIT_MB} MB limit", logging.ERROR) == []


@pytest.mark.timeout(60)
async def test_memory_of_child_process_counts(
    project: Project, start_emulator: EmulatorFactory
) -> None:
    project.handler("default", PY_MISBEHAVING, config={"memory": LIMIT_MB, "timeout": 30})
    with capture_logs() as logs:
        emulator = await start_emulator(route_responses=True)
        loop_time = asyncio.get_running_loop().time
        async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
            first = await send_and_receive(ws, "hello")
            sent_at = loop_time()
            await ws.send_str(misbehave("child-alloc", "child", mb=OVER_LIMIT_MB))
            tree = await wait_for_tree(logs, "default", "child")
            frame = await receive_json(ws)
            # Long before the 30 s timeout: the memory check ended it.
            assert loop_time() - sent_at < 10
            assert_error_frame(frame, first["connectionId"])
            await assert_recovered(ws, first["connectionId"], tree)

    over_lines = invocation_lines(logs.function_lines("default"), tree.request_id)
    assert ERROR_OUT_OF_MEMORY in over_lines
    report = _report(logs.function_lines("default"), tree.request_id)
    assert int(report["max_memory"] or 0) > LIMIT_MB
