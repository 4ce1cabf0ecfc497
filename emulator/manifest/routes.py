"""The `@app` name, the `@ws` routes and their handler directories."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.config import BUILTIN_ROUTES
from emulator.manifest.arc import Position
from emulator.manifest.documents import Document
from emulator.manifest.handlers import DEFAULT_HANDLER_FILES
from emulator.manifest.runtimes import runtime_family

logger = logging.getLogger(__name__)

# Architect's rule for @ws route names (`veryLooseName` in
# `@architect/inventory`), because API Gateway publishes none of its own.
_ROUTE_NAME = re.compile(r"[a-zA-Z0-9/\-._]+")
MAX_ROUTE_NAME_LENGTH = 255

HANDLERS_DIR = Path("src") / "ws"

_ROUTE_NAME_RULE = "A route name is 1 to 255 characters: letters, digits, `/`, `-`, `.` and `_`."


@dataclass(frozen=True)
class RouteDeclaration:
    """One `@ws` route: its name without `$`, its `src` if given, and where it was declared."""

    name: str
    src: str | None
    position: Position

    @property
    def route_key(self) -> str:
        """The `requestContext.routeKey`: `$connect`, `$default`, `$disconnect` or the name."""
        return f"${self.name}" if self.name in BUILTIN_ROUTES else self.name


def read_app_name(document: Document) -> str:
    """Return the app name, the single entry of `@app`."""
    if "app" not in document.pragmas:
        raise document.error(
            "missing @app pragma",
            hint="Add a line `@app` and the app name on the line below it.",
        )
    entries = document.pragmas["app"]
    hint = "Write the app name alone on the line after `@app`."
    if len(entries) != 1:
        position = document.position("app", 0) if entries else document.position("app")
        raise document.error(
            f"expected exactly one app name under @app, found {len(entries)} entries",
            position,
            hint=hint,
        )
    name = _entry_name(document, "app", 0, entries[0])
    if not name:
        raise document.error(
            f"invalid @app entry: expected the app name, found {_describe(entries[0])}",
            document.position("app", 0),
            hint=hint,
        )
    return name


def read_routes(document: Document) -> list[RouteDeclaration]:
    """Return the routes of `@ws`: connect, default, disconnect, then the custom routes in order.

    The built-in routes exist whether they are declared or not. Raises
    ConfigError for invalid and duplicate names.
    """
    declared: dict[str, RouteDeclaration] = {}
    for index, entry in enumerate(document.pragmas.get("ws", [])):
        route = _read_route(document, index, entry)
        previous = declared.get(route.name)
        if previous is not None:
            where = f" (first on line {previous.position.line})" if previous.position.line else ""
            raise document.error(
                f"@ws route `{route.name}` is declared twice{where}",
                route.position,
                hint="`$connect`, `$default` and `$disconnect` are the same routes "
                "as `connect`, `default` and `disconnect`.",
            )
        declared[route.name] = route

    pragma_position = document.position("ws")
    routes = [
        declared.get(name, RouteDeclaration(name, None, pragma_position)) for name in BUILTIN_ROUTES
    ]
    routes.extend(route for route in declared.values() if route.name not in BUILTIN_ROUTES)
    return routes


def locate_handler_directory(root: Path, document: Document, route: RouteDeclaration) -> Path:
    """Return the resolved handler directory of a route, which may not exist yet.

    `root` must already be resolved. Raises ConfigError when the directory
    resolves outside the root (through `..` or a symbolic link).
    """
    relative = _relative_directory(route)
    try:
        resolved = (root / relative).resolve()
    except (OSError, RuntimeError) as error:
        # Python 3.10 to 3.12 raise RuntimeError for a symbolic link loop.
        raise document.error(
            f"failed to resolve the handler directory {relative} "
            f"of route {route.route_key}: {error}",
            route.position,
        ) from error

    if not resolved.is_relative_to(root):
        raise document.error(
            f"the handler directory {relative} of route {route.route_key} resolves to "
            f"{resolved}, outside the project root {root}",
            route.position,
            hint="Handler directories must be inside the project; "
            "remove `..` or the symbolic link that leads out of it.",
        )
    return resolved


def resolve_handler_directory(
    root: Path, document: Document, route: RouteDeclaration, runtime: str
) -> Path:
    """Return the resolved handler directory of a route.

    Raises ConfigError as `locate_handler_directory` does, and when the
    directory is missing or is not a directory. `runtime` only chooses the
    file that the hint for a missing directory suggests.
    """
    resolved = locate_handler_directory(root, document, route)
    relative = _relative_directory(route)
    if not resolved.is_dir():
        if resolved.exists():
            raise document.error(
                f"the handler directory {relative} of route {route.route_key} is not a directory",
                route.position,
            )
        handler_file = DEFAULT_HANDLER_FILES[runtime_family(runtime)][0]
        raise document.error(
            f"the handler directory {relative} of route {route.route_key} does not exist",
            route.position,
            hint="Run `python3 -m emulator init` in the project directory to create it "
            f"with a starter handler, or create it yourself with `mkdir -p {relative}` "
            f"and a handler file such as {relative}/{handler_file}.",
        )
    return resolved


def _relative_directory(route: RouteDeclaration) -> str:
    return route.src if route.src is not None else (HANDLERS_DIR / route.name).as_posix()


def _read_route(document: Document, index: int, entry: Any) -> RouteDeclaration:
    position = document.position("ws", index)
    src: str | None = None

    if isinstance(entry, dict) and len(entry) == 1:
        ((raw_name, settings),) = entry.items()
        name = str(raw_name)
        src = _read_route_settings(document, index, name, settings)
    elif isinstance(entry, list):
        raise document.error(
            f"expected one route name per line, found {len(entry)} values",
            position,
            hint="Write each route on its own line. To choose its handler directory, "
            "indent `src <directory>` two spaces under the name.",
        )
    else:
        found = _entry_name(document, "ws", index, entry)
        if found is None:
            raise document.error(
                f"expected a route name, found {_describe(entry)}", position, hint=_ROUTE_NAME_RULE
            )
        name = found

    # Architect accepts `$connect`, `$default` and `$disconnect` for the
    # built-in routes. Other names cannot start with `$`.
    if name.startswith("$") and name[1:] in BUILTIN_ROUTES:
        name = name[1:]
    if len(name) > MAX_ROUTE_NAME_LENGTH:
        raise document.error(
            f"@ws route name is {len(name)} characters long, more than {MAX_ROUTE_NAME_LENGTH}",
            position,
            hint=_ROUTE_NAME_RULE,
        )
    if not _ROUTE_NAME.fullmatch(name):
        raise document.error(f"invalid @ws route name '{name}'", position, hint=_ROUTE_NAME_RULE)
    return RouteDeclaration(name, src, position)


def _read_route_settings(document: Document, index: int, name: str, settings: Any) -> str | None:
    """Return the `src` of a route given in map form, or None if it has none."""
    position = document.position("ws", index)
    if settings is None:
        return None
    if not isinstance(settings, dict):
        raise document.error(
            f"expected `src <directory>` under route `{name}`, found {_describe(settings)}",
            position,
            hint=f"For example:\n    {name}\n      src src/ws/{name}",
        )

    for key in settings:
        if key != "src":
            logger.warning(
                "%s: ignoring setting %r of @ws route %r, because routes only take `src`",
                document.path,
                key,
                name,
            )
    if "src" not in settings:
        return None
    src = settings["src"]
    if not isinstance(src, str) or not src:
        raise document.error(
            f"invalid src {_describe(src)} of route `{name}`: expected a directory path",
            document.position("ws", index, "src"),
            hint="Give the handler directory relative to the project root, in quotes if needed.",
        )
    return src


def _entry_name(document: Document, pragma: str, index: int, entry: Any) -> str | None:
    """Return a name entry as written, or None if the entry is not a single name.

    A `.arc` entry such as `007` was read as the number 7, so the written
    text is used for numbers.
    """
    if isinstance(entry, str):
        return entry
    if isinstance(entry, int | float) and not isinstance(entry, bool):
        text = document.position(pragma, index).text
        return text if text is not None else str(entry)
    return None


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, str):
        return f"'{value}'"
    return repr(value)
