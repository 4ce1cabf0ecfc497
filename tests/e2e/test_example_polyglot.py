"""The polyglot example app (examples/polyglot), run whole with a real client.

Each custom route runs in another runtime and replies through the
management API. The test fails, naming the missing program, on a machine
without one of the runtimes.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import psutil
import pytest
from websockets.asyncio.client import ClientConnection, connect

from emulator.app import Emulator
from emulator.config import Options
from emulator.errors import EmulatorError
from tests.e2e.conftest import REPO_ROOT

pytestmark = pytest.mark.timeout(60)

POLYGLOT = REPO_ROOT / "examples" / "polyglot"
ROUTES = ["python", "node", "ruby", "deno", "shell"]
# Each runtime reports the version of its interpreter in its own format.
VERSION_PATTERNS = {
    "python": r"3\.\d+\.\d+",
    "node": r"\d+\.\d+\.\d+",
    "ruby": r"\d+\.\d+\.\d+",
    "deno": r"\d+\.\d+\.\d+",
    "shell": r"\d+\.\d+\.\d+\(\d+\)-release",
}


def _descendants() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


@pytest.fixture
async def polyglot() -> AsyncIterator[Emulator]:
    before = _descendants()
    emulator = Emulator(POLYGLOT, Options(port=0, internal_port=0, watch=False))
    try:
        await emulator.start()
    except EmulatorError as error:
        pytest.fail(f"the polyglot example needs a runtime this machine lacks: {error}")
    try:
        yield emulator
    finally:
        await emulator.stop()
    alive = [pid for pid in _descendants() - before if psutil.pid_exists(pid)]
    assert not alive, f"processes left behind after stop: {alive}"


async def receive_json(ws: ClientConnection, timeout: float = 20) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def test_every_runtime_replies(polyglot: Emulator) -> None:
    async with connect(polyglot.url, open_timeout=10) as ws:
        for route in ROUTES:
            text = f"hello, {route} \u2713"
            await ws.send(json.dumps({"action": route, "text": text}))

            reply = await receive_json(ws)

            assert reply["runtime"] == route
            assert reply["text"] == text
            assert re.fullmatch(VERSION_PATTERNS[route], reply["version"]), reply


async def test_runtimes_serve_concurrently(polyglot: Emulator) -> None:
    async with connect(polyglot.url, open_timeout=10) as ws:
        for route in ROUTES:
            await ws.send(json.dumps({"action": route, "text": route}))

        replies = [await receive_json(ws) for _ in ROUTES]

    assert sorted(reply["runtime"] for reply in replies) == sorted(ROUTES)
    assert all(reply["text"] == reply["runtime"] for reply in replies)


async def test_unknown_action_lists_routes(polyglot: Emulator) -> None:
    async with connect(polyglot.url, open_timeout=10) as ws:
        message = json.dumps({"action": "cobol", "text": "?"})
        await ws.send(message)

        assert await receive_json(ws) == {"routes": ROUTES, "received": message}
