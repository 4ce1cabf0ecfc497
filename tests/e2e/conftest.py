"""Fixtures for end-to-end tests: real projects in tmp_path, real emulators on 127.0.0.1.

`project` writes an Architect project: `project.handler("default", PY_ECHO)`
adds a handler directory, `project.write()` writes `app.arc`. `emulator`
starts an `Emulator` for it on free ports, with real worker and runtime
processes, and stops it (and checks that no process is left) afterwards.
"""

from __future__ import annotations

import os
import shutil
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from emulator.app import Emulator
from emulator.config import Options

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO_ROOT / "tests" / "node" / "node_modules"

RUNTIME_FILES = {"python": "lambda.py", "node": "index.js", "node-esm": "index.mjs"}
RUNTIMES = {"python": "python3.11", "node": "nodejs20.x", "node-esm": "nodejs20.x"}


@dataclass
class Project:
    """An Architect project under construction in a temporary directory."""

    root: Path
    name: str = "testapp"
    routes: list[str] = field(default_factory=list)
    aws: dict[str, Any] = field(default_factory=dict)

    def handler(
        self,
        route: str,
        source: str,
        *,
        runtime: str = "python",
        config: dict[str, Any] | None = None,
        filename: str | None = None,
    ) -> Path:
        """Write a handler for `route` (`connect`, `default`, a custom name) and declare it."""
        directory = self.root / "src" / "ws" / route
        directory.mkdir(parents=True, exist_ok=True)
        (directory / (filename or RUNTIME_FILES[runtime])).write_text(textwrap.dedent(source))
        settings = {"runtime": RUNTIMES.get(runtime, runtime), **(config or {})}
        lines = ["@aws"] + [f"{key} {value}" for key, value in settings.items()]
        (directory / "config.arc").write_text("\n".join(lines) + "\n")
        if route not in ("connect", "default", "disconnect") and route not in self.routes:
            self.routes.append(route)
        return directory

    def link_node_modules(self) -> None:
        """Make the test suite's npm packages (ws, @architect/functions) resolvable."""
        if not NODE_MODULES.is_dir():
            pytest.fail(f"{NODE_MODULES} is missing: run `npm ci --prefix tests/node`")
        link = self.root / "node_modules"
        if not link.exists():
            link.symlink_to(NODE_MODULES, target_is_directory=True)

    def write(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        lines = ["@app", self.name, "", "@ws", *self.routes]
        if self.aws:
            lines += ["", "@aws"] + [f"{key} {value}" for key, value in self.aws.items()]
        (self.root / "app.arc").write_text("\n".join(lines) + "\n")
        for route in ("connect", "default", "disconnect"):
            directory = self.root / "src" / "ws" / route
            if not directory.exists():
                self.handler(route, OK_HANDLER)
        return self.root


# A Python handler that accepts everything.
OK_HANDLER = """
def handler(event, context):
    return {"statusCode": 200}
"""

EmulatorFactory = Callable[..., Awaitable[Emulator]]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "app")


def _descendants() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


@pytest.fixture
async def start_emulator(project: Project) -> AsyncIterator[EmulatorFactory]:
    """Start emulators for `project` on free ports; keyword arguments override Options."""
    started: list[Emulator] = []
    before = _descendants()

    async def start(**overrides: Any) -> Emulator:
        project.write()
        # Watching is off unless a test turns it on, so files a test writes
        # into the project do not restart its functions.
        settings: dict[str, Any] = {"port": 0, "internal_port": 0, "watch": False}
        settings.update(overrides)
        environ = dict(os.environ)
        emulator = Emulator(project.root, Options(**settings), environ=environ, ipv6_loopback=False)
        await emulator.start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        await emulator.stop()
    leftover = _descendants() - before
    alive = [pid for pid in leftover if psutil.pid_exists(pid)]
    assert not alive, f"processes left behind after stop: {alive}"


@pytest.fixture
async def emulator(start_emulator: EmulatorFactory) -> Emulator:
    return await start_emulator()


def node_available() -> bool:
    return shutil.which("node") is not None
