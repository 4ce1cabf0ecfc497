"""The measurements, each a client workload against a WebSocket URL on 127.0.0.1.

Every loop is bounded by a count, and every wait by a timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.processes import BENCH_APP, Server, echo_server, emulator

REPLY_TIMEOUT = 30.0
PYTHON_MESSAGE = "ping"
NODE_MESSAGE = json.dumps({"action": "node", "text": "ping"})


def _connector() -> aiohttp.TCPConnector:
    return aiohttp.TCPConnector(limit=0, force_close=True)


async def round_trips(url: str, message: str, count: int, warmup: int) -> list[float]:
    """Return `count` round-trip times in ms: send, wait for the reply, one at a time."""
    samples: list[float] = []
    async with (
        aiohttp.ClientSession(connector=_connector()) as session,
        session.ws_connect(url) as ws,
    ):
        for index in range(warmup + count):
            started = time.perf_counter()
            await ws.send_str(message)
            await ws.receive_str(timeout=REPLY_TIMEOUT)
            if index >= warmup:
                samples.append((time.perf_counter() - started) * 1000)
    return samples


async def throughput(
    url: str, message: str, clients: int, per_client: int, warmup_rounds: int = 1
) -> float:
    """Return replies per second with `clients` connections each sending `per_client` messages.

    Each client first sends `warmup_rounds` messages, which are not
    counted: the emulator starts its environments during those.
    """
    async with aiohttp.ClientSession(connector=_connector()) as session:
        sockets = await asyncio.gather(*(session.ws_connect(url) for _ in range(clients)))

        async def drive(ws: aiohttp.ClientWebSocketResponse[bool]) -> None:
            for _ in range(per_client):
                await ws.send_str(message)
                await ws.receive_str(timeout=REPLY_TIMEOUT)

        for _ in range(max(1, warmup_rounds)):
            await asyncio.gather(*(_one_round(ws, message) for ws in sockets))
        started = time.perf_counter()
        await asyncio.gather(*(drive(ws) for ws in sockets))
        elapsed = time.perf_counter() - started
        await asyncio.gather(*(ws.close() for ws in sockets))
    return clients * per_client / elapsed


async def _one_round(ws: aiohttp.ClientWebSocketResponse[bool], message: str) -> None:
    await ws.send_str(message)
    await ws.receive_str(timeout=REPLY_TIMEOUT)


async def connect_rate(url: str, count: int, concurrency: int) -> float:
    """Return new connections per second: `concurrency` clients connect and close in turn."""
    remaining = count

    async with aiohttp.ClientSession(connector=_connector()) as session:

        async def connect_loop() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                ws = await session.ws_connect(url)
                await ws.close()

        started = time.perf_counter()
        await asyncio.gather(*(connect_loop() for _ in range(concurrency)))
        return count / (time.perf_counter() - started)


async def idle_memory(server: Server, count: int, batch: int = 100) -> float:
    """Return the server's resident memory per idle connection, in KiB, for `count` connections."""
    async with aiohttp.ClientSession(connector=_connector()) as session:
        # Warm the server's code paths before the first reading.
        warm = [await session.ws_connect(server.url) for _ in range(10)]
        await asyncio.sleep(0.5)
        before = server.rss_bytes()
        sockets: list[aiohttp.ClientWebSocketResponse[bool]] = []
        for start in range(0, count, batch):
            size = min(batch, count - start)
            sockets += await asyncio.gather(*(session.ws_connect(server.url) for _ in range(size)))
        await asyncio.sleep(1.0)
        after = server.rss_bytes()
        await asyncio.gather(*(ws.close() for ws in [*sockets, *warm]))
    return (after - before) / count / 1024


def bare_import_ms(handler_dir: Path, module: str) -> float:
    """Return the wall time of starting a bare interpreter that imports the handler."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=handler_dir,
        env={
            **os.environ,
            "PYTHONPATH": str(handler_dir),
            # Read at import; nothing connects to it.
            "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI": "http://127.0.0.1:9",
        },
        check=True,
        capture_output=True,
    )
    return (time.perf_counter() - started) * 1000


def bare_handler_dir(scratch: Path) -> Path:
    """Copy the default handler to a directory where it imports as `handler_module`."""
    directory = scratch / "bare"
    directory.mkdir(exist_ok=True)
    source = (BENCH_APP / "src" / "ws" / "default" / "lambda.py").read_text()
    (directory / "handler_module.py").write_text(source)
    return directory


async def cold_start(scratch: Path) -> tuple[float, float]:
    """Return the first invocation's round trip without prewarming, and the bare-import baseline."""
    async with emulator(BENCH_APP, None, "--no-prewarm") as server:
        samples = await round_trips(server.url, PYTHON_MESSAGE, count=1, warmup=0)
    env_dir = bare_handler_dir(scratch)
    baseline = bare_import_ms(env_dir, "handler_module")
    return samples[0], baseline


async def reload_time(scratch: Path) -> float:
    """Return ms from a handler file write to the first reply from the new code."""
    project = scratch / "reload-app"
    if project.exists():
        shutil.rmtree(project)
    shutil.copytree(BENCH_APP, project)
    handler = project / "src" / "ws" / "default" / "lambda.py"
    original = handler.read_text()
    async with (
        emulator(project) as server,
        aiohttp.ClientSession(connector=_connector()) as session,
        session.ws_connect(server.url) as ws,
    ):
        await _one_round(ws, PYTHON_MESSAGE)
        marker = f"new-{time.monotonic_ns()}"
        changed = original.replace('body=event["body"]', f'body="{marker}"')
        started = time.perf_counter()
        handler.write_text(changed)
        deadline = started + 20
        while time.perf_counter() < deadline:
            await ws.send_str(PYTHON_MESSAGE)
            if await ws.receive_str(timeout=REPLY_TIMEOUT) == marker:
                return (time.perf_counter() - started) * 1000
            await asyncio.sleep(0.002)
    raise RuntimeError("no reply from the new code within 20 s of the edit")


async def _first_connection(server: Server) -> float:
    """Return seconds from the server's launch to its first accepted WebSocket connection."""
    deadline = time.perf_counter() + 60
    async with aiohttp.ClientSession(connector=_connector()) as session:
        while time.perf_counter() < deadline:
            try:
                ws = await session.ws_connect(server.url)
            except aiohttp.ClientError:
                await asyncio.sleep(0.005)
                continue
            accepted = time.perf_counter()
            await ws.close()
            return accepted - server.started_at
    raise RuntimeError("no connection was accepted within 60 s")


async def startup() -> tuple[float, float]:
    """Return the emulator's and the echo server's launch-to-first-connection time, in ms."""
    async with emulator() as server:
        emulated = await _first_connection(server)
    async with echo_server() as server:
        bare = await _first_connection(server)
    return emulated * 1000, bare * 1000


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="arc-ws-bench-"))
