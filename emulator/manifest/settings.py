"""Lambda function settings from `@aws` sections, validated and layered.

Settings come in layers, later wins: the defaults of `FunctionSettings`,
the manifest's `@aws`, then the `@aws` of the handler directory's own
config file. Each layer is validated when it is read, so an error names
the file that contains the invalid value.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emulator.manifest.arc import Position
from emulator.manifest.documents import Document
from emulator.manifest.runtimes import DEFAULT_RUNTIME, VALID_RUNTIMES_TEXT, canonical_runtime

logger = logging.getLogger(__name__)

# Lambda's limits: timeout in seconds, memory in MB.
MIN_TIMEOUT = 1
MAX_TIMEOUT = 900
MIN_MEMORY = 128
MAX_MEMORY = 10240

_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+")
# `file.method`, where the file may sit in a subdirectory of the handler
# directory (`lib/app.handler`) but has no extension, as in Architect.
_HANDLER = re.compile(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*\.[A-Za-z_$][A-Za-z0-9_$]*")


@dataclass(frozen=True)
class FunctionSettings:
    """The settings of one function; the defaults are Architect's."""

    runtime: str = DEFAULT_RUNTIME
    timeout: int = 5
    memory: int = 1152
    # The maximum number of execution environments the function may run at
    # once. None leaves it to the emulator's default.
    concurrency: int | None = None
    # `file.method`, or None to choose the file by runtime and call `handler`.
    handler: str | None = None
    region: str = "us-west-2"

    def with_overrides(self, overrides: dict[str, Any]) -> FunctionSettings:
        return dataclasses.replace(self, **overrides)


def read_aws_settings(document: Document) -> dict[str, Any]:
    """Return the validated settings of the `@aws` section of a document.

    Keys that are not function settings (`layers`, `profile`, `policies` and
    the rest) are ignored. Raises ConfigError naming the file, the key and
    the valid values for an invalid setting.
    """
    overrides: dict[str, Any] = {}
    for index, entry in enumerate(document.pragmas.get("aws", [])):
        position = document.position("aws", index)
        setting = _setting_of_entry(entry)
        if setting is None:
            logger.debug("%s: ignoring @aws entry %r", document.path, entry)
            continue
        key, value = setting
        validate = _VALIDATORS.get(key)
        if validate is None:
            logger.debug(
                "%s: ignoring @aws key %r, which is not a function setting", document.path, key
            )
            continue
        overrides[key] = validate(document, position, value)
    return overrides


def _setting_of_entry(entry: Any) -> tuple[str, Any] | None:
    """Split an `@aws` entry into its key and value, or return None if it has no string key."""
    if isinstance(entry, str):
        return entry, None
    if isinstance(entry, list) and entry and isinstance(entry[0], str):
        values = entry[1:]
        return entry[0], values[0] if len(values) == 1 else values
    if isinstance(entry, dict) and len(entry) == 1:
        ((key, value),) = entry.items()
        return str(key), value
    return None


def _validate_runtime(document: Document, position: Position, value: Any) -> str:
    runtime = canonical_runtime(value) if isinstance(value, str) else None
    if runtime is None:
        raise document.error(
            f"invalid @aws runtime {_show(value)}",
            position,
            hint=f"Valid runtimes: {VALID_RUNTIMES_TEXT}.",
        )
    return runtime


def _validate_timeout(document: Document, position: Position, value: Any) -> int:
    return _validate_integer(
        document,
        position,
        "timeout",
        value,
        MIN_TIMEOUT,
        MAX_TIMEOUT,
        f"an integer number of seconds from {MIN_TIMEOUT} to {MAX_TIMEOUT}",
    )


def _validate_memory(document: Document, position: Position, value: Any) -> int:
    return _validate_integer(
        document,
        position,
        "memory",
        value,
        MIN_MEMORY,
        MAX_MEMORY,
        f"an integer number of MB from {MIN_MEMORY} to {MAX_MEMORY}",
    )


def _validate_concurrency(document: Document, position: Position, value: Any) -> int:
    return _validate_integer(
        document, position, "concurrency", value, 1, None, "an integer of 1 or more"
    )


def _validate_integer(
    document: Document,
    position: Position,
    key: str,
    value: Any,
    minimum: int,
    maximum: int | None,
    expected: str,
) -> int:
    valid = (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value >= minimum
        and (maximum is None or value <= maximum)
    )
    if not valid:
        raise document.error(f"invalid @aws {key} {_show(value)}: expected {expected}", position)
    # mypy cannot narrow through `valid`.
    assert isinstance(value, int)
    return value


def _validate_handler(document: Document, position: Position, value: Any) -> str:
    if not isinstance(value, str) or not _HANDLER.fullmatch(value):
        raise document.error(
            f"invalid @aws handler {_show(value)}: expected `file.method`, "
            "for example `index.handler`",
            position,
            hint="The file is named without its extension; the method is an identifier.",
        )
    return value


def _validate_region(document: Document, position: Position, value: Any) -> str:
    if not isinstance(value, str) or not _REGION.fullmatch(value):
        raise document.error(
            f"invalid @aws region {_show(value)}: expected a region name such as us-west-2",
            position,
        )
    return value


def _show(value: Any) -> str:
    if value is None:
        return "(no value)"
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


_VALIDATORS: dict[str, Callable[[Document, Position, Any], Any]] = {
    "runtime": _validate_runtime,
    "timeout": _validate_timeout,
    "memory": _validate_memory,
    "concurrency": _validate_concurrency,
    "handler": _validate_handler,
    "region": _validate_region,
}
