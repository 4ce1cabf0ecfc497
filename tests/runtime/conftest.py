"""Fixtures for the Runtime API and runtime shim tests.

Every test gets its own Runtime API server on 127.0.0.1 (port 0) and spawns
shim processes with a hand-built Lambda environment. Every process a test
spawns is killed when the test ends.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Protocol

import pytest

from emulator.worker.runtime_api import RuntimeApi

from .helpers import (
    FUNCTION_ARN,
    MAX_OUTPUT_LINE,
    NODE,
    NODE_BOOTSTRAP,
    PYTHON_BOOTSTRAP,
    RuntimeProcess,
    lambda_env,
)

Spawn = Callable[..., Awaitable[RuntimeProcess]]


class HasPort(Protocol):
    """A Runtime API server to point a shim at: the worker's, or a test's own."""

    @property
    def port(self) -> int: ...


@pytest.fixture
async def runtime_api() -> AsyncIterator[RuntimeApi]:
    api = RuntimeApi(function_arn=FUNCTION_ARN)
    await api.start()
    try:
        yield api
    finally:
        await api.close()


@pytest.fixture
async def spawn() -> AsyncIterator[Spawn]:
    """Start shim processes: `await spawn(api, "python" | "node", task_root, handler, ...)`."""
    processes: list[RuntimeProcess] = []

    async def start(
        api: HasPort,
        language: str,
        task_root: Path,
        handler: str,
        *,
        extra_env: Mapping[str, str] | None = None,
    ) -> RuntimeProcess:
        if language == "python":
            command = [sys.executable, str(PYTHON_BOOTSTRAP)]
            runtime = f"python{sys.version_info.major}.{sys.version_info.minor}"
        elif language == "node":
            assert NODE is not None
            command = [NODE, str(NODE_BOOTSTRAP)]
            runtime = "nodejs20.x"
        else:
            raise ValueError(f"unknown language {language!r}")
        env = lambda_env(api.port, task_root, handler, runtime=runtime, extra=extra_env)
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=task_root,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            limit=MAX_OUTPUT_LINE,
        )
        runtime_process = RuntimeProcess(process)
        processes.append(runtime_process)
        return runtime_process

    try:
        yield start
    finally:
        for process in processes:
            await process.kill()
