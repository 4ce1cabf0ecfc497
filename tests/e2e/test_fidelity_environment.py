"""User variables from prefs.arc, and cold and warm starts as REPORT shows them."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from emulator.app import Emulator
from tests.e2e.conftest import EmulatorFactory, Project
from tests.e2e.test_exec_support import (
    REPORT_PATTERN,
    capture_logs,
    invocation_lines,
    wait_for_runtimes,
    worker_processes,
)
from tests.e2e.test_fidelity_support import send_and_receive

ENV_HANDLER = """
import json, os

def handler(event, context):
    return {"statusCode": 200, "body": json.dumps({"env": dict(os.environ)})}
"""

INIT_SECONDS = 0.5
# Spends INIT_SECONDS in its init phase, at import.
SLOW_INIT_HANDLER = f"""
import json, os, time

time.sleep({INIT_SECONDS})

def handler(event, context):
    return {{"statusCode": 200, "body": json.dumps({{
        "pid": os.getpid(),
        "requestId": context.aws_request_id,
    }})}}
"""


async def test_prefs_arc_env_reaches_function(
    project: Project, start_emulator: EmulatorFactory
) -> None:
    project.handler("default", ENV_HANDLER)
    project.write()
    (project.root / "prefs.arc").write_text(
        "@env\n"
        "testing\n"
        "  GREETING hello-from-prefs\n"
        "  PORT_TEXT 0080\n"
        "staging\n"
        "  STAGING_ONLY yes\n"
    )
    emulator = await start_emulator(route_responses=True)
    async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
        env: dict[str, str] = (await send_and_receive(ws, "env"))["env"]

    assert env["GREETING"] == "hello-from-prefs"
    # Values stay text as written, leading zeros included.
    assert env["PORT_TEXT"] == "0080"
    assert "STAGING_ONLY" not in env


async def _wait_for_warm_environments(emulator: Emulator, count: int) -> None:
    """Wait until `count` environments finished their init, as the health check reports."""
    url = f"http://127.0.0.1:{emulator.port}/_emulator/health"
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            async with session.get(url) as response:
                health: dict[str, Any] = await response.json()
            if health["environments"] >= count:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} warm environments: {health}")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("prewarm", [True, False], ids=["prewarm", "cold"])
async def test_init_duration_on_first_invocation(
    project: Project, start_emulator: EmulatorFactory, prewarm: bool
) -> None:
    project.handler("default", SLOW_INIT_HANDLER)
    with capture_logs() as logs:
        emulator = await start_emulator(route_responses=True, prewarm=prewarm)
        if prewarm:
            await _wait_for_warm_environments(emulator, len(emulator.app.functions))
        else:
            assert not [child for worker in worker_processes() for child in worker.children()]
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
            sent_at = loop.time()
            first = await send_and_receive(ws, "first")
            first_latency = loop.time() - sent_at
            second = await send_and_receive(ws, "second")
        if not prewarm:
            # The environment started for the first message, and stayed.
            assert first["pid"] in {runtime.pid for runtime in await wait_for_runtimes(1)}

    assert first["pid"] == second["pid"]
    lines = logs.function_lines("default")
    first_report = REPORT_PATTERN.fullmatch(invocation_lines(lines, first["requestId"])[-1])
    second_report = REPORT_PATTERN.fullmatch(invocation_lines(lines, second["requestId"])[-1])
    assert first_report is not None
    assert second_report is not None

    # The environment's first REPORT has the init time, cold or prewarmed.
    assert first_report["init"] is not None
    assert float(first_report["init"]) >= INIT_SECONDS * 1000
    assert second_report["init"] is None
    # Init is not part of the invocation's Duration.
    assert float(first_report["duration"]) < INIT_SECONDS * 1000
    if prewarm:
        assert first_latency < INIT_SECONDS
    else:
        assert first_latency >= INIT_SECONDS
