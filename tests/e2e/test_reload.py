"""Hot reload seen from a connected client: edits apply while connections stay open.

Each test starts a watching emulator with route responses turned on, so
every handler replies on the same connection with its version, its
runtime's pid and its settings. After each edit the test sends messages
until a reply shows the new code (bounded by WAIT_TIMEOUT), then checks
what else changed and what must not have.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import psutil
import pytest

from emulator.app import Emulator
from emulator.logs import function_lines
from tests.e2e.conftest import EmulatorFactory, Project, node_available

T = TypeVar("T")

# Seconds a test waits for a reload to show before it fails. A reload
# took 0.1 to 0.3 s on a loaded 2-CPU machine.
WAIT_TIMEOUT = 10.0
# Pause between two messages that poll for the new code.
POLL_INTERVAL = 0.05

# Replies with its version and what a test checks. A JSON body with
# `wait_for` makes it block until that file exists, so a test controls
# how long an invocation stays in flight.
PYTHON_HANDLER = """
import json, os, pathlib, time

VERSION = "@VERSION@"

def handler(event, context):
    body = event.get("body") or ""
    try:
        request = json.loads(body)
    except ValueError:
        request = None
    if isinstance(request, dict) and "wait_for" in request:
        print(f"pid {os.getpid()} waits for {request['wait_for']}")
        release = pathlib.Path(request["wait_for"])
        while not release.exists():
            time.sleep(0.01)
    return {"statusCode": 200, "body": json.dumps({
        "version": VERSION,
        "route": event["requestContext"]["routeKey"],
        "body": body,
        "pid": os.getpid(),
        "request_id": context.aws_request_id,
        "memory": os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"],
        "remaining_ms": context.get_remaining_time_in_millis(),
        "greeting": os.environ.get("GREETING"),
    })}
"""

NODE_HANDLER = """
export async function handler (event, context) {
  return {
    statusCode: 200,
    body: JSON.stringify({
      version: '@VERSION@',
      body: event.body,
      pid: process.pid,
      request_id: context.awsRequestId,
    }),
  }
}
"""

PYTHON_SHARED_HANDLER = """
import json, os
from shared.version import VERSION
from views.page import TITLE

def handler(event, context):
    return {"statusCode": 200, "body": json.dumps(
        {"shared": VERSION, "views": TITLE, "body": event["body"], "pid": os.getpid()}
    )}
"""

NODE_SHARED_HANDLER = """
import { VERSION } from '@architect/shared/version.mjs'

export async function handler (event) {
  return {
    statusCode: 200,
    body: JSON.stringify({ shared: VERSION, body: event.body, pid: process.pid }),
  }
}
"""

SYNTAX_ERROR_HANDLER = """
def handler(event, context):
    return {"statusCode": 200
"""

IMPORT_ERROR_HANDLER = """
import no_such_module_for_the_reload_test

def handler(event, context):
    return {"statusCode": 200}
"""


def python_handler(version: str) -> str:
    return PYTHON_HANDLER.replace("@VERSION@", version)


def node_handler(version: str) -> str:
    return NODE_HANDLER.replace("@VERSION@", version)


def action(route: str) -> str:
    return json.dumps({"action": route})


def is_error_frame(reply: dict[str, Any]) -> bool:
    return reply.get("message") == "Internal server error"


class LogRecords(logging.Handler):
    """The records of the `emulator` logger, with a way to await one."""

    records: list[logging.LogRecord]

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records = []
        self._added = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        # Records come from the event loop's thread: the workers' lines
        # arrive over their channels, the reloader logs from a task.
        self.records.append(record)
        self._added.set()

    def function_lines(self, route: str) -> list[str]:
        return [
            line
            for r in self.records
            if getattr(r, "route", None) == route
            for line in function_lines(r)
        ]

    def errors(self, logger_name: str) -> list[str]:
        """Return the ERROR messages of the logger `logger_name`, in order."""
        return [
            r.getMessage()
            for r in self.records
            if r.name == logger_name and r.levelno >= logging.ERROR
        ]

    def changed(self) -> list[str]:
        """Return the reloader's `changed: ...` messages, in order."""
        return [
            r.getMessage()
            for r in self.records
            if r.name == "emulator.app" and r.getMessage().startswith("changed: ")
        ]

    async def wait_for(self, find: Callable[[], T | None], description: str) -> T:
        """Return the first non-None result of `find`, called again after each new record."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_TIMEOUT
        while True:
            self._added.clear()
            found = find()
            if found is not None:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no log record of {description} within {WAIT_TIMEOUT} s")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._added.wait(), remaining)

    async def wait_for_line(self, route: str, pattern: str) -> str:
        compiled = re.compile(pattern)

        def find() -> str | None:
            return next(
                (line for line in self.function_lines(route) if compiled.search(line)), None
            )

        return await self.wait_for(find, f"{pattern!r} from route {route}")

    async def report_line(self, route: str, request_id: str) -> str:
        return await self.wait_for_line(route, f"^REPORT RequestId: {re.escape(request_id)}\t")


@pytest.fixture
def logs() -> Iterator[LogRecords]:
    """Capture the emulator's records at INFO, set before it starts so workers forward theirs."""
    handler = LogRecords()
    logger = logging.getLogger("emulator")
    previous_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)


class Client:
    """One WebSocket connection; each message gets the reply that echoes it, or an error frame."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse[bool]) -> None:
        self.ws = ws
        self._unclaimed: list[dict[str, Any]] = []

    async def send(self, message: str) -> None:
        await self.ws.send_str(message)

    async def reply_to(self, message: str) -> dict[str, Any]:
        """Return the reply that echoes `message`, or the next error frame."""
        for earlier in self._unclaimed:
            if earlier.get("body") == message:
                self._unclaimed.remove(earlier)
                return earlier
        while True:
            reply: dict[str, Any] = json.loads(await self.ws.receive_str(timeout=WAIT_TIMEOUT))
            if reply.get("body") == message or is_error_frame(reply):
                return reply
            self._unclaimed.append(reply)

    async def ask(self, message: str) -> dict[str, Any]:
        await self.send(message)
        return await self.reply_to(message)

    async def ask_until(
        self, message: str, condition: Callable[[dict[str, Any]], bool], description: str
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Send `message` until a reply meets `condition`; return it and the replies before it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_TIMEOUT
        earlier: list[dict[str, Any]] = []
        while True:
            reply = await self.ask(message)
            if condition(reply):
                return reply, earlier
            earlier.append(reply)
            if loop.time() > deadline:
                raise AssertionError(
                    f"no reply with {description} within {WAIT_TIMEOUT} s: {reply}"
                )
            await asyncio.sleep(POLL_INTERVAL)


@contextlib.asynccontextmanager
async def connect(emulator: Emulator) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
        yield Client(ws)


def is_gone(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def wait_gone(process: psutil.Process) -> None:
    # Process exits of another process's children cannot be awaited, so poll.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_TIMEOUT
    while not is_gone(process):
        if loop.time() > deadline:
            raise AssertionError(f"process {process.pid} still runs after {WAIT_TIMEOUT} s")
        await asyncio.sleep(POLL_INTERVAL)


def worker_of(runtime_pid: int) -> psutil.Process:
    """Return the worker process that runs the runtime process `runtime_pid`."""
    worker = psutil.Process(runtime_pid).parent()
    assert worker is not None
    assert "emulator.worker" in " ".join(worker.cmdline())
    return worker


async def test_handler_edit_restarts_only_its_function(
    project: Project, start_emulator: EmulatorFactory, logs: LogRecords
) -> None:
    source = project.handler("default", python_handler("v1")) / "lambda.py"
    project.handler("other", python_handler("other-v1"))
    emulator = await start_emulator(watch=True, route_responses=True)

    async with connect(emulator) as client:
        before = await client.ask("before")
        other_before = await client.ask(action("other"))
        old_runtime = psutil.Process(before["pid"])

        source.write_text(python_handler("v2"))

        await logs.wait_for(
            lambda: "changed: src/ws/default/lambda.py" in logs.changed() or None,
            "the changed handler file",
        )
        # The idle environment stops without waiting for a message.
        await wait_gone(old_runtime)
        after, _ = await client.ask_until("after", lambda r: r["version"] == "v2", "version v2")
        first_report = await logs.report_line("default", after["request_id"])
        warm = await client.ask("warm")
        warm_report = await logs.report_line("default", warm["request_id"])
        other_after = await client.ask(action("other"))

        assert not client.ws.closed

    assert before["version"] == "v1"
    assert after["pid"] != before["pid"]
    assert "\tInit Duration: " in first_report
    assert warm["pid"] == after["pid"]
    assert "Init Duration" not in warm_report
    assert other_after["version"] == "other-v1"
    assert other_after["pid"] == other_before["pid"]
    assert logs.changed() == ["changed: src/ws/default/lambda.py"]


async def test_busy_environment_finishes_old_invocation(
    project: Project, start_emulator: EmulatorFactory, logs: LogRecords, tmp_path: Path
) -> None:
    source = (
        project.handler("default", python_handler("v1"), config={"timeout": 20, "concurrency": 1})
        / "lambda.py"
    )
    emulator = await start_emulator(watch=True, route_responses=True)
    # Outside the project, so creating it triggers no reload.
    release = tmp_path / "release"
    slow = json.dumps({"wait_for": str(release)})

    async with connect(emulator) as client:
        await client.send(slow)
        waiting = await logs.wait_for_line("default", r"^pid \d+ waits for ")
        busy = psutil.Process(int(waiting.split()[1]))
        # With a concurrency of 1 this message waits in the queue of the
        # pool that the edit replaces, and then runs on the new one.
        await client.send("queued")

        source.write_text(python_handler("v2"))

        queued = await client.reply_to("queued")
        # The invocation in flight keeps its environment, and so its old code.
        busy_during_reload = not is_gone(busy)
        release.touch()
        slow_reply = await client.reply_to(slow)
        await wait_gone(busy)
        next_reply = await client.ask("next")

        assert not client.ws.closed

    assert queued["version"] == "v2"
    assert queued["pid"] != busy.pid
    assert busy_during_reload
    assert slow_reply["version"] == "v1"
    assert slow_reply["pid"] == busy.pid
    assert next_reply["version"] == "v2"
    assert next_reply["pid"] == queued["pid"]


@pytest.mark.skipif(not node_available(), reason="node is not installed")
async def test_node_handler_edit_runs_new_code(
    project: Project, start_emulator: EmulatorFactory, logs: LogRecords
) -> None:
    source = project.handler("default", node_handler("v1"), runtime="node-esm") / "index.mjs"
    emulator = await start_emulator(watch=True, route_responses=True)

    async with connect(emulator) as client:
        before = await client.ask("before")
        source.write_text(node_handler("v2"))
        after, _ = await client.ask_until("after", lambda r: r["version"] == "v2", "version v2")
        report = await logs.report_line("default", after["request_id"])
        assert not client.ws.closed

    assert before["version"] == "v1"
    assert after["pid"] != before["pid"]
    assert "\tInit Duration: " in report


@pytest.mark.skipif(not node_available(), reason="node is not installed")
async def test_shared_code_edit_restarts_every_function(
    project: Project, start_emulator: EmulatorFactory, logs: LogRecords
) -> None:
    shared = project.root / "src" / "shared"
    shared.mkdir(parents=True)
    (shared / "version.py").write_text('VERSION = "one"\n')
    (shared / "version.mjs").write_text("export const VERSION = 'one'\n")
    views = project.root / "src" / "views"
    views.mkdir(parents=True)
    (views / "page.py").write_text('TITLE = "first"\n')
    project.handler("default", PYTHON_SHARED_HANDLER)
    project.handler("node", NODE_SHARED_HANDLER, runtime="node-esm")
    project.handler("plain", python_handler("plain"))
    emulator = await start_emulator(watch=True, route_responses=True)

    async with connect(emulator) as client:
        python_before = await client.ask("python")
        node_before = await client.ask(action("node"))
        plain_before = await client.ask(action("plain"))

        (shared / "version.py").write_text('VERSION = "two"\n')
        (shared / "version.mjs").write_text("export const VERSION = 'two'\n")

        python_after, _ = await client.ask_until(
            "python", lambda r: r["shared"] == "two", "the new shared/version.py"
        )
        node_after, _ = await client.ask_until(
            action("node"), lambda r: r["shared"] == "two", "the new @architect/shared"
        )
        plain_after, _ = await client.ask_until(
            action("plain"), lambda r: r["pid"] != plain_before["pid"], "a new environment"
        )

        (views / "page.py").write_text('TITLE = "second"\n')
        views_after, _ = await client.ask_until(
            "python", lambda r: r["views"] == "second", "the new views/page.py"
        )
        plain_after_views, _ = await client.ask_until(
            action("plain"), lambda r: r["pid"] != plain_after["pid"], "a new environment"
        )
        assert not client.ws.closed

    assert python_before["shared"] == "one"
    assert python_before["views"] == "first"
    assert node_before["shared"] == "one"
    assert python_after["pid"] != python_before["pid"]
    assert node_after["pid"] != node_before["pid"]
    assert plain_after["version"] == "plain"
    assert views_after["shared"] == "two"
    assert plain_after_views["version"] == "plain"


async def test_manifest_edit_adds_and_removes_routes(
    project: Project, start_emulator: EmulatorFactory, logs: LogRecords
) -> None:
    project.handler("default", python_handler("default"))
    project.handler("alpha", python_handler("alpha"))
    emulator = await start_emulator(watch=True, route_responses=True)

    async with connect(emulator) as client, connect(emulator) as bystander:
        alpha = await client.ask(action("alpha"))
        alpha_worker = worker_of(alpha["pid"])

        project.handler("beta", python_handler("beta"))
        project.write()
        beta, before_beta = await client.ask_until(
            action("beta"), lambda r: r.get("route") == "beta", "route beta"
        )

        project.routes.remove("alpha")
        project.write()
        removed, before_removal = await client.ask_until(
            action("alpha"), lambda r: r.get("route") == "$default", "route $default"
        )
        await wait_gone(alpha_worker)
        bystander_reply = await bystander.ask("still here")

        assert not client.ws.closed
        assert not bystander.ws.closed

    assert alpha["route"] == "alpha"
    # Until the new route is served, its messages reach $default, never an error.
    assert all(reply.get("route") == "$default" for reply in before_beta), before_beta
    assert beta["version"] == "beta"
    assert all(reply.get("route") == "alpha" for reply in before_removal), before_removal
    assert removed["version"] == "default"
    assert bystander_reply["route"] == "$default"
    assert "changed: app.arc" in logs.changed()


async def test_settings_edit_applies_to_new_environments(
    project: Project, start_emulator: EmulatorFactory, logs: LogRecords
) -> None:
    directory = project.handler(
        "default", python_handler("v1"), config={"memory": 256, "timeout": 3}
    )
    emulator = await start_emulator(watch=True, route_responses=True)
    config = directory / "config.arc"

    async with connect(emulator) as client:
        before = await client.ask("before")

        config.write_text("@aws\nruntime python3.11\nmemory 99999\n")
        error = await logs.wait_for(lambda: next(iter(logs.errors("emulator.app")), None), "error")
        while_invalid = await client.ask("while invalid")

        config.write_text("@aws\nruntime python3.11\nmemory 512\ntimeout 20\n")
        after, _ = await client.ask_until(
            "after", lambda r: r["memory"] == "512", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE 512"
        )
        report = await logs.report_line("default", after["request_id"])
        assert not client.ws.closed

    assert before["memory"] == "256"
    assert before["remaining_ms"] <= 3000
    assert str(config) in error
    assert "memory" in error
    assert while_invalid["memory"] == "256"
    assert while_invalid["pid"] == before["pid"]
    assert after["remaining_ms"] > 3000
    assert "\tMemory Size: 512 MB\t" in report
    assert logs.changed() == ["changed: src/ws/default/config.arc"] * 2


async def test_invalid_manifest_keeps_last_good_configuration(
    project: Project, start_emulator: EmulatorFactory, logs: LogRecords
) -> None:
    project.handler("default", python_handler("default"))
    alpha_source = project.handler("alpha", python_handler("alpha-v1")) / "lambda.py"
    emulator = await start_emulator(watch=True, route_responses=True)
    manifest = project.root / "app.arc"

    async with connect(emulator) as client:
        await client.ask(action("alpha"))

        # @ws is given twice, on lines 4 and 7.
        manifest.write_text("@app\ntestapp\n\n@ws\nalpha\n\n@ws\ngamma\n")
        syntax_error = await logs.wait_for(
            lambda: next(iter(logs.errors("emulator.app")), None), "the manifest error"
        )
        alpha_while_broken = await client.ask(action("alpha"))
        # Code edits still apply while the manifest is broken.
        alpha_source.write_text(python_handler("alpha-v2"))
        alpha_edited, _ = await client.ask_until(
            action("alpha"), lambda r: r.get("version") == "alpha-v2", "version alpha-v2"
        )

        # A valid manifest that names a route before its handler directory exists.
        project.routes.append("gamma")
        project.write()
        missing_directory = await logs.wait_for(
            lambda: logs.errors("emulator.app")[1:2] or None, "the missing directory error"
        )
        alpha_while_missing = await client.ask(action("alpha"))
        gamma_while_missing = await client.ask(action("gamma"))

        project.handler("gamma", python_handler("gamma"))
        gamma, _ = await client.ask_until(
            action("gamma"), lambda r: r.get("route") == "gamma", "route gamma"
        )
        alpha_after_fix = await client.ask(action("alpha"))
        assert not client.ws.closed

    assert f"{manifest}:7:" in syntax_error
    assert "@ws" in syntax_error
    assert "last good configuration" in syntax_error
    assert alpha_while_broken["route"] == "alpha"
    assert alpha_edited["route"] == "alpha"
    assert "src/ws/gamma" in missing_directory[0]
    assert alpha_while_missing["version"] == "alpha-v2"
    assert gamma_while_missing["route"] == "$default"
    assert gamma["version"] == "gamma"
    assert alpha_after_fix["version"] == "alpha-v2"


async def test_user_env_edit_restarts_every_function(
    project: Project, start_emulator: EmulatorFactory, logs: LogRecords
) -> None:
    project.handler("default", python_handler("default"))
    project.handler("other", python_handler("other"))
    project.root.mkdir(parents=True, exist_ok=True)
    dotenv = project.root / ".env"
    dotenv.write_text("GREETING=one\n")
    emulator = await start_emulator(watch=True, route_responses=True)

    async with connect(emulator) as client:
        default_one = await client.ask("default")
        other_one = await client.ask(action("other"))

        dotenv.write_text("GREETING=two\n")
        default_two, _ = await client.ask_until(
            "default", lambda r: r["greeting"] == "two", "GREETING=two from .env"
        )
        other_two, _ = await client.ask_until(
            action("other"), lambda r: r["greeting"] == "two", "GREETING=two from .env"
        )

        # Without .env, prefs.arc provides the variables.
        (project.root / "prefs.arc").write_text("@env\ntesting\n  GREETING three\n")
        dotenv.unlink()
        default_three, _ = await client.ask_until(
            "default", lambda r: r["greeting"] == "three", "GREETING three from prefs.arc"
        )
        other_three, _ = await client.ask_until(
            action("other"), lambda r: r["greeting"] == "three", "GREETING three from prefs.arc"
        )
        assert not client.ws.closed

    assert default_one["greeting"] == "one"
    assert other_one["greeting"] == "one"
    assert default_two["pid"] != default_one["pid"]
    assert other_two["pid"] != other_one["pid"]
    assert default_three["pid"] != default_two["pid"]
    assert other_three["pid"] != other_two["pid"]


async def test_broken_handler_recovers_after_fix(
    project: Project, start_emulator: EmulatorFactory, logs: LogRecords
) -> None:
    source = project.handler("default", python_handler("v1")) / "lambda.py"
    emulator = await start_emulator(watch=True, route_responses=True)

    def init_errors(error_type: str) -> list[str]:
        return [
            line
            for line in logs.function_lines("default")
            if line.startswith(f"[ERROR] {error_type}")
        ]

    async with connect(emulator) as client:
        before = await client.ask("before")
        worker = worker_of(before["pid"])

        source.write_text(SYNTAX_ERROR_HANDLER)
        first_error, _ = await client.ask_until("broken", is_error_frame, "an error frame")
        await logs.wait_for_line("default", r"^\[ERROR\] Runtime\.UserCodeSyntaxError")
        syntax_errors = [first_error, await client.ask("broken"), await client.ask("broken")]
        syntax_error_lines = init_errors("Runtime.UserCodeSyntaxError")

        source.write_text(python_handler("v2"))
        fixed, _ = await client.ask_until("fixed", lambda r: r.get("version") == "v2", "v2")
        fixed_worker = worker_of(fixed["pid"])

        source.write_text(IMPORT_ERROR_HANDLER)
        await client.ask_until("broken", is_error_frame, "an error frame")
        await logs.wait_for_line("default", r"^\[ERROR\] Runtime\.ImportModuleError")
        await client.ask("broken")
        import_error_lines = init_errors("Runtime.ImportModuleError")

        source.write_text(python_handler("v3"))
        fixed_again, _ = await client.ask_until("fixed", lambda r: r.get("version") == "v3", "v3")
        fixed_again_worker = worker_of(fixed_again["pid"])
        assert not client.ws.closed

    assert all(is_error_frame(reply) for reply in syntax_errors), syntax_errors
    assert len({reply["requestId"] for reply in syntax_errors}) == 3
    # The failed init is reported once, not again for every message.
    assert len(syntax_error_lines) == 1, syntax_error_lines
    assert len(import_error_lines) == 1, import_error_lines
    assert "no_such_module_for_the_reload_test" in import_error_lines[0]
    # The same worker brought the function back: the emulator did not restart.
    assert fixed_worker.pid == worker.pid
    assert fixed_again_worker.pid == worker.pid


async def test_no_watch_ignores_edits(
    project: Project, start_emulator: EmulatorFactory, logs: LogRecords
) -> None:
    source = project.handler("default", python_handler("v1")) / "lambda.py"
    unwatched = await start_emulator(watch=False, route_responses=True)
    # A watching emulator on the same project shows when the edit has been
    # seen. It starts second, so that it does not see the first one write
    # app.arc.
    watching = await start_emulator(watch=True, route_responses=True)

    async with connect(watching) as watching_client, connect(unwatched) as client:
        before = await client.ask("before")
        # Both run v1 before the edit: an environment that started after
        # it would load v2 without any reload.
        assert (await watching_client.ask("before"))["version"] == "v1"
        source.write_text(python_handler("v2"))
        await watching_client.ask_until("seen", lambda r: r["version"] == "v2", "version v2")
        # An environment that started after the write replies with the new
        # code before the reload is logged, so wait for the log line too.
        await logs.wait_for(lambda: logs.changed() or None, "the reload's changed: line")
        after = await client.ask("after")

    assert before["version"] == "v1"
    assert after["version"] == "v1"
    assert after["pid"] == before["pid"]
    assert len(logs.changed()) == 1


async def test_ignored_files_change_nothing(
    project: Project, start_emulator: EmulatorFactory, logs: LogRecords
) -> None:
    directory = project.handler("default", python_handler("v1"))
    other_source = project.handler("other", python_handler("other-v1")) / "lambda.py"
    emulator = await start_emulator(watch=True, route_responses=True)
    ignored = [
        directory / ".lambda.py.swp",
        directory / "lambda.py~",
        directory / ".#lambda.py",
        directory / "#lambda.py#",
        directory / "4913",
        directory / "node_modules" / "dependency" / "index.js",
        directory / "__pycache__" / "lambda.cpython-311.pyc",
        project.root / ".git" / "HEAD",
        project.root / "node_modules" / "dependency" / "index.js",
    ]

    async with connect(emulator) as client:
        before = await client.ask("before")
        # `other` runs other-v1 before the edit: an environment that started
        # after it would load other-v2 without any reload.
        assert (await client.ask(action("other")))["version"] == "other-v1"
        for path in ignored:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("ignored\n")
        # Events arrive in order, so once this edit has been applied the
        # ignored files have been seen too.
        other_source.write_text(python_handler("other-v2"))
        await client.ask_until(action("other"), lambda r: r["version"] == "other-v2", "other-v2")
        # An environment that started after the write replies with the new
        # code before the reload is logged, so wait for the log line too.
        await logs.wait_for(lambda: logs.changed() or None, "the reload's changed: line")
        after = await client.ask("after")

    assert logs.changed() == ["changed: src/ws/other/lambda.py"]
    assert after["pid"] == before["pid"]


async def test_failed_worker_start_switches_routes(
    project: Project,
    start_emulator: EmulatorFactory,
    logs: LogRecords,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    project.handler("default", python_handler("default"))
    emulator = await start_emulator(watch=True, route_responses=True)

    async with connect(emulator) as client:
        await client.ask("before")
        # Workers inherit the emulator's environment: with PYTHONHOME
        # pointing nowhere, Python cannot start the new route's worker.
        monkeypatch.setenv("PYTHONHOME", str(tmp_path / "no-python-here"))
        project.handler("beta", python_handler("beta"))
        project.write()

        def failed_start() -> str | None:
            errors = logs.errors("emulator.supervisor.functions")
            return next((error for error in errors if "failed to start" in error), None)

        failure = await logs.wait_for(failed_start, "the failed start of beta's worker")
        monkeypatch.delenv("PYTHONHOME")
        beta, before_beta = await client.ask_until(
            action("beta"), lambda r: r.get("route") == "beta", "route beta"
        )

    assert "the worker for route beta failed to start" in failure
    # The route was switched despite the failure: until its worker ran,
    # its messages failed instead of reaching $default.
    assert all(is_error_frame(reply) for reply in before_beta), before_beta
    assert beta["version"] == "beta"
