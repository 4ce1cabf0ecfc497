"""The immutable description of an app and of the emulator's options.

The manifest reader builds an `AppConfig` once; the CLI builds `Options`.
Both are passed down as values, so nothing below reads files or the
environment to learn its settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

BUILTIN_ROUTES = ("connect", "default", "disconnect")


@dataclass(frozen=True)
class FunctionConfig:
    """One `@ws` route and the Lambda function that handles it.

    `name` is the route as written in the manifest without a leading `$`
    (`connect`, `send-message`, `rooms/join`). `route_key` is what API
    Gateway puts in `requestContext.routeKey`: `$connect`, `$default` and
    `$disconnect` for the built-in routes, the name for custom ones.
    """

    name: str
    route_key: str
    src: Path
    runtime: str
    handler: str
    handler_file: str | None
    handler_method: str
    timeout: int
    memory: int
    concurrency: int | None
    region: str
    config_file: Path | None = None
    # The `handler` setting as configured, None when the runtime chooses the
    # handler file. Pass this, not `handler`, to `resolve_handler` when looking
    # the file up again, because `handler` names the file found at load time.
    handler_setting: str | None = None

    @property
    def is_builtin(self) -> bool:
        return self.name in BUILTIN_ROUTES


@dataclass(frozen=True)
class AppConfig:
    """A project: its name, root, manifest and one function per route."""

    name: str
    root: Path
    manifest: Path
    functions: tuple[FunctionConfig, ...]
    user_env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    user_env_file: Path | None = None
    other_pragmas: tuple[str, ...] = ()

    def function(self, name: str) -> FunctionConfig:
        """Return the function of route `name` (without `$`); raise KeyError if absent."""
        for function in self.functions:
            if function.name == name:
                return function
        raise KeyError(name)

    @property
    def custom_routes(self) -> frozenset[str]:
        return frozenset(f.name for f in self.functions if not f.is_builtin)


@dataclass(frozen=True)
class Options:
    """Settings from the command line and the emulator's environment.

    Defaults are API Gateway's and Lambda's own values where one exists.
    """

    host: str = "127.0.0.1"
    port: int = 3333
    internal_port: int = 2222
    stage: str = "testing"
    route_responses: bool = False
    # API Gateway limits, in bytes and seconds.
    max_message_bytes: int = 128 * 1024
    max_frame_bytes: int = 32 * 1024
    idle_timeout: float = 10 * 60
    max_connection_duration: float = 2 * 60 * 60
    integration_timeout: float = 29.0
    # Seconds that `$disconnect` handlers get when the emulator stops.
    shutdown_timeout: float = 5.0
    # Execution environments.
    prewarm: bool = True
    default_concurrency: int = 10
    # Lambda has no queue for synchronous invocations; a laptop cannot run
    # a thousand environments, so bursts wait here instead of failing.
    queue_size: int = 1000
    idle_environment_timeout: float = 5 * 60
    pass_env: tuple[str, ...] = ()
    watch: bool = True
    # Poll the project for changes instead of waiting for file system events,
    # for mounts that deliver no events (some Docker bind mounts, network shares).
    watch_polling: bool = False
    allow_remote_management: bool = False
