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
