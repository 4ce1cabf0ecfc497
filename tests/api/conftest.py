"""Fixtures for the Python API tests: Python projects in tmp_path, and the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path

import psutil
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# Seconds a CLI run gets: an emulator start, one invocation and a stop.
CLI_TIMEOUT = 90.0

# Replies with the event it got, so tests can check what the function received.
ECHO_HANDLER = """
import json

def handler(event, context):
    print("got", event["requestContext"]["routeKey"])
    return {"statusCode": 200, "body": json.dumps(event)}
"""

OK_HANDLER = """
def handler(event, context):
    return {"statusCode": 200}
"""

ProjectFactory = Callable[..., Path]


@pytest.fixture
def make_project(tmp_path: Path) -> ProjectFactory:
    """Write a Python project: `make_project({"send": SOURCE}, config={"send": {"timeout": 1}})`.

    Built-in routes without a handler in `handlers` get one that returns 200.
    """

    def make(
        handlers: Mapping[str, str],
        *,
        config: Mapping[str, Mapping[str, object]] | None = None,
        name: str = "apitest",
    ) -> Path:
        root = tmp_path / name
        custom = [route for route in handlers if route not in ("connect", "default", "disconnect")]
        root.mkdir(parents=True, exist_ok=True)
        manifest = ["@app", name, "", "@ws", *custom, "", "@aws", "runtime python3.11"]
        (root / "app.arc").write_text("\n".join(manifest) + "\n")
        sources = {"connect": OK_HANDLER, "default": OK_HANDLER, "disconnect": OK_HANDLER}
        sources.update(handlers)
        for route, source in sources.items():
            directory = root / "src" / "ws" / route
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "lambda.py").write_text(textwrap.dedent(source))
            settings = (config or {}).get(route)
            if settings:
                lines = ["@aws", *(f"{key} {value}" for key, value in settings.items())]
                (directory / "config.arc").write_text("\n".join(lines) + "\n")
        return root

    return make


def cli_environ() -> dict[str, str]:
    """The environment of a CLI subprocess: this checkout first on the import path."""
    environ = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PORT", "ARC_HTTP_PORT", "ARC_INTERNAL_PORT")
    }
    environ["PYTHONPATH"] = str(REPO_ROOT)
    return environ


def run_cli(*arguments: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emulator", *map(str, arguments)],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=CLI_TIMEOUT,
        env=cli_environ(),
        check=False,
    )


def descendants() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


def alive(pids: set[int]) -> list[int]:
    """Return the processes of `pids` that still run (zombies count as gone)."""
    running = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                running.append(pid)
        except psutil.NoSuchProcess:
            continue
    return running
