"""The pytest plugin, used by a small test suite that runs in its own pytest process."""

from __future__ import annotations

import importlib.metadata
import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from emulator.scaffold import init_project
from tests.api.conftest import REPO_ROOT, alive, cli_environ

# Seconds the inner pytest run gets: one emulator start, a few tests, one stop.
INNER_TIMEOUT = 180.0

PYTEST_INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
{extra}
"""

# The suite under test. It writes what the outer test checks into
# `observed/`: the emulator's ports and the processes it started.
INNER_TESTS = """
import json
import os
from pathlib import Path

import psutil
import pytest

OBSERVED = Path(__file__).parent / "observed"

pytestmark = pytest.mark.arc_ws_project("app", route_responses=True)


def note(name, value):
    OBSERVED.mkdir(exist_ok=True)
    (OBSERVED / name).write_text(json.dumps(value))


async def test_async_client(arc_ws_emulator, arc_ws_client):
    async with arc_ws_client.connect(query={"room": "1"}) as ws:
        assert await ws.request({"action": "send"}) == {"route": "send"}
        await ws.send_text("hello")
        assert await ws.receive_json(timeout=10) == {"route": "$default"}
    record = await arc_ws_emulator.next_record_async("send", timeout=10)
    assert record.ok
    assert record.output
    note("async_url", arc_ws_emulator.url)


def test_sync_client(arc_ws_emulator, arc_ws_sync_client):
    assert arc_ws_emulator.records == []
    with arc_ws_sync_client.connect() as ws:
        assert ws.request({"action": "send"}, timeout=10) == {"route": "send"}
    assert arc_ws_emulator.next_record("connect", timeout=10).ok
    assert arc_ws_emulator.next_record("send", timeout=10).ok
    note("sync_url", arc_ws_emulator.url)
    note("ports", [arc_ws_emulator.port, arc_ws_emulator.internal_port])
    children = psutil.Process().children(recursive=True)
    note("children", [child.pid for child in children])


def test_management_url(arc_ws_emulator):
    assert arc_ws_emulator.management_url.startswith("http://127.0.0.1:")
    assert arc_ws_emulator.url.startswith("ws://127.0.0.1:")
"""

INI_TESTS = """
def test_ini_project(arc_ws_emulator, arc_ws_sync_client):
    with arc_ws_sync_client.connect() as ws:
        ws.send_json({"action": "send"})
    record = arc_ws_emulator.next_record("send", timeout=10)
    assert record.ok
    # No route responses in the ini, so the body was not sent.
    assert arc_ws_emulator.emulator.options.route_responses is False
"""

BROKEN_TESTS = """
import pytest

@pytest.mark.arc_ws_project("missing")
def test_first(arc_ws_emulator):
    pass

@pytest.mark.arc_ws_project("missing")
def test_second(arc_ws_emulator):
    pass
"""


def plugin_is_installed() -> bool:
    """Tell whether this package's `pytest11` entry point is registered in the environment."""
    return any(
        entry.name == "arc_ws_emulator" and entry.value == "emulator.pytest_plugin"
        for entry in importlib.metadata.entry_points(group="pytest11")
    )


def run_pytest(suite: Path) -> subprocess.CompletedProcess[str]:
    # The entry point loads the plugin where this package is installed with
    # its metadata; elsewhere (a checkout on PYTHONPATH) `-p` loads it.
    plugin = [] if plugin_is_installed() else ["-p", "emulator.pytest_plugin"]
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin, str(suite)],
        capture_output=True,
        text=True,
        timeout=INNER_TIMEOUT,
        cwd=suite,
        env=cli_environ(),
        check=False,
    )


def write_suite(root: Path, tests: str, ini_extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text(PYTEST_INI.format(extra=ini_extra))
    (root / "test_app.py").write_text(textwrap.dedent(tests))
    return root


def write_app(root: Path) -> None:
    root.mkdir(parents=True)
    (root / "app.arc").write_text("@app\nplugged\n\n@ws\nsend\n")
    init_project(root, "python3.11")


def port_is_closed(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_entry_point_declared() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {"arc_ws_emulator": "emulator.pytest_plugin"}


def test_marker_suite_passes_and_stops(tmp_path: Path) -> None:
    suite = write_suite(tmp_path / "suite", INNER_TESTS)
    write_app(suite / "app")

    completed = run_pytest(suite)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "3 passed" in completed.stdout
    observed = suite / "observed"
    # One emulator served both tests, though each ran on its own event loop.
    async_url = json.loads((observed / "async_url").read_text())
    assert async_url == json.loads((observed / "sync_url").read_text())
    children = set(json.loads((observed / "children").read_text()))
    assert children, "the emulator started no processes"
    assert not alive(children), "processes left after the session"
    for port in json.loads((observed / "ports").read_text()):
        assert port_is_closed(port), f"port {port} still accepts connections"


def test_ini_project(tmp_path: Path) -> None:
    suite = write_suite(tmp_path / "suite", INI_TESTS, "arc_ws_project = app")
    write_app(suite / "app")

    completed = run_pytest(suite)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "1 passed" in completed.stdout


def test_project_error_fails_each_test(tmp_path: Path) -> None:
    suite = write_suite(tmp_path / "suite", BROKEN_TESTS)

    completed = run_pytest(suite)

    assert completed.returncode == 1
    assert "2 errors" in completed.stdout
    assert completed.stdout.count("arc-ws-emulator: failed to start") >= 2
    assert "project directory" in completed.stdout


def test_missing_project_setting(tmp_path: Path) -> None:
    suite = write_suite(tmp_path / "suite", "def test_it(arc_ws_emulator):\n    pass\n")

    completed = run_pytest(suite)

    assert completed.returncode != 0
    assert "arc_ws_project" in completed.stdout + completed.stderr
