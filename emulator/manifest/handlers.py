"""Lookup of the handler file and method that Lambda calls in a handler directory."""

from __future__ import annotations

from pathlib import Path

from emulator.manifest.runtimes import RuntimeFamily, runtime_family

DEFAULT_METHOD = "handler"

# The handler files that each runtime looks for, in order of precedence,
# when the function has no `handler` setting.
DEFAULT_HANDLER_FILES: dict[RuntimeFamily, tuple[str, ...]] = {
    "nodejs": ("index.js", "index.mjs", "index.cjs"),
    "python": ("lambda.py", "handler.py", "index.py"),
    "ruby": ("lambda.rb", "handler.rb", "index.rb"),
    "deno": ("mod.ts", "mod.js", "mod.tsx", "index.ts", "index.js", "index.tsx"),
    "provided": ("bootstrap",),
}

# The extensions tried, in order, for the file named by a `handler` setting.
HANDLER_EXTENSIONS: dict[RuntimeFamily, tuple[str, ...]] = {
    "nodejs": (".js", ".mjs", ".cjs"),
    "python": (".py",),
    "ruby": (".rb",),
    "deno": (".ts", ".js", ".tsx"),
    "provided": ("",),
}

# `_HANDLER` of a `provided*` function without a `handler` setting. The
# runtime reads `_HANDLER` itself, and `bootstrap` is what AWS's examples for
# custom runtimes configure.
PROVIDED_DEFAULT_HANDLER = "bootstrap"


def resolve_handler(
    runtime: str, src: Path, handler_setting: str | None
) -> tuple[str, str | None, str]:
    """Find the handler of a function in its directory.

    Returns the `_HANDLER` value (`index.handler`, `lambda.handler`,
    `mod.handler`, or the `handler` setting as given), the name of the
    handler file relative to `src` (None when no candidate file exists),
    and the method name. A `provided*` function's file is always
    `bootstrap`; whether it is executable is left to the caller.

    The function only checks whether files exist, so it is cheap enough to
    call each time an execution environment starts. Raises ValueError for
    an unknown runtime or a `handler_setting` without a `.`.
    """
    family = runtime_family(runtime)

    if handler_setting is not None:
        base, dot, method = handler_setting.rpartition(".")
        if not dot or not base or not method:
            raise ValueError(f"handler setting {handler_setting!r} is not of the form file.method")
        if family == "provided":
            candidates = DEFAULT_HANDLER_FILES["provided"]
        else:
            candidates = tuple(base + extension for extension in HANDLER_EXTENSIONS[family])
        return handler_setting, _first_file(src, candidates), method

    candidates = DEFAULT_HANDLER_FILES[family]
    found = _first_file(src, candidates)
    if family == "provided":
        return PROVIDED_DEFAULT_HANDLER, found, DEFAULT_METHOD

    stem = _strip_extension(found if found is not None else candidates[0])
    return f"{stem}.{DEFAULT_METHOD}", found, DEFAULT_METHOD


def _first_file(src: Path, candidates: tuple[str, ...]) -> str | None:
    for name in candidates:
        if (src / name).is_file():
            return name
    return None


def _strip_extension(name: str) -> str:
    stem, dot, _ = name.rpartition(".")
    return stem if dot else name
