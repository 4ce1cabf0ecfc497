"""Helpers that write Architect projects into a temporary directory."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

BUILTIN_HANDLER_DIRS = ("src/ws/connect", "src/ws/default", "src/ws/disconnect")


def write_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def make_dirs(root: Path, relative_dirs: Iterable[str]) -> None:
    for relative in relative_dirs:
        (root / relative).mkdir(parents=True, exist_ok=True)


def write_project(
    root: Path,
    manifest: str,
    *,
    manifest_name: str = "app.arc",
    handler_dirs: Iterable[str] = (),
) -> Path:
    """Write a manifest and the handler directories of the built-in routes and `handler_dirs`."""
    make_dirs(root, (*BUILTIN_HANDLER_DIRS, *handler_dirs))
    return write_file(root / manifest_name, manifest)


def place(error: BaseException) -> str:
    """Return the `path:line:column` prefix of a ConfigError's message."""
    return str(error).split(": ", 1)[0]
