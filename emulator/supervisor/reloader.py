"""Watching the project and deciding what each batch of changes reloads.

watchfiles batches file events: its debounce waits for a quiet gap. Each
batch becomes one `ReloadPlan`, which reads the manifest again, restarts
every function, or restarts some functions. The emulator carries the plan
out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import watchfiles

from emulator.config import AppConfig

logger = logging.getLogger(__name__)

# Milliseconds of quiet before a batch is handed over, and how often the
# watcher checks for quiet. Short, so a save feels instant; editors that
# write a file in several steps still land in one batch.
DEBOUNCE_MS = 50
STEP_MS = 10

MANIFEST_FILES = frozenset({"app.arc", ".arc", "arc.json", "arc.yaml", "arc.yml", "package.json"})
FUNCTION_CONFIG_FILES = frozenset(
    {
        "config.arc",
        ".arc-config",
        "arc.json",
        "arc-config.json",
        "config.yaml",
        "config.yml",
        "arc-config.yaml",
        "arc-config.yml",
    }
)
ENV_FILES = frozenset({".env", "prefs.arc", "preferences.arc", ".prefs.arc", ".preferences.arc"})
SHARED_DIRS = (Path("src") / "shared", Path("src") / "views")


class ProjectFilter(watchfiles.DefaultFilter):
    """watchfiles' default filter (VCS, caches, node_modules, swap files) plus
    Emacs autosave files and the `4913` file vim writes to test a directory.

    Directory names are matched only below `root`: watchfiles' own filter
    matches every part of the absolute path, so a project that sits under
    a directory called `node_modules` or `.venv` would never reload.
    """

    ignore_entity_patterns = (
        *watchfiles.DefaultFilter.ignore_entity_patterns,
        r"^#.*#$",
        r"^4913$",
        # `sed -i` writes its result to a temporary `sedXXXXXX` file first.
        r"^sed[A-Za-z0-9]{6}$",
    )

    def __init__(self, root: Path) -> None:
        super().__init__()
        self._root = root

    def __call__(self, change: watchfiles.Change, path: str) -> bool:
        try:
            relative = Path(path).relative_to(self._root)
        except ValueError:
            return False
        return super().__call__(change, str(relative))


@dataclass
class ReloadPlan:
    """The actions that one batch of file changes calls for."""

    changed: list[str] = field(default_factory=list)
    reload_config: bool = False
    restart_all: bool = False
    restart: set[str] = field(default_factory=set)

    @property
    def empty(self) -> bool:
        return not (self.reload_config or self.restart_all or self.restart)


def plan_reload(app: AppConfig, paths: Iterable[Path]) -> ReloadPlan:
    """Classify changed paths of the project `app`.

    A manifest, function config or environment file reads the
    configuration again. Shared code restarts every function, because
    which functions import it cannot be known. A file inside a handler
    directory restarts that function (the deepest directory, for nested
    routes). Anything else is ignored.
    """
    plan = ReloadPlan()
    sources = sorted(
        ((function.src, function.name) for function in app.functions),
        key=lambda item: len(item[0].parts),
        reverse=True,
    )
    for path in sorted(paths):
        try:
            relative = path.relative_to(app.root)
        except ValueError:
            continue
        owner = next((name for src, name in sources if _is_within(path, src)), None)
        if (
            len(relative.parts) == 1
            and (relative.name in MANIFEST_FILES or relative.name in ENV_FILES)
        ) or (
            owner is not None
            and relative.name in FUNCTION_CONFIG_FILES
            and (path.parent in {src for src, _ in sources})
        ):
            plan.reload_config = True
        elif any(_is_within(relative, shared) for shared in SHARED_DIRS):
            plan.restart_all = True
        elif owner is not None:
            plan.restart.add(owner)
        elif _is_within(relative, Path("src")):
            # A new directory under src/ may be the handler directory of a
            # route that failed to load before: read the manifest again.
            plan.reload_config = True
        else:
            continue
        plan.changed.append(str(relative))
    return plan


def _is_within(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


class Reloader:
    """Watches the project directory and hands each batch of changes to `apply`."""

    def __init__(
        self,
        root: Path,
        apply: Callable[[set[Path]], Awaitable[None]],
        *,
        force_polling: bool = False,
    ) -> None:
        self._root = root
        self._apply = apply
        self._force_polling = force_polling
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start watching; return once the watch is set up, so no later change is missed."""
        self._task = asyncio.ensure_future(self._run())
        # awatch() adds its watches synchronously when it is first iterated.
        # The task does that in its first step, which the event loop runs
        # before this coroutine resumes.
        await asyncio.sleep(0)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=5.0)
            self._task.cancel()

    async def _run(self) -> None:
        logger.debug("watching %s for changes", self._root)
        try:
            async for changes in watchfiles.awatch(
                self._root,
                watch_filter=ProjectFilter(self._root),
                debounce=DEBOUNCE_MS,
                step=STEP_MS,
                stop_event=self._stop,
                force_polling=self._force_polling,
            ):
                try:
                    await self._apply({Path(path) for _, path in changes})
                except Exception:
                    # A failed reload must not end watching: the next save retries.
                    logger.exception("reload failed")
        except OSError as error:
            # For example the inotify watch limit (fs.inotify.max_user_watches).
            logger.error(
                "failed to watch %s for changes, so edits are not applied until a restart: %s",
                self._root,
                error,
            )
