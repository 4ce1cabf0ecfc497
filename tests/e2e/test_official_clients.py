"""The official Lambda runtime clients, unchanged, as `provided.al2023` bootstraps.

Each client in `tests/clients/` runs the `$default` function of a project,
behind a real emulator with route responses on, and a real WebSocket client
talks to it. Every function does the same. For a message it returns a body
naming the client library, the message, the connection id, the Lambda
request id and its pid. For the message "fail" it fails with the error
message "handler failed on purpose".

Clients that need a build are built once per test session into a cache
outside the repository, so that later runs (and CI on the same machine)
reuse the build:

    <cache>/go/<hash of the sources and `go version`>/bootstrap
    <cache>/cargo-target/           CARGO_TARGET_DIR; cargo decides what to rebuild
    <cache>/node/<hash of the package files and `node --version`>/node_modules

where <cache> is `$XDG_CACHE_HOME/arc-ws-emulator`, by default
`~/.cache/arc-ws-emulator`. A missing toolchain fails the tests that need
it, naming the toolchain.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import REPO_ROOT, EmulatorFactory, Project
from tests.e2e.test_exec_support import (
    START_PATTERN,
    LogCapture,
    assert_error_frame,
    capture_logs,
    receive_json,
)

CLIENTS_DIR = REPO_ROOT / "tests" / "clients"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "arc-ws-emulator"

RUNTIME = "provided.al2023"
ERROR_MESSAGE = "handler failed on purpose"

# Seconds one build step may take. The slowest is a cold build of
# tests/clients/rust: about 75 s of CPU time, which took 100 to 190 s on a
# 2-core machine while other test suites ran on it.
BUILD_TIMEOUT = 900
# The per-test limit for clients that a test may have to build first: the
# first test to use one waits for its build.
BUILD_TEST_TIMEOUT = BUILD_TIMEOUT + 120
# Lines of build output shown when a build fails.
BUILD_OUTPUT_LINES = 40

# The name each client puts in its replies.
CLIENT_NAMES = {
    "curl": "curl",
    "go": "aws-lambda-go",
    "rust": "lambda_runtime",
    "python": "awslambdaric",
    "node": "aws-lambda-ric",
}


@dataclass(frozen=True)
class ClientFunction:
    """How to write one client's `$default` handler directory.

    `files` are copied into the directory under their own names, and
    `bootstrap` is copied as the executable `bootstrap`. `setting` is the
    function's `handler` setting (which sets `_HANDLER`), if it needs one.
    `prepare` runs last, in the directory.
    """

    bootstrap: Path
    files: tuple[Path, ...] = ()
    setting: str | None = None
    prepare: Callable[[Path], None] | None = None


# Builds and checks, one session-scoped fixture per client


def _require_programs(client: str, programs: Iterable[str], hint: str) -> None:
    missing = [program for program in programs if shutil.which(program) is None]
    if missing:
        pytest.fail(
            f"the {client} client needs {', '.join(missing)}, not found on PATH: {hint}",
            pytrace=False,
        )


def _run_build(command: list[str], cwd: Path, env: dict[str, str], step: str) -> None:
    """Run one build step; fail the test with the end of its output if it fails."""
    try:
        completed = subprocess.run(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{step}: `{shlex.join(command)}` timed out after {BUILD_TIMEOUT} s")
    if completed.returncode != 0:
        output = completed.stdout.decode(errors="replace").splitlines()
        tail = "\n".join(output[-BUILD_OUTPUT_LINES:])
        pytest.fail(
            f"{step}: `{shlex.join(command)}` failed with exit status "
            f"{completed.returncode}:\n{tail}",
            pytrace=False,
        )


def _tool_version(command: list[str]) -> bytes:
    return subprocess.run(command, capture_output=True, check=True, timeout=60).stdout


def _hash_files(paths: Iterable[Path], *extra: bytes) -> str:
    """Hash file names and contents (relative to CLIENTS_DIR) and `extra` into a cache key."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(CLIENTS_DIR)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    for item in extra:
        digest.update(item + b"\0")
    return digest.hexdigest()[:32]


@pytest.fixture(scope="session")
def curl_client() -> ClientFunction:
    _require_programs("curl", ["bash", "curl"], "install them with `apt-get install curl`")
    source = CLIENTS_DIR / "curl"
    return ClientFunction(
        bootstrap=source / "bootstrap",
        files=(source / "function.sh",),
        setting="function.handler",
    )


@pytest.fixture(scope="session")
def go_client() -> ClientFunction:
    """Build tests/clients/go with `go build`, once per change of its sources or of Go."""
    _require_programs("Go", ["go"], "install the Go toolchain (https://go.dev/doc/install)")
    source = CLIENTS_DIR / "go"
    sources = [source / "go.mod", source / "go.sum", *source.glob("*.go")]
    key = _hash_files(sources, _tool_version(["go", "version"]))
    binary = CACHE_DIR / "go" / key / "bootstrap"
    if not binary.is_file():
        binary.parent.mkdir(parents=True, exist_ok=True)
        # A static binary (no cgo), so that it does not depend on the C
        # library of the machine that built it, as on provided.al2023.
        env = {**os.environ, "CGO_ENABLED": "0"}
        _run_build(["go", "mod", "download"], source, env, "fetching the Go client's modules")
        partial = binary.with_name(f"bootstrap.{os.getpid()}.partial")
        _run_build(
            ["go", "build", "-trimpath", "-buildvcs=false", "-o", str(partial), "."],
            source,
            env,
            "building the Go client",
        )
        # Atomic, so that a concurrent test run finds a whole binary or none.
        partial.replace(binary)
    return ClientFunction(bootstrap=binary)


@pytest.fixture(scope="session")
def rust_client() -> ClientFunction:
    """Build tests/clients/rust with `cargo build --release` into a fixed target directory."""
    _require_programs("Rust", ["cargo"], "install the Rust toolchain with rustup")
    source = CLIENTS_DIR / "rust"
    target = CACHE_DIR / "cargo-target"
    env = {**os.environ, "CARGO_TARGET_DIR": str(target)}
    # Cargo locks the target directory itself, so concurrent runs are safe.
    _run_build(
        ["cargo", "build", "--release", "--locked", "--manifest-path", str(source / "Cargo.toml")],
        source,
        env,
        "building the Rust client",
    )
    return ClientFunction(bootstrap=target / "release" / "bootstrap")


@pytest.fixture(scope="session")
def python_client(tmp_path_factory: pytest.TempPathFactory) -> ClientFunction:
    if importlib.util.find_spec("awslambdaric") is None:
        pytest.fail(
            f"the Python client needs awslambdaric, which {sys.executable} cannot import: "
            "install it with `pip install -e '.[test]'`",
            pytrace=False,
        )
    source = CLIENTS_DIR / "python"
    # The bootstrap calls `python3`, which on PATH may not be the
    # interpreter with awslambdaric, so it gets this interpreter's path.
    bootstrap = tmp_path_factory.mktemp("awslambdaric") / "bootstrap"
    text = (source / "bootstrap").read_text()
    bootstrap.write_text(text.replace("exec python3 ", f"exec {shlex.quote(sys.executable)} "))
    return ClientFunction(bootstrap=bootstrap, files=(source / "app.py",))


@pytest.fixture(scope="session")
def node_client() -> ClientFunction:
    """Install aws-lambda-ric with `npm ci`, once per change of its lock file or of Node.js.

    Its install scripts build curl and aws-lambda-cpp from source, then the
    addon with node-gyp, which needs a C++ toolchain, cmake and autotools.
    """
    _require_programs(
        "Node.js",
        ["node", "npm", "make", "cmake", "g++", "autoreconf", "libtoolize"],
        "install Node.js and `apt-get install g++ make cmake autoconf automake libtool`",
    )
    source = CLIENTS_DIR / "node"
    package_files = [source / "package.json", source / "package-lock.json"]
    key = _hash_files(package_files, _tool_version(["node", "--version"]))
    installed = CACHE_DIR / "node" / key
    # The addon that aws-lambda-ric's install scripts build. npm 11.19 warns
    # that those scripts are not covered by its `allowScripts` setting; if
    # npm skips them, the package installs but cannot start.
    addon = Path("node_modules", "aws-lambda-ric", "dist", "rapid-client.node")
    if not (installed / addon).is_file():
        partial = installed.with_name(f"{key}.{os.getpid()}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            for path in package_files:
                shutil.copy2(path, partial / path.name)
            _run_build(
                ["npm", "ci", "--no-audit", "--no-fund"],
                partial,
                dict(os.environ),
                "installing aws-lambda-ric",
            )
            if not (partial / addon).is_file():
                pytest.fail(
                    f"`npm ci` installed aws-lambda-ric without building {addon}: "
                    "npm did not run its install scripts",
                    pytrace=False,
                )
            # A concurrent run may have finished first, and its install is
            # as good, so a failed rename is no error.
            with contextlib.suppress(OSError):
                partial.rename(installed)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    modules = installed / "node_modules"

    def link_modules(directory: Path) -> None:
        (directory / "node_modules").symlink_to(modules, target_is_directory=True)

    return ClientFunction(
        bootstrap=source / "bootstrap", files=(source / "index.js",), prepare=link_modules
    )


# Tests


def _client_params() -> list[Any]:
    built = pytest.mark.timeout(BUILD_TEST_TIMEOUT)
    return [
        pytest.param("curl"),
        pytest.param("go", marks=built),
        pytest.param("rust", marks=built),
        pytest.param("python"),
        pytest.param("node", marks=built),
    ]


@pytest.fixture(params=_client_params())
def client(request: pytest.FixtureRequest, project: Project) -> str:
    """Write the `$default` function of the client named by the parameter; return the name."""
    name: str = request.param
    function: ClientFunction = request.getfixturevalue(f"{name}_client")
    config = {"handler": function.setting} if function.setting else None
    directory = project.handler("default", "", runtime=RUNTIME, config=config, filename="bootstrap")
    shutil.copyfile(function.bootstrap, directory / "bootstrap")
    (directory / "bootstrap").chmod(0o755)
    for path in function.files:
        shutil.copyfile(path, directory / path.name)
    if function.prepare is not None:
        function.prepare(directory)
    return name


async def _started_request_ids(logs: LogCapture, count: int) -> list[str]:
    """Wait for `count` START lines of `$default`; return their request ids."""

    def find() -> list[str] | None:
        request_ids = []
        for line in logs.function_lines("default"):
            match = START_PATTERN.fullmatch(line)
            if match is not None:
                request_ids.append(match["request_id"])
        return request_ids if len(request_ids) >= count else None

    return await logs.wait_for(find, what=f"{count} START lines")


async def test_reply_and_warm_reuse(client: str, start_emulator: EmulatorFactory) -> None:
    with capture_logs() as logs:
        emulator = await start_emulator(route_responses=True)
        async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
            await ws.send_str("hello")
            first = await receive_json(ws)
            await ws.send_str("again")
            second = await receive_json(ws)
        started = await _started_request_ids(logs, 2)

    assert first["client"] == CLIENT_NAMES[client]
    assert first["body"] == "hello"
    assert second["body"] == "again"
    assert len(first["connectionId"]) == 16
    assert second["connectionId"] == first["connectionId"]

    # The client read each request id from the Runtime API's header.
    assert uuid.UUID(first["requestId"])
    assert first["requestId"] != second["requestId"]
    assert started == [first["requestId"], second["requestId"]]

    # The second invocation ran in the same, warm process.
    assert second["pid"] == first["pid"]


async def test_handler_error_reported(client: str, start_emulator: EmulatorFactory) -> None:
    with capture_logs() as logs:
        emulator = await start_emulator(route_responses=True)
        async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
            await ws.send_str("before")
            before = await receive_json(ws)
            await ws.send_str("fail")
            frame = await receive_json(ws)
            await ws.send_str("after")
            after = await receive_json(ws)

        def find_error() -> str | None:
            errors = logs.messages("emulator", logging.ERROR)
            return next((message for message in errors if ERROR_MESSAGE in message), None)

        error_line = await logs.wait_for(find_error, what=f"an ERROR line with {ERROR_MESSAGE!r}")

    assert_error_frame(frame, before["connectionId"])
    assert "route $default" in error_line
    assert before["connectionId"] in error_line

    # A handler error does not end the runtime: the next message is served
    # by the same process.
    assert after["body"] == "after"
    assert after["pid"] == before["pid"]
