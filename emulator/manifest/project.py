"""Building the `AppConfig` of a project directory."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from emulator.config import AppConfig, FunctionConfig
from emulator.errors import ConfigError
from emulator.manifest.documents import Document, find_function_config, find_manifest
from emulator.manifest.handlers import resolve_handler
from emulator.manifest.routes import (
    RouteDeclaration,
    read_app_name,
    read_routes,
    resolve_handler_directory,
)
from emulator.manifest.settings import FunctionSettings, read_aws_settings
from emulator.manifest.userenv import load_user_env

# Pragmas that the emulator reads. The others are listed in `other_pragmas`.
EMULATED_PRAGMAS = frozenset({"app", "aws", "ws"})

_MANIFEST_SEARCH_TEXT = (
    "app.arc, .arc, arc.json, arc.yaml, arc.yml, and the `arc` or `architect` key of package.json"
)


def load_project(root: Path) -> AppConfig:
    """Read the project in `root`: its manifest, handler directories, settings and user env.

    Functions come in a stable order: connect, default, disconnect, then the
    custom routes in manifest order. Paths in the result are resolved.
    Raises ConfigError for anything that would stop the app from starting,
    but not for a missing handler file, which fails at invocation instead.
    """
    root_dir = _resolve_root(root)

    manifest = find_manifest(root_dir)
    if manifest is None:
        raise ConfigError(
            f"no Architect manifest found in {root_dir}",
            hint=f"Looked for {_MANIFEST_SEARCH_TEXT}. "
            "Create app.arc with `@app` and its name, then `@ws`.",
        )
    if "ws" not in manifest.pragmas:
        raise ConfigError(
            "the manifest has no @ws pragma, so there is no WebSocket API to emulate",
            path=manifest.path,
            hint="Add a line `@ws` to declare the WebSocket API; its routes go on the lines below.",
        )

    name = read_app_name(manifest)
    app_settings = FunctionSettings().with_overrides(read_aws_settings(manifest))
    functions = tuple(
        _function_config(root_dir, manifest, route, app_settings) for route in read_routes(manifest)
    )
    user_env, user_env_file = load_user_env(root_dir)

    return AppConfig(
        name=name,
        root=root_dir,
        manifest=manifest.path,
        functions=functions,
        user_env=MappingProxyType(user_env),
        user_env_file=user_env_file,
        other_pragmas=tuple(
            pragma for pragma in manifest.pragmas if pragma not in EMULATED_PRAGMAS
        ),
    )


def format_route_table(app: AppConfig) -> str:
    """Format the routes of an app as an aligned plain-text table with a header line."""
    rows = [("ROUTE", "HANDLER", "RUNTIME", "TIMEOUT", "MEMORY")]
    for function in app.functions:
        rows.append(
            (
                function.route_key,
                _relative_to_root(function.src, app.root),
                function.runtime,
                f"{function.timeout} s",
                f"{function.memory} MB",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _resolve_root(root: Path) -> Path:
    try:
        resolved = root.resolve()
    except (OSError, RuntimeError) as error:
        raise ConfigError(f"failed to resolve the project directory {root}: {error}") from error
    if not resolved.is_dir():
        raise ConfigError(
            f"project directory {root} not found",
            hint="Give the directory that contains app.arc, or run the command inside it.",
        )
    return resolved


def _function_config(
    root: Path, manifest: Document, route: RouteDeclaration, app_settings: FunctionSettings
) -> FunctionConfig:
    src = resolve_handler_directory(root, manifest, route, app_settings.runtime)

    settings = app_settings
    config_document = find_function_config(src)
    if config_document is not None:
        settings = settings.with_overrides(read_aws_settings(config_document))

    handler, handler_file, handler_method = resolve_handler(settings.runtime, src, settings.handler)
    return FunctionConfig(
        name=route.name,
        route_key=route.route_key,
        src=src,
        runtime=settings.runtime,
        handler=handler,
        handler_file=handler_file,
        handler_method=handler_method,
        timeout=settings.timeout,
        memory=settings.memory,
        concurrency=settings.concurrency,
        region=settings.region,
        config_file=config_document.path if config_document is not None else None,
        handler_setting=settings.handler,
    )


def _relative_to_root(path: Path, root: Path) -> str:
    if path.is_relative_to(root):
        return path.relative_to(root).as_posix()
    return str(path)
