"""A worker killed while its environment is busy leaves no process behind."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import aiohttp
import psutil
import pytest

from tests.e2e.conftest import EmulatorFactory, Project
from tests.e2e.test_exec_support import wait_gone

BUSY_HANDLER = """
import json, os, subprocess, time

def handler(event, context):
    child = subprocess.Popen(["sleep", "60"])
    path = json.loads(event["body"])["pids"]
    with open(path + ".tmp", "w") as file:
        json.dump({"runtime": os.getpid(), "child": child.pid}, file)
    os.rename(path + ".tmp", path)
    time.sleep(30)
    return {"statusCode": 200}
"""


@pytest.mark.timeout(60)
async def test_killed_worker_takes_busy_tree_down(
    project: Project, start_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    project.handler("default", BUSY_HANDLER, config={"timeout": 60})
    emulator = await start_emulator()
    pid_file = tmp_path / "pids.json"
    async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
        await ws.send_str(json.dumps({"pids": str(pid_file)}))
        for _ in range(500):
            if pid_file.exists():
                break
            await asyncio.sleep(0.02)
        pids = json.loads(pid_file.read_text())
        runtime = psutil.Process(pids["runtime"])
        child = psutil.Process(pids["child"])
        worker = psutil.Process(runtime.ppid())
        assert "emulator.worker" in worker.cmdline()

        os.kill(worker.pid, signal.SIGKILL)

        # The invocation fails with the error frame; the connection stays.
        frame = json.loads(await ws.receive_str(timeout=20))
        assert frame["message"] == "Internal server error"
        assert not ws.closed
        await wait_gone([runtime, child], zombie_is_gone=True)


EXIT_AT_IMPORT = """
import json, os, subprocess

child = subprocess.Popen(["sleep", "60"])
with open(os.environ["PID_FILE"] + ".tmp", "w") as file:
    json.dump({"child": child.pid}, file)
os.rename(os.environ["PID_FILE"] + ".tmp", os.environ["PID_FILE"])
os._exit(3)

def handler(event, context):
    return {"statusCode": 200}
"""


@pytest.mark.timeout(60)
async def test_runtime_exiting_at_init_leaves_nothing(
    project: Project, start_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    pid_file = tmp_path / "init-pids.json"
    project.handler("default", EXIT_AT_IMPORT)
    (project.root / ".env").parent.mkdir(parents=True, exist_ok=True)
    (project.root / ".env").write_text(f"PID_FILE={pid_file}\n")
    emulator = await start_emulator()
    async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
        await ws.send_str("hello")
        frame = json.loads(await ws.receive_str(timeout=20))
        assert frame["message"] == "Internal server error"

    child_pid = json.loads(pid_file.read_text())["child"]
    try:
        child = psutil.Process(child_pid)
    except psutil.NoSuchProcess:
        return  # Already stopped and reaped.
    await wait_gone([child], zombie_is_gone=True)
