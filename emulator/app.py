"""The emulator as one object: manifest, gateway and workers, started and stopped together.

`Emulator` is the Python API (`async with Emulator(path) as emulator:`);
`serve()` is what the CLI's `start` command runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from emulator.background import BackgroundEmulator
from emulator.config import AppConfig, Options
from emulator.errors import EmulatorError
from emulator.gateway.server import Gateway
from emulator.invocation import InvocationResult
from emulator.ipc.messages import Log
from emulator.lambda_env import Endpoints
from emulator.manifest import format_route_table, load_project
from emulator.records import InvocationRecord, InvocationRecorder, RecordFilter
from emulator.supervisor.functions import FunctionSupervisor, forward_log
from emulator.supervisor.reloader import Reloader, plan_reload

logger = logging.getLogger(__name__)


class Emulator:
    """An emulated API Gateway WebSocket API with its Lambda functions."""

    app: AppConfig
    options: Options

    def __init__(
        self,
        project: Path | str | AppConfig,
        options: Options | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        ipv6_loopback: bool = True,
        **option_fields: Any,
    ) -> None:
        """Load the project; `start()` serves it.

        Keyword arguments named after `Options` fields (`port=0`,
        `route_responses=True`) override those of `options`. `environ`
        replaces the emulator's own environment as the source of PATH, AWS
        credentials and `pass_env` variables. `ipv6_loopback` allows
        listening on `::1` beside the default host `127.0.0.1`. Raises
        ConfigError for an invalid project and TypeError for an unknown
        keyword argument.
        """
        self.options = _options_with(options or Options(), option_fields)
        self.app = project if isinstance(project, AppConfig) else load_project(Path(project))
        self._environ = dict(os.environ if environ is None else environ)
        self._gateway = Gateway(
            self.app,
            self.options,
            self,
            health_extra=self._health,
            ipv6_loopback=ipv6_loopback,
        )
        self._supervisor: FunctionSupervisor | None = None
        self._reloader: Reloader | None = None
        self._ready = asyncio.Event()
        self._recorder = InvocationRecorder()

    async def start(self) -> None:
        """Listen on the ports, then start the workers (and their warm environments)."""
        await self._gateway.start()
        endpoints = Endpoints(
            port=self._gateway.port,
            internal_port=self._gateway.internal_port,
            management_url=self._gateway.management_url,
        )
        self._supervisor = FunctionSupervisor(
            self.app,
            self.options,
            endpoints,
            self._on_log,
            self._environ,
            on_result=self._recorder.on_result,
        )
        try:
            await self._supervisor.start()
        except BaseException:
            await self.stop()
            raise
        self._ready.set()
        if self.options.watch:
            self._reloader = Reloader(
                self.app.root, self.reload, force_polling=self.options.watch_polling
            )
            await self._reloader.start()

    async def reload(self, paths: set[Path]) -> None:
        """Apply a batch of changed files: read the configuration again or restart functions.

        Connections stay open throughout. A configuration that no longer
        loads is logged, and the last good one keeps serving.
        """
        plan = plan_reload(self.app, paths)
        if plan.empty:
            return
        logger.info("changed: %s", ", ".join(plan.changed))
        app = self.app
        if plan.reload_config:
            try:
                app = load_project(self.app.root)
            except EmulatorError as error:
                logger.error("%s\nthe last good configuration keeps serving", error)
                app = self.app
        if app is self.app and not plan.restart and not plan.restart_all:
            return
        restart = plan.restart
        if plan.restart_all:
            restart = {function.name for function in app.functions}

        def switch_routes() -> None:
            # Between starting the added routes' workers and stopping the
            # removed routes' ones, so every routed message finds a worker.
            if app != self.app:
                self._gateway.update_app(app)
            self.app = app

        assert self._supervisor is not None
        try:
            await self._supervisor.apply(app, restart, on_started=switch_routes)
        except EmulatorError as error:
            logger.error("%s\nthe last good configuration keeps serving", error)

    async def stop(self) -> None:
        """Close the connections (running `$disconnect`), then stop every worker."""
        if self._reloader is not None:
            await self._reloader.stop()
        await self._gateway.stop()
        if self._supervisor is not None:
            await self._supervisor.stop()

    async def invoke(self, route: str, event: bytes) -> InvocationResult:
        await self._ready.wait()
        assert self._supervisor is not None
        return await self._supervisor.invoke(route, event)

    def run_in_background(self) -> BackgroundEmulator:
        """Start serving on a new event loop in a daemon thread, for code without a loop.

        Returns once the emulator listens; stop it with the handle's
        `stop()` or a `with` block. Raises what `start()` raises.
        """
        return BackgroundEmulator.start(self)

    @property
    def records(self) -> list[InvocationRecord]:
        """Records of the finished invocations, oldest first (the latest 10,000)."""
        return self._recorder.records

    def clear_records(self) -> None:
        """Forget the records so far, including those `next_record` has not returned."""
        self._recorder.clear()

    async def next_record(
        self,
        route: str | None = None,
        *,
        matches: RecordFilter | None = None,
        timeout: float | None = 10.0,
    ) -> InvocationRecord:
        """Return the oldest record of `route` that no earlier call returned, waiting for one.

        `route` is a route name with or without `$` (`connect`, `$default`,
        `send`), or None for any route; `matches` filters further. Raises
        TimeoutError when none arrives within `timeout` seconds.
        """
        return await self._recorder.next_record(route, matches=matches, timeout=timeout)

    def _on_log(self, route: str, log: Log) -> None:
        forward_log(route, log)
        self._recorder.on_log(route, log)

    def _health(self) -> dict[str, object]:
        return self._supervisor.health() if self._supervisor else {"workers": 0}

    @property
    def port(self) -> int:
        return self._gateway.port

    @property
    def internal_port(self) -> int:
        return self._gateway.internal_port

    @property
    def url(self) -> str:
        """The WebSocket URL clients connect to."""
        return f"ws://{_url_host(self.options.host)}:{self.port}"

    @property
    def management_url(self) -> str:
        return self._gateway.management_url

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


def _options_with(options: Options, fields: Mapping[str, Any]) -> Options:
    known = {field.name for field in dataclasses.fields(Options)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise TypeError(
            f"Emulator() got unknown keyword arguments: {', '.join(unknown)}; "
            f"the Options fields are: {', '.join(sorted(known))}"
        )
    return dataclasses.replace(options, **fields)


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "localhost"
    return f"[{host}]" if ":" in host else host


def _banner(emulator: Emulator) -> str:
    app = emulator.app
    lines = [
        f"App {app.name} ({app.manifest})",
        f"  WebSocket URL:  {emulator.url}",
        f"  Management API: {emulator.management_url}/@connections/{{connectionId}}",
        f"  Internal port:  {emulator.internal_port}",
        "",
        format_route_table(app),
    ]
    return "\n".join(lines)


async def _serve(app: AppConfig, options: Options) -> int:
    emulator = Emulator(app, options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # The handlers only record the request; the loop below does the work.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await emulator.start()
    print(_banner(emulator), flush=True)
    await stop.wait()
    logger.info("stopping: closing connections and stopping workers")
    # A second Ctrl+C while stopping exits at once.
    loop.add_signal_handler(signal.SIGINT, lambda: os._exit(130))
    await emulator.stop()
    logger.info("stopped")
    return 0


def serve(app: AppConfig, options: Options) -> int:
    """Run the emulator until Ctrl+C or SIGTERM; return the exit status."""
    return asyncio.run(_serve(app, options))
