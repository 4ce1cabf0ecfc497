"""The programs that run each Lambda runtime on this machine.

A versioned runtime runs with the matching interpreter from PATH when
there is one: `python3.12` with `python3.12`, `nodejs20.x` with a `node`
whose major version is 20 (else a `node20`), `ruby3.3` with `ruby3.3` or a
`ruby` of version 3.3. Otherwise it runs with the default interpreter
(`python3`, `node`, `ruby`), and a warning naming what was missing is
logged once, at startup. A candidate counts only if `--version` runs and
reports the version, so a version manager's shim for a version that is not
installed is passed over.

`deno` runs with `deno` from PATH, else with the executable that
`npm ci --prefix runtime_shim/deno` installs.
"""

from __future__ import annotations

import functools
import logging
import platform
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import runtime_shim
from emulator.errors import EmulatorError
from emulator.manifest.runtimes import runtime_family

logger = logging.getLogger(__name__)

SHIM_DIR = Path(runtime_shim.__file__).resolve().parent
DENO_SHIM = SHIM_DIR / "deno" / "bootstrap.ts"

# The folder where `npm ci --prefix runtime_shim/deno` installs Deno. The npm
# package `deno` ships the executable in one optional dependency per platform.
DENO_NPM_MODULES = SHIM_DIR / "deno" / "node_modules"
_DENO_NPM_PLATFORMS = {
    ("Linux", "x86_64"): "linux-x64-glibc",
    ("Linux", "aarch64"): "linux-arm64-glibc",
    ("Darwin", "x86_64"): "darwin-x64",
    ("Darwin", "arm64"): "darwin-arm64",
}

# The only directory a Lambda function may write to.
LAMBDA_WRITABLE_DIR = "/tmp"


@functools.cache
def _version_of(executable: str) -> str:
    """Return the output of `executable --version`, or "" when it fails to run."""
    try:
        completed = subprocess.run(
            [executable, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    if completed.returncode != 0:
        return ""
    return (completed.stdout or completed.stderr).strip()


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else "version unknown"


def deno_npm_executable(modules: Path = DENO_NPM_MODULES) -> Path | None:
    """Return the Deno executable installed by npm under `modules`, if there is one."""
    name = _DENO_NPM_PLATFORMS.get((platform.system(), platform.machine()))
    candidates = [modules / "deno" / "deno"]
    if name is not None:
        candidates.insert(0, modules / "@deno" / name / "deno")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


class RuntimeResolver:
    """Finds interpreters for runtimes, warning once for each fallback."""

    def __init__(self, path: str | None = None, deno_modules: Path = DENO_NPM_MODULES) -> None:
        self._path = path
        self._deno_modules = deno_modules
        self._warned: set[str] = set()

    def _which(self, name: str) -> str | None:
        return shutil.which(name, path=self._path)

    def _warn_once(self, runtime: str, message: str, *args: object) -> None:
        if runtime not in self._warned:
            self._warned.add(runtime)
            logger.warning(message, *args)

    def command(self, runtime: str, src: Path, *, readable: Iterable[Path] = ()) -> list[str]:
        """Return the command that starts an environment of `runtime` for handler dir `src`.

        `readable` lists directories outside `src` that the function's code
        may import from (the project's shared code). Only Deno, which
        checks file reads, uses it. Raises EmulatorError when the runtime's
        interpreter is not installed.
        """
        try:
            family = runtime_family(runtime)
        except ValueError as error:
            raise EmulatorError(f"runtime {runtime} is not supported by this emulator") from error
        if family == "python":
            # -B: Lambda's code directory is read-only, so no __pycache__ is
            # written there, and the emulator writes none into the user's.
            return [self._python(runtime), "-B", str(SHIM_DIR / "python" / "bootstrap.py")]
        if family == "nodejs":
            return [self._node(runtime), str(SHIM_DIR / "node" / "bootstrap.mjs")]
        if family == "ruby":
            return [self._ruby(runtime), str(SHIM_DIR / "ruby" / "bootstrap.rb")]
        if family == "deno":
            return self._deno_command(src, readable)
        return [str(src / "bootstrap")]

    # -- Python ----------------------------------------------------------

    def _python(self, runtime: str) -> str:
        version = runtime.removeprefix("python")
        exact = self._which(f"python{version}")
        if exact and _version_of(exact).startswith(f"Python {version}."):
            return exact
        fallback = self._which("python3")
        if fallback is None:
            raise EmulatorError(
                f"runtime {runtime} needs a Python interpreter, but neither python{version} "
                "nor python3 is on PATH"
            )
        if not _version_of(fallback).startswith(f"Python {version}."):
            self._warn_once(
                runtime,
                "runtime %s: python%s is not on PATH; using %s (%s)",
                runtime,
                version,
                fallback,
                _first_line(_version_of(fallback)),
            )
        return fallback

    # -- Node.js ---------------------------------------------------------

    def _node(self, runtime: str) -> str:
        node = self._which("node")
        requested = re.match(r"nodejs(\d+)", runtime)
        if requested is None:
            if node is None:
                raise EmulatorError(
                    f"runtime {runtime} needs Node.js, but `node` is not on PATH: install Node.js"
                )
            return node
        major = requested.group(1)
        if node is not None and _node_major(node) == major:
            return node
        versioned = self._which(f"node{major}")
        if versioned is not None and _node_major(versioned) == major:
            return versioned
        if node is None:
            raise EmulatorError(
                f"runtime {runtime} needs Node.js, but neither node{major} nor node is on PATH: "
                "install Node.js"
            )
        self._warn_once(
            runtime,
            "runtime %s: Node.js %s is not on PATH (no node%s, and node is %s); using %s",
            runtime,
            major,
            major,
            _first_line(_version_of(node)),
            node,
        )
        return node

    # -- Ruby ------------------------------------------------------------

    def _ruby(self, runtime: str) -> str:
        version = runtime.removeprefix("ruby")
        exact = self._which(f"ruby{version}")
        if exact and _ruby_version(exact) == version:
            return exact
        fallback = self._which("ruby")
        if fallback is None:
            raise EmulatorError(
                f"runtime {runtime} needs Ruby, but neither ruby{version} nor ruby is on PATH: "
                "install Ruby (on Debian and Ubuntu: apt-get install ruby)"
            )
        if _ruby_version(fallback) != version:
            self._warn_once(
                runtime,
                "runtime %s: ruby%s is not on PATH; using %s (%s)",
                runtime,
                version,
                fallback,
                _first_line(_version_of(fallback)),
            )
        return fallback

    # -- Deno ------------------------------------------------------------

    def _deno(self) -> str:
        found = self._which("deno")
        if found is not None:
            return found
        installed = deno_npm_executable(self._deno_modules)
        if installed is not None:
            return str(installed)
        raise EmulatorError(
            "runtime deno needs Deno, but `deno` is not on PATH and "
            f"{self._deno_modules} has no Deno executable: install Deno, or run "
            f"`npm ci --prefix {self._deno_modules.parent}`"
        )

    def _deno_command(self, src: Path, readable: Iterable[Path]) -> list[str]:
        # Read access: the handler's code, this shim, the shared code the
        # handler may import, and /tmp, where a function keeps its files.
        # Deno checks reads for every module of a dynamic import's graph.
        read_paths = [str(src), str(DENO_SHIM.parent), LAMBDA_WRITABLE_DIR]
        read_paths += [str(path) for path in readable if path.is_dir()]
        return [
            self._deno(),
            "run",
            # A permission the flags do not grant fails the call instead of
            # asking on a terminal the function does not have.
            "--no-prompt",
            # Lambda never writes into the function's code, so Deno writes
            # no deno.lock into the user's project either.
            "--no-lock",
            # Network: the shim reaches the Runtime API, handlers reach the
            # management API and AWS services, as on Lambda.
            "--allow-net",
            # Environment: Lambda passes a function its settings as variables.
            "--allow-env",
            "--allow-read=" + ",".join(dict.fromkeys(read_paths)),
            # Writes: /tmp is the only writable directory on Lambda.
            f"--allow-write={LAMBDA_WRITABLE_DIR}",
            str(DENO_SHIM),
        ]


def _node_major(executable: str) -> str | None:
    found = re.match(r"v(\d+)\.", _version_of(executable))
    return found.group(1) if found else None


def _ruby_version(executable: str) -> str | None:
    """Return the `major.minor` version of a Ruby interpreter, or None if it does not run."""
    found = re.match(r"ruby (\d+\.\d+)\.", _version_of(executable))
    return found.group(1) if found else None
