"""The Architect manifest reader: from a project directory to an `AppConfig`.

`load_project` finds the manifest (app.arc, .arc, arc.json, arc.yaml,
arc.yml or package.json), reads `@app`, `@ws` and `@aws`, resolves every
route's handler directory and settings, and reads the user's environment
variables. The other modules are its parts: `arc` parses the text format,
`documents` finds files and normalizes the JSON and YAML forms, `routes`,
`settings` and `userenv` interpret the pragmas, and `handlers` finds the
handler file of a runtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emulator.manifest.arc import parse_arc
    from emulator.manifest.handlers import resolve_handler
    from emulator.manifest.project import format_route_table, load_project
    from emulator.manifest.runtimes import canonical_runtime, runtime_family
    from emulator.manifest.userenv import (
        RESERVED_ENV_NAMES,
        RESERVED_ENV_PREFIXES,
        is_reserved_env_name,
    )

__all__ = [
    "RESERVED_ENV_NAMES",
    "RESERVED_ENV_PREFIXES",
    "canonical_runtime",
    "format_route_table",
    "is_reserved_env_name",
    "load_project",
    "parse_arc",
    "resolve_handler",
    "runtime_family",
]

# The module of each name above. They are imported on first use, so that a
# worker process, which imports only `emulator.manifest.handlers`, does not
# load the manifest parsers and YAML.
_MODULES = {
    "RESERVED_ENV_NAMES": "emulator.manifest.userenv",
    "RESERVED_ENV_PREFIXES": "emulator.manifest.userenv",
    "canonical_runtime": "emulator.manifest.runtimes",
    "format_route_table": "emulator.manifest.project",
    "is_reserved_env_name": "emulator.manifest.userenv",
    "load_project": "emulator.manifest.project",
    "parse_arc": "emulator.manifest.arc",
    "resolve_handler": "emulator.manifest.handlers",
    "runtime_family": "emulator.manifest.runtimes",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
