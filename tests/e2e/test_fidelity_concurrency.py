"""Concurrency: environments on demand up to a bound, a bounded queue, throttling, idle stops.

Handlers sleep to hold an environment busy and reply with their pid, so a
test can tell which environment served each message.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import psutil
import pytest

from emulator.invocation import ERROR_THROTTLED
from emulator.worker.pool import IDLE_SAMPLE_INTERVAL
from tests.e2e.conftest import EmulatorFactory, Project
from tests.e2e.test_exec_support import (
    LogCapture,
    assert_error_frame,
    capture_logs,
    descendant_pids,
    is_gone,
    receive_json,
    wait_until,
)
from tests.e2e.test_fidelity_support import (
    PY_MISBEHAVING,
    emulator_lines,
    function_lines_with,
    send_and_receive,
)

SLOW_SECONDS = 1.0


async def _burst(
    ws: aiohttp.ClientWebSocketResponse[bool], route: str, count: int
) -> list[tuple[float, dict[str, Any]]]:
    """Send `count` slow messages at once; return each frame with its delay after the send."""
    loop = asyncio.get_running_loop()
    request: dict[str, Any] = {"do": "sleep", "seconds": SLOW_SECONDS}
    if route != "default":
        request["action"] = route
    body = json.dumps(request)
    sent_at = loop.time()
    for _ in range(count):
        await ws.send_str(body)
    frames = []
    for _ in range(count):
        frame = await receive_json(ws)
        frames.append((loop.time() - sent_at, frame))
    return frames


def _started(frame: dict[str, Any]) -> float:
    started: float = frame["started"]
    return started


def _assert_throttled(logs: LogCapture, route: str, frame: dict[str, Any]) -> None:
    assert_error_frame(frame, frame["connectionId"])
    errors = emulator_lines(logs, frame["requestId"], logging.ERROR)
    assert len(errors) == 1, errors
    assert "was throttled" in errors[0]
    assert ERROR_THROTTLED in errors[0]
    assert len(function_lines_with(logs, route, ERROR_THROTTLED, "Rate Exceeded.")) == 1


@pytest.mark.timeout(60)
async def test_pool_grows_then_queues_then_throttles(
    project: Project, start_emulator: EmulatorFactory
) -> None:
    project.handler("default", PY_MISBEHAVING, config={"concurrency": 2})
    # No concurrency setting: the emulator's default_concurrency applies.
    project.handler("unset", PY_MISBEHAVING)
    with capture_logs() as logs:
        emulator = await start_emulator(route_responses=True, default_concurrency=1, queue_size=1)
        async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
            # Two run, one waits in the queue, one is throttled.
            frames = await _burst(ws, "default", 4)
            replies = [(delay, frame) for delay, frame in frames if "pid" in frame]
            errors = [frame for _, frame in frames if "pid" not in frame]
            assert len(replies) == 3, frames
            assert len(errors) == 1, frames
            assert len({frame["pid"] for _, frame in replies}) == 2
            # The first two ran at once; the queued one started when one of
            # them had ended, in the same environment.
            first, second, queued = sorted((frame for _, frame in replies), key=_started)
            assert second["started"] < first["ended"]
            ran_before = first if first["pid"] == queued["pid"] else second
            assert ran_before["pid"] == queued["pid"]
            assert queued["started"] >= ran_before["ended"]
            assert max(delay for delay, _ in replies) >= 2 * SLOW_SECONDS
            _assert_throttled(logs, "default", errors[0])

            # default_concurrency 1: one runs, one waits, one is throttled.
            frames = await _burst(ws, "unset", 3)
            replies = [(delay, frame) for delay, frame in frames if "pid" in frame]
            errors = [frame for _, frame in frames if "pid" not in frame]
            assert len(replies) == 2, frames
            assert len(errors) == 1, frames
            assert len({frame["pid"] for _, frame in replies}) == 1
            first, queued = sorted((frame for _, frame in replies), key=_started)
            assert queued["started"] >= first["ended"]
            _assert_throttled(logs, "unset", errors[0])

            # The connection is still served.
            after = await send_and_receive(ws, "after")
            assert after["connectionId"] == errors[0]["connectionId"]


@pytest.mark.timeout(60)
async def test_idle_environments_stop_but_one(
    project: Project, start_emulator: EmulatorFactory
) -> None:
    idle_timeout = 1.0
    project.handler("default", PY_MISBEHAVING, config={"concurrency": 2})
    with capture_logs() as logs:
        emulator = await start_emulator(route_responses=True, idle_environment_timeout=idle_timeout)
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
            warm = await _burst(ws, "default", 2)
            pids = {frame["pid"] for _, frame in warm}
            assert len(pids) == 2

            # A slow invocation keeps one environment busy; the other serves at once.
            await ws.send_str(json.dumps({"do": "sleep", "seconds": 3}))
            sent_at = loop.time()
            fast = await send_and_receive(ws, "fast")
            assert loop.time() - sent_at < 2
            slow = await receive_json(ws)
            assert fast["pid"] in pids
            assert slow["pid"] in pids - {fast["pid"]}
            # The fast one ran while the slow one was still sleeping.
            assert fast["ended"] < slow["ended"] - 1

            # One environment is stopped after the idle timeout; the other stays warm.
            processes = [psutil.Process(pid) for pid in pids]
            await wait_until(
                lambda: sum(not is_gone(process) for process in processes) == 1,
                "one idle environment to stop",
                timeout=idle_timeout + 3 * IDLE_SAMPLE_INTERVAL + 5,
            )
            survivor = next(process for process in processes if not is_gone(process))
            # No event reports that an environment was kept, so wait out
            # another idle period and check that it still serves.
            await asyncio.sleep(idle_timeout + 2 * IDLE_SAMPLE_INTERVAL)
            before = descendant_pids()
            after = await send_and_receive(ws, "after")
            assert after["pid"] == survivor.pid
            assert descendant_pids() == before

    stops = emulator_lines(logs, f"idle for {idle_timeout:.0f} s; stopping it")
    assert len(stops) == 1, stops
