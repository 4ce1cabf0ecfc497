"""pytest plugin: one emulator per project for a whole test session, and WebSocket clients.

pytest loads it through the `pytest11` entry point `arc_ws_emulator`, so
installing the package is enough. A test names its project with the
marker `@pytest.mark.arc_ws_project("path/to/app", **options)`, or the
whole suite with the ini option `arc_ws_project`. Relative paths are
taken from pytest's rootdir. Keyword arguments of the marker are
`Options` fields (`route_responses=True`) and override the plugin's
defaults: free ports on 127.0.0.1 only, and no file watching.

Fixtures:

- `arc_ws_emulator`: the running emulator of the test's project, a
  `BackgroundEmulator` with `url`, `management_url`, `records` and
  `next_record()` / `next_record_async()`. It starts at the first test
  that requests it and stops at the end of the session. Each test starts
  with no records.
- `arc_ws_client`: a `WebSocketClient` (aiohttp) for that emulator, for
  async tests: `async with arc_ws_client.connect() as ws:`.
- `arc_ws_sync_client`: a `SyncWebSocketClient` for plain tests:
  `with arc_ws_sync_client.connect() as ws:`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from emulator.background import BackgroundEmulator
    from emulator.testing import SyncWebSocketClient, WebSocketClient

MARKER = "arc_ws_project"
PROJECT_INI = "arc_ws_project"
ROUTE_RESPONSES_INI = "arc_ws_route_responses"

# Settings of the plugin's emulators, unless a marker overrides them.
DEFAULT_SETTINGS: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 0,
    "internal_port": 0,
    "watch": False,
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        PROJECT_INI,
        "Architect project directory that the arc_ws_emulator fixture serves when a test "
        "has no arc_ws_project marker; relative to the rootdir",
        default=None,
    )
    parser.addini(
        ROUTE_RESPONSES_INI,
        "send the body that message handlers return to the client, as --route-responses "
        "does (default: false)",
        type="bool",
        default=False,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(path, **options): the Architect project that the arc_ws_emulator fixture "
        "serves for this test, with Options fields as keyword arguments",
    )


class EmulatorPool:
    """The emulators of a session: one per project directory and settings."""

    def __init__(self) -> None:
        self._running: dict[str, BackgroundEmulator] = {}
        # Projects that failed to start, so later tests fail at once with the same error.
        self._failed: dict[str, str] = {}

    def get(self, project: Path, settings: dict[str, Any]) -> BackgroundEmulator:
        """Return the running emulator of `project` with `settings`, starting it if needed."""
        from emulator.app import Emulator
        from emulator.errors import EmulatorError

        key = f"{project}|{sorted(settings.items())!r}"
        if key in self._failed:
            pytest.fail(self._failed[key], pytrace=False)
        running = self._running.get(key)
        if running is not None:
            return running
        try:
            emulator = Emulator(project, ipv6_loopback=False, **settings)
            self._running[key] = emulator.run_in_background()
        except (EmulatorError, OSError, TypeError) as error:
            self._failed[key] = f"arc-ws-emulator: failed to start {project}: {error}"
        if key in self._failed:
            # Outside the `except` block, so the report shows the message alone.
            pytest.fail(self._failed[key], pytrace=False)
        return self._running[key]

    def stop_all(self) -> None:
        """Stop every emulator, each even if another fails to stop."""
        errors: list[BaseException] = []
        for running in self._running.values():
            # Any error is kept for later, because every emulator must get its stop.
            try:
                running.stop()
            except Exception as error:
                errors.append(error)
        self._running.clear()
        if errors:
            raise errors[0]


@pytest.fixture(scope="session")
def arc_ws_emulator_pool() -> Iterator[EmulatorPool]:
    """The session's emulators, stopped when the session ends."""
    pool = EmulatorPool()
    yield pool
    pool.stop_all()


@pytest.fixture
def arc_ws_emulator(
    request: pytest.FixtureRequest, arc_ws_emulator_pool: EmulatorPool
) -> BackgroundEmulator:
    """The running emulator of the test's project (marker, else ini), with no records yet."""
    project, settings = _project_of(request)
    emulator = arc_ws_emulator_pool.get(project, settings)
    emulator.clear_records()
    return emulator


@pytest.fixture
def arc_ws_client(arc_ws_emulator: BackgroundEmulator) -> WebSocketClient:
    """An async WebSocket client (aiohttp) for the test's emulator."""
    from emulator.testing import WebSocketClient

    return WebSocketClient(arc_ws_emulator.url)


@pytest.fixture
def arc_ws_sync_client(arc_ws_emulator: BackgroundEmulator) -> Iterator[SyncWebSocketClient]:
    """A blocking WebSocket client for the test's emulator."""
    from emulator.testing import SyncWebSocketClient

    client = SyncWebSocketClient(arc_ws_emulator.url)
    yield client
    client.close()


def _project_of(request: pytest.FixtureRequest) -> tuple[Path, dict[str, Any]]:
    config = request.config
    settings = dict(DEFAULT_SETTINGS)
    settings["route_responses"] = bool(config.getini(ROUTE_RESPONSES_INI))
    marker = request.node.get_closest_marker(MARKER)
    if marker is not None:
        if len(marker.args) != 1:
            pytest.fail(
                f"@pytest.mark.{MARKER} takes one argument, the project directory; "
                f"got {len(marker.args)}",
                pytrace=False,
            )
        path = Path(str(marker.args[0]))
        settings.update(marker.kwargs)
    else:
        configured = config.getini(PROJECT_INI)
        if not configured:
            pytest.fail(
                f"the arc_ws_emulator fixture needs a project: set `{PROJECT_INI} = <dir>` "
                f"in pytest's configuration, or mark the test with "
                f'@pytest.mark.{MARKER}("<dir>")',
                pytrace=False,
            )
        path = Path(str(configured))
    return (config.rootpath / path).resolve(), settings
