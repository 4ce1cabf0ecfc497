"""Tables of changed paths and the reload plan that each batch produces.

`plan_reload()` only compares paths, so the app here is built by hand and
no file needs to exist. `ProjectFilter` is checked on the paths watchfiles
would report for a project.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
import watchfiles

from emulator.config import AppConfig, FunctionConfig
from emulator.supervisor.reloader import ProjectFilter, Reloader, ReloadPlan, plan_reload

ROOT = Path("/projects/app")


def _function(name: str, src: str | None = None) -> FunctionConfig:
    return FunctionConfig(
        name=name,
        route_key=f"${name}" if name in ("connect", "default", "disconnect") else name,
        src=ROOT / (src or f"src/ws/{name}"),
        runtime="python3.11",
        handler="lambda.handler",
        handler_file="lambda.py",
        handler_method="handler",
        timeout=5,
        memory=1152,
        concurrency=None,
        region="us-west-2",
    )


# Nested routes `a` and `a/b`, and a route whose `src` is outside src/ws.
APP = AppConfig(
    name="app",
    root=ROOT,
    manifest=ROOT / "app.arc",
    functions=(
        _function("connect"),
        _function("default"),
        _function("disconnect"),
        _function("a"),
        _function("a/b"),
        _function("custom", "lib/custom-handler"),
    ),
)


def _plan(
    changed: list[str],
    *,
    reload_config: bool = False,
    restart_all: bool = False,
    restart: set[str] | None = None,
) -> ReloadPlan:
    return ReloadPlan(
        changed=changed,
        reload_config=reload_config,
        restart_all=restart_all,
        restart=restart or set(),
    )


PLAN_CASES: list[tuple[list[str], ReloadPlan]] = [
    # Handler files restart the function of the deepest handler directory.
    (["src/ws/a/lambda.py"], _plan(["src/ws/a/lambda.py"], restart={"a"})),
    (["src/ws/a/b/lambda.py"], _plan(["src/ws/a/b/lambda.py"], restart={"a/b"})),
    (["src/ws/a/b/lib/util.py"], _plan(["src/ws/a/b/lib/util.py"], restart={"a/b"})),
    (["src/ws/a/lib/util.py"], _plan(["src/ws/a/lib/util.py"], restart={"a"})),
    (["src/ws/a/b"], _plan(["src/ws/a/b"], restart={"a/b"})),
    (["src/ws/default/index.mjs"], _plan(["src/ws/default/index.mjs"], restart={"default"})),
    (
        ["lib/custom-handler/lambda.py"],
        _plan(["lib/custom-handler/lambda.py"], restart={"custom"}),
    ),
    (
        ["src/ws/a/lambda.py", "src/ws/connect/lambda.py"],
        _plan(["src/ws/a/lambda.py", "src/ws/connect/lambda.py"], restart={"a", "connect"}),
    ),
    # Settings files directly in a handler directory read the manifest again.
    (["src/ws/a/config.arc"], _plan(["src/ws/a/config.arc"], reload_config=True)),
    (["src/ws/a/b/config.arc"], _plan(["src/ws/a/b/config.arc"], reload_config=True)),
    (["src/ws/a/b/arc.json"], _plan(["src/ws/a/b/arc.json"], reload_config=True)),
    (
        ["lib/custom-handler/.arc-config"],
        _plan(["lib/custom-handler/.arc-config"], reload_config=True),
    ),
    # A settings file deeper down is only code of the function.
    (["src/ws/a/lib/config.arc"], _plan(["src/ws/a/lib/config.arc"], restart={"a"})),
    # Manifests and user environment files at the project root.
    (["app.arc"], _plan(["app.arc"], reload_config=True)),
    (["arc.yaml"], _plan(["arc.yaml"], reload_config=True)),
    (["package.json"], _plan(["package.json"], reload_config=True)),
    ([".env"], _plan([".env"], reload_config=True)),
    (["prefs.arc"], _plan(["prefs.arc"], reload_config=True)),
    ([".preferences.arc"], _plan([".preferences.arc"], reload_config=True)),
    # The same names elsewhere are ordinary files.
    (["docs/app.arc"], _plan([])),
    (["src/ws/a/.env"], _plan(["src/ws/a/.env"], restart={"a"})),
    # Shared code restarts every function.
    (["src/shared/store.py"], _plan(["src/shared/store.py"], restart_all=True)),
    (["src/views/page.mjs"], _plan(["src/views/page.mjs"], restart_all=True)),
    (["src/shared"], _plan(["src/shared"], restart_all=True)),
    # A directory under src/ that is no handler directory yet may become one.
    (["src/ws/new/lambda.py"], _plan(["src/ws/new/lambda.py"], reload_config=True)),
    (["src/sharedstuff/x.py"], _plan(["src/sharedstuff/x.py"], reload_config=True)),
    # Anything else changes nothing.
    (["README.md"], _plan([])),
    (["test/test_app.py"], _plan([])),
    (["/elsewhere/app.arc"], _plan([])),
    # A batch combines what its files ask for and lists them in order.
    (
        ["src/shared/x.py", "app.arc", "src/ws/a/b/lambda.py", "notes.txt"],
        _plan(
            ["app.arc", "src/shared/x.py", "src/ws/a/b/lambda.py"],
            reload_config=True,
            restart_all=True,
            restart={"a/b"},
        ),
    ),
]


@pytest.mark.parametrize(("paths", "expected"), PLAN_CASES, ids=lambda value: str(value))
def test_plan_reload_table(paths: list[str], expected: ReloadPlan) -> None:
    plan = plan_reload(APP, [ROOT / path for path in paths])
    assert plan.changed == expected.changed
    assert plan.reload_config == expected.reload_config
    assert plan.restart_all == expected.restart_all
    assert plan.restart == expected.restart


def test_plan_reload_empty_batch() -> None:
    plan = plan_reload(APP, [])
    assert plan.empty
    assert plan.changed == []


def test_plan_empty_only_without_actions() -> None:
    assert _plan(["README.md"]).empty
    assert not _plan(["app.arc"], reload_config=True).empty
    assert not _plan(["src/shared/x"], restart_all=True).empty
    assert not _plan(["src/ws/a/x"], restart={"a"}).empty


FILTER_CASES: list[tuple[str, bool]] = [
    ("src/ws/default/lambda.py", True),
    ("src/ws/default/index.mjs", True),
    ("app.arc", True),
    (".env", True),
    ("src/ws/default/.lambda.py.swp", False),
    ("src/ws/default/.lambda.py.swo", False),
    ("src/ws/default/lambda.py~", False),
    ("src/ws/default/.#lambda.py", False),
    ("src/ws/default/#lambda.py#", False),
    ("src/ws/default/4913", False),
    ("src/ws/default/49130", True),
    ("src/ws/default/node_modules/ws/index.js", False),
    ("node_modules/.package-lock.json", False),
    (".git/index", False),
    ("src/ws/default/__pycache__/lambda.cpython-311.pyc", False),
    ("src/ws/default/lambda.pyc", False),
    ("src/ws/default/notes#1.txt", True),
]


@pytest.mark.parametrize(("relative", "kept"), FILTER_CASES)
def test_project_filter_table(relative: str, kept: bool) -> None:
    project_filter = ProjectFilter(ROOT)
    assert project_filter(watchfiles.Change.modified, str(ROOT / relative)) is kept


@pytest.mark.parametrize("parent", ["node_modules", ".venv", "__pycache__", ".git"])
def test_project_filter_ignores_only_inside_project(parent: str) -> None:
    # A project that itself sits under an ignored directory name is still watched.
    root = Path("/home/dev") / parent / "app"
    project_filter = ProjectFilter(root)
    assert project_filter(watchfiles.Change.modified, str(root / "src/ws/a/lambda.py"))
    assert not project_filter(watchfiles.Change.modified, str(root / "node_modules/x/index.js"))


async def test_reloader_missing_root_logs_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    batches: list[set[Path]] = []

    async def apply(paths: set[Path]) -> None:
        batches.append(paths)

    reloader = Reloader(tmp_path / "missing", apply)
    with caplog.at_level(logging.ERROR, logger="emulator.supervisor.reloader"):
        await reloader.start()
        await reloader.stop()
    assert batches == []
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("failed to watch" in message for message in errors), errors


async def test_reloader_delivers_changes(tmp_path: Path) -> None:
    # start() returns once the watch is set up, so a write right after it is seen.
    received: asyncio.Queue[set[Path]] = asyncio.Queue()

    async def apply(paths: set[Path]) -> None:
        await received.put(paths)

    reloader = Reloader(tmp_path, apply)
    await reloader.start()
    try:
        (tmp_path / "app.arc").write_text("@app\nx\n")
        (tmp_path / ".app.arc.swp").write_text("swap")
        batch = await asyncio.wait_for(received.get(), 10)
    finally:
        await reloader.stop()
    assert batch == {tmp_path / "app.arc"}
