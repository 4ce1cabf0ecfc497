"""Helpers that run the real runtime shims against a real `RuntimeApi`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from emulator.worker.runtime_api import InitFailure, RuntimeApi, RuntimeOutcome

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON_BOOTSTRAP = REPO_ROOT / "runtime_shim" / "python" / "bootstrap.py"
NODE_BOOTSTRAP = REPO_ROOT / "runtime_shim" / "node" / "bootstrap.mjs"

FUNCTION_NAME = "test-function"
FUNCTION_ARN = f"arn:aws:lambda:us-west-2:012345678912:function:{FUNCTION_NAME}"
MEMORY_MB = 256
LOG_STREAM = "2026/12/04/[$LATEST]0123456789abcdef0123456789abcdef"

# Bounds for waits on a real process; generous for a loaded CI machine.
STARTUP_TIMEOUT = 20.0
INVOKE_TIMEOUT = 20.0
# The maximum length in bytes of a shim's output line: some tests log
# messages of several MB. With asyncio's default of 64 KiB the output
# reader of `RuntimeProcess` stops, the pipe fills, and `Process.wait()`
# never returns.
MAX_OUTPUT_LINE = 32 * 1024 * 1024

NODE = shutil.which("node")
requires_node = pytest.mark.skipif(NODE is None, reason="node is not on PATH")


def lambda_env(
    port: int,
    task_root: Path,
    handler: str,
    *,
    runtime: str,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Return a minimal Lambda environment for a runtime process."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "_HANDLER": handler,
        "LAMBDA_TASK_ROOT": str(task_root),
        "LAMBDA_RUNTIME_DIR": str(REPO_ROOT / "runtime_shim"),
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
        "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(MEMORY_MB),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{FUNCTION_NAME}",
        "AWS_LAMBDA_LOG_STREAM_NAME": LOG_STREAM,
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": "us-west-2",
        "AWS_DEFAULT_REGION": "us-west-2",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{runtime}",
    }
    if runtime.startswith("python"):
        env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


class RuntimeProcess:
    """A running shim process whose stdout and stderr are collected line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @property
    def pid(self) -> int:
        return self.process.pid

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
            self._changed.set()
        self._changed.set()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def wait_for_output(self, text: str, timeout: float = INVOKE_TIMEOUT) -> str:
        """Return the first output line that contains `text`, waiting for it if needed."""
        return await asyncio.wait_for(self._find_line(text), timeout)

    async def _find_line(self, text: str) -> str:
        while True:
            for line in self.lines:
                if text in line:
                    return line
            if self._reader.done():
                raise AssertionError(f"no output line contains {text!r}:\n{self.output}")
            self._changed.clear()
            await self._changed.wait()

    async def wait_exit(self, timeout: float = STARTUP_TIMEOUT) -> int:
        """Wait for the process to exit and its output to be read; return the exit code."""
        code = await asyncio.wait_for(self.process.wait(), timeout)
        await asyncio.wait_for(self._reader, timeout)
        return code

    async def kill(self) -> None:
        if self.process.returncode is None:
            # The process leads its own session, so this reaches its children too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        await self.process.wait()
        # The pipe closes with the process unless a stray child keeps it open.
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), STARTUP_TIMEOUT)
        except asyncio.TimeoutError:
            self._reader.cancel()


async def invoke(
    api: RuntimeApi,
    event: bytes = b"{}",
    *,
    request_id: str | None = None,
    timeout_ms: int = 30_000,
    trace_id: str = "Root=1-00000000-000000000000000000000000;Sampled=0",
) -> RuntimeOutcome:
    """Run one invocation with a deadline `timeout_ms` from now, bounded by INVOKE_TIMEOUT."""
    if request_id is None:
        request_id = f"request-{time.monotonic_ns()}"
    deadline_ms = int(time.time() * 1000) + timeout_ms
    call = api.invoke(request_id, event, deadline_ms, trace_id)
    return await asyncio.wait_for(call, INVOKE_TIMEOUT)


async def init_failure(api: RuntimeApi) -> InitFailure:
    """Wait for the end of init, failing the test unless the runtime posted an init error."""
    failure = await asyncio.wait_for(api.wait_init(), STARTUP_TIMEOUT)
    assert failure is not None, "init finished without an error"
    return failure


async def wait_init(api: RuntimeApi) -> None:
    """Wait for a successful init, failing the test on an init error."""
    failure = await asyncio.wait_for(api.wait_init(), STARTUP_TIMEOUT)
    assert failure is None, f"init failed: {failure}"


def write_files(root: Path, files: Mapping[str, str]) -> Path:
    """Write `{relative path: text}` under `root` and return `root`."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
