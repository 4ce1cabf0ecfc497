"""The Invoker the gateway calls: one worker process per function."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from emulator.config import AppConfig, FunctionConfig, Options
from emulator.errors import EmulatorError
from emulator.invocation import ERROR_UNKNOWN_FUNCTION, InvocationResult
from emulator.ipc.messages import Log, WorkerConfig
from emulator.lambda_env import (
    Endpoints,
    build_environment,
    function_arn,
    function_name,
    node_path,
    python_path,
    ruby_lib,
)
from emulator.runtimes import RuntimeResolver
from emulator.supervisor.worker_process import LogHandler, ResultHandler, WorkerProcess

logger = logging.getLogger(__name__)


class FunctionSupervisor:
    """Starts, invokes, reconfigures and stops the workers of an app."""

    app: AppConfig
    workers: dict[str, WorkerProcess]

    def __init__(
        self,
        app: AppConfig,
        options: Options,
        endpoints: Endpoints,
        on_log: LogHandler,
        environ: Mapping[str, str] | None = None,
        on_result: ResultHandler | None = None,
    ) -> None:
        self.app = app
        self.workers = {}
        self._options = options
        self._endpoints = endpoints
        self._on_log = on_log
        self._on_result = on_result
        self._environ = dict(os.environ if environ is None else environ)
        self._resolver = RuntimeResolver(self._environ.get("PATH"))
        self._state_dir = Path(tempfile.mkdtemp(prefix="arc-ws-emulator-"))
        self._shared_dir = self._link_shared_code(app)

    def _link_shared_code(self, app: AppConfig) -> Path:
        """Make `src/shared` and `src/views` importable without touching handler dirs.

        Python finds them as `shared` and `views` under `<dir>/vendor`, Node.js
        as `@architect/shared` and `@architect/views` under `<dir>/node_modules`.
        """
        shared = self._state_dir / "shared"
        for name in ("shared", "views"):
            source = app.root / "src" / name
            for link in (shared / "vendor" / name, shared / "node_modules" / "@architect" / name):
                link.parent.mkdir(parents=True, exist_ok=True)
                if link.is_symlink():
                    link.unlink()
                if source.is_dir():
                    link.symlink_to(source, target_is_directory=True)
        return shared

    def worker_config(self, function: FunctionConfig) -> WorkerConfig:
        name = function_name(self.app, function)
        environment = build_environment(
            self.app, function, self._options, self._endpoints, self._environ
        )
        if function.runtime.startswith("python"):
            environment["PYTHONPATH"] = os.pathsep.join(
                python_path(function, self._shared_dir)
                + [p for p in [environment.get("PYTHONPATH", "")] if p]
            )
        elif function.runtime.startswith("nodejs"):
            environment["NODE_PATH"] = os.pathsep.join(
                node_path(self._shared_dir) + [p for p in [environment.get("NODE_PATH", "")] if p]
            )
        elif function.runtime.startswith("ruby"):
            environment["RUBYLIB"] = os.pathsep.join(
                ruby_lib(function, self._shared_dir)
                + [p for p in [environment.get("RUBYLIB", "")] if p]
            )
        return WorkerConfig(
            route=function.name,
            function_name=name,
            function_arn=function_arn(function, name),
            region=function.region,
            src=str(function.src),
            runtime=function.runtime,
            handler_setting=function.handler_setting,
            command=self._resolver.command(
                function.runtime,
                function.src,
                # Deno checks reads: let handlers import `src/shared` and `src/views`.
                readable=[self.app.root / "src" / "shared", self.app.root / "src" / "views"],
            ),
            timeout=function.timeout,
            memory=function.memory,
            concurrency=function.concurrency or self._options.default_concurrency,
            queue_size=self._options.queue_size,
            idle_environment_timeout=self._options.idle_environment_timeout,
            prewarm=self._options.prewarm,
            environment=environment,
        )

    async def start(self) -> None:
        """Start one worker per function, all at once."""
        configs = [self.worker_config(function) for function in self.app.functions]
        for config in configs:
            self.workers[config.route] = WorkerProcess(config, self._on_log, self._on_result)
        await asyncio.gather(*(worker.start() for worker in self.workers.values()))

    async def apply(
        self,
        app: AppConfig,
        restart: set[str],
        *,
        on_started: Callable[[], None] | None = None,
    ) -> None:
        """Bring the workers in line with `app` and restart the routes in `restart`.

        Added routes get a worker, removed routes lose theirs, and a route
        whose settings or environment changed, or that is in `restart`, gets
        new environments. `on_started` runs once the added workers are
        ready and before the removed ones stop, so that the caller can
        switch its routing in between and no message reaches a route
        without a worker; it runs even if an added worker failed to start.
        Raises EmulatorError (before changing anything) when a function's
        runtime cannot run here.
        """
        previous, self.app = self.app, app
        try:
            configs = {function.name: self.worker_config(function) for function in app.functions}
        except EmulatorError:
            self.app = previous
            raise
        self._link_shared_code(app)
        added: list[WorkerProcess] = []
        for route, config in configs.items():
            existing = self.workers.get(route)
            if existing is None:
                logger.info("route %s was added; starting its worker", route)
                self.workers[route] = WorkerProcess(config, self._on_log, self._on_result)
                added.append(self.workers[route])
            elif config != existing.config or route in restart:
                logger.info("restarting the environments of route %s", route)
                existing.configure(config)
        outcomes = await asyncio.gather(
            *(worker.start() for worker in added), return_exceptions=True
        )
        for worker, outcome in zip(added, outcomes, strict=True):
            # The route is served all the same: a worker that exited is
            # started again with a growing delay, as after a crash, and
            # until then its messages fail.
            if isinstance(outcome, Exception):
                logger.error("the worker for route %s failed to start: %s", worker.route, outcome)

        if on_started is not None:
            on_started()
        removed = [self.workers.pop(route) for route in list(self.workers) if route not in configs]
        for gone in removed:
            logger.info("route %s was removed; stopping its worker", gone.route)
        # Messages that reached a removed route before the switch finish first.
        await asyncio.gather(*(worker.stop(drain=True) for worker in removed))

    async def invoke(self, route: str, event: bytes) -> InvocationResult:
        worker = self.workers.get(route)
        if worker is None:
            return InvocationResult(
                "", None, ERROR_UNKNOWN_FUNCTION, f"no function for route {route}"
            )
        result = await worker.invoke(event)
        return InvocationResult(
            request_id=result.request_id,
            payload=result.payload,
            error_type=result.error_type,
            error_message=result.error_message,
        )

    async def stop(self) -> None:
        await asyncio.gather(*(worker.stop() for worker in self.workers.values()))
        shutil.rmtree(self._state_dir, ignore_errors=True)

    def health(self) -> dict[str, object]:
        return {
            "workers": len(self.workers),
            "environments": sum(w.status.environments for w in self.workers.values()),
        }


def forward_log(route: str, log: Log) -> None:
    """Write a worker's log lines to the emulator's output, attributed to the route."""
    function_logger = logging.getLogger(f"emulator.function.{route}")
    level = logging.ERROR if log.level == "ERROR" else logging.INFO
    if function_logger.isEnabledFor(level):
        # One record for the batch; see emulator.logs.
        extra = {"route": route, "request_id": log.request_id, "lines": log.lines}
        function_logger.log(level, "%s", "\n".join(log.lines), extra=extra)
