"""Which program runs each Lambda runtime on this machine.

`python3.12` runs with a `python3.12` from PATH when there is one, else
with `python3`; `nodejs20.x` runs with `node` from PATH and is checked for
its major version. A fallback is logged once, at startup.
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import subprocess
from pathlib import Path

import runtime_shim
from emulator.errors import EmulatorError

logger = logging.getLogger(__name__)

SHIM_DIR = Path(runtime_shim.__file__).resolve().parent


@functools.cache
def _version_of(executable: str) -> str:
    try:
        completed = subprocess.run(
            [executable, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (completed.stdout or completed.stderr).strip()


class RuntimeResolver:
    """Finds interpreters for runtimes, warning once for each fallback."""

    def __init__(self, path: str | None = None) -> None:
        self._path = path
        self._warned: set[str] = set()

    def _which(self, name: str) -> str | None:
        return shutil.which(name, path=self._path)

    def _warn_once(self, runtime: str, message: str, *args: object) -> None:
        if runtime not in self._warned:
            self._warned.add(runtime)
            logger.warning(message, *args)

    def command(self, runtime: str, src: Path) -> list[str]:
        """Return the command that starts an environment of `runtime` for handler dir `src`."""
        if runtime.startswith("python3"):
            # -B: Lambda's code directory is read-only, so no __pycache__ is
            # written there, and the emulator writes none into the user's.
            return [self._python(runtime), "-B", str(SHIM_DIR / "python" / "bootstrap.py")]
        if runtime.startswith("nodejs"):
            return [self._node(runtime), str(SHIM_DIR / "node" / "bootstrap.mjs")]
        if runtime.startswith("provided"):
            return [str(src / "bootstrap")]
        raise EmulatorError(f"runtime {runtime} is not supported by this emulator yet")

    def _python(self, runtime: str) -> str:
        version = runtime.removeprefix("python")
        exact = self._which(f"python{version}")
        if exact:
            return exact
        fallback = self._which("python3")
        if fallback is None:
            raise EmulatorError(
                f"runtime {runtime} needs a Python interpreter, but neither python{version} "
                "nor python3 is on PATH"
            )
        self._warn_once(
            runtime,
            "runtime %s: python%s is not on PATH; using %s (%s)",
            runtime,
            version,
            fallback,
            _version_of(fallback),
        )
        return fallback

    def _node(self, runtime: str) -> str:
        node = self._which("node")
        if node is None:
            raise EmulatorError(f"runtime {runtime} needs Node.js, but `node` is not on PATH")
        wanted = re.match(r"nodejs(\d+)", runtime)
        found = re.match(r"v(\d+)", _version_of(node))
        if wanted and found and wanted.group(1) != found.group(1):
            self._warn_once(
                runtime,
                "runtime %s: Node.js %s is not on PATH; using %s (%s)",
                runtime,
                wanted.group(1),
                node,
                _version_of(node),
            )
        return node
