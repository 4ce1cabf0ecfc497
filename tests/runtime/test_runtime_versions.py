"""RuntimeResolver: which interpreter runs each runtime, found on a PATH of stand-in programs.

Each stand-in is a shell script that prints a version the way the real
interpreter does, so the tests run without the interpreters installed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from emulator.errors import EmulatorError
from emulator.runtimes import DENO_SHIM, RuntimeResolver


def fake_program(directory: Path, name: str, version_output: str, exit_status: int = 0) -> Path:
    """Write an executable `name` that prints `version_output` and exits with `exit_status`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\necho '{version_output}'\nexit {exit_status}\n")
    path.chmod(0o755)
    return path


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "emulator.runtimes" and record.levelno == logging.WARNING
    ]


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    return tmp_path / "bin"


def resolver_for(bin_dir: Path, deno_modules: Path | None = None) -> RuntimeResolver:
    bin_dir.mkdir(parents=True, exist_ok=True)
    return RuntimeResolver(str(bin_dir), deno_modules or bin_dir / "no-node-modules")


# -- Python --------------------------------------------------------------------------


def test_python_exact_version(bin_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    exact = fake_program(bin_dir, "python3.12", "Python 3.12.1")
    fake_program(bin_dir, "python3", "Python 3.11.7")

    command = resolver_for(bin_dir).command("python3.12", Path("/app/src"))

    assert command[0] == str(exact)
    assert command[1] == "-B"
    assert command[2].endswith("runtime_shim/python/bootstrap.py")
    assert warnings_of(caplog) == []


def test_python_broken_shim_skipped(bin_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A version manager's shim for a version that is not installed fails to run.
    fake_program(bin_dir, "python3.12", "pyenv: python3.12: command not found", exit_status=127)
    fallback = fake_program(bin_dir, "python3", "Python 3.11.7")
    resolver = resolver_for(bin_dir)

    first = resolver.command("python3.12", Path("/app/src"))
    second = resolver.command("python3.12", Path("/app/other"))

    assert first[0] == second[0] == str(fallback)
    warnings = warnings_of(caplog)
    assert len(warnings) == 1
    assert "python3.12 is not on PATH" in warnings[0]
    assert "Python 3.11.7" in warnings[0]


def test_python3_of_right_version(bin_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    python3 = fake_program(bin_dir, "python3", "Python 3.12.4")

    assert resolver_for(bin_dir).command("python3.12", Path("/app"))[0] == str(python3)
    assert warnings_of(caplog) == []


# -- Node.js -------------------------------------------------------------------------


def test_node_major_matches(bin_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    node = fake_program(bin_dir, "node", "v20.20.2")

    command = resolver_for(bin_dir).command("nodejs20.x", Path("/app"))

    assert command == [str(node), command[1]]
    assert command[1].endswith("runtime_shim/node/bootstrap.mjs")
    assert warnings_of(caplog) == []


def test_node_versioned_name(bin_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    fake_program(bin_dir, "node", "v22.1.0")
    node20 = fake_program(bin_dir, "node20", "v20.11.1")

    assert resolver_for(bin_dir).command("nodejs20.x", Path("/app"))[0] == str(node20)
    assert warnings_of(caplog) == []


def test_node_fallback_warns_once(bin_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    node = fake_program(bin_dir, "node", "v22.1.0")
    resolver = resolver_for(bin_dir)

    for _ in range(3):
        assert resolver.command("nodejs18.x", Path("/app"))[0] == str(node)

    warnings = warnings_of(caplog)
    assert len(warnings) == 1
    assert "Node.js 18 is not on PATH" in warnings[0]
    assert "v22.1.0" in warnings[0]


def test_node_missing(bin_dir: Path) -> None:
    with pytest.raises(EmulatorError, match=r"needs Node\.js"):
        resolver_for(bin_dir).command("nodejs20.x", Path("/app"))


# -- Ruby ----------------------------------------------------------------------------


def test_ruby_exact_version(bin_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    exact = fake_program(bin_dir, "ruby3.3", "ruby 3.3.6 (2024-11-05 revision 75015d4c1f)")
    fake_program(bin_dir, "ruby", "ruby 3.1.2p20 (2022-04-12 revision 4491bb740a)")

    command = resolver_for(bin_dir).command("ruby3.3", Path("/app"))

    assert command[0] == str(exact)
    assert command[1].endswith("runtime_shim/ruby/bootstrap.rb")
    assert warnings_of(caplog) == []


def test_ruby_default_of_right_version(bin_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    ruby = fake_program(bin_dir, "ruby", "ruby 3.3.6 (2024-11-05 revision 75015d4c1f)")

    assert resolver_for(bin_dir).command("ruby3.3", Path("/app"))[0] == str(ruby)
    assert warnings_of(caplog) == []


def test_ruby_fallback_warns_once(bin_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    ruby = fake_program(bin_dir, "ruby", "ruby 3.1.2p20 (2022-04-12 revision 4491bb740a)")
    resolver = resolver_for(bin_dir)

    assert resolver.command("ruby3.3", Path("/app"))[0] == str(ruby)
    assert resolver.command("ruby3.3", Path("/other"))[0] == str(ruby)

    warnings = warnings_of(caplog)
    assert len(warnings) == 1
    assert "ruby3.3 is not on PATH" in warnings[0]
    assert "ruby 3.1.2p20" in warnings[0]


def test_ruby_missing(bin_dir: Path) -> None:
    with pytest.raises(EmulatorError, match=r"neither ruby3\.3 nor ruby is on PATH"):
        resolver_for(bin_dir).command("ruby3.3", Path("/app"))


# -- Deno ----------------------------------------------------------------------------


def test_deno_on_path(bin_dir: Path) -> None:
    deno = fake_program(bin_dir, "deno", "deno 2.9.6")

    command = resolver_for(bin_dir).command("deno", Path("/app/src/ws/default"))

    assert command[0] == str(deno)
    assert command[1] == "run"
    assert command[-1] == str(DENO_SHIM)


def test_deno_from_npm_install(tmp_path: Path, bin_dir: Path) -> None:
    modules = tmp_path / "node_modules"
    installed = fake_program(modules / "deno", "deno", "deno 2.9.6")

    command = resolver_for(bin_dir, modules).command("deno", Path("/app"))

    assert command[0] == str(installed)


def test_deno_missing(bin_dir: Path) -> None:
    with pytest.raises(EmulatorError, match="npm ci --prefix"):
        resolver_for(bin_dir).command("deno", Path("/app"))


def test_deno_permissions(tmp_path: Path, bin_dir: Path) -> None:
    fake_program(bin_dir, "deno", "deno 2.9.6")
    shared = tmp_path / "src" / "shared"
    shared.mkdir(parents=True)
    missing_views = tmp_path / "src" / "views"

    command = resolver_for(bin_dir).command(
        "deno", Path("/app/src/ws/default"), readable=[shared, missing_views]
    )

    flags = command[2:-1]
    assert "--allow-net" in flags
    assert "--allow-env" in flags
    assert "--allow-write=/tmp" in flags
    read = [flag for flag in flags if flag.startswith("--allow-read=")]
    assert len(read) == 1
    assert read[0].removeprefix("--allow-read=").split(",") == [
        "/app/src/ws/default",
        str(DENO_SHIM.parent),
        "/tmp",
        str(shared),
    ]
    granted = {flag.split("=")[0] for flag in flags}
    assert granted.isdisjoint({"--allow-run", "--allow-all", "-A", "--allow-ffi", "--allow-sys"})


# -- provided ------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", ["provided", "provided.al2", "provided.al2023"])
def test_provided_runs_bootstrap(bin_dir: Path, runtime: str) -> None:
    assert resolver_for(bin_dir).command(runtime, Path("/app/fn")) == ["/app/fn/bootstrap"]


def test_unknown_runtime(bin_dir: Path) -> None:
    with pytest.raises(EmulatorError, match="java21 is not supported"):
        resolver_for(bin_dir).command("java21", Path("/app"))
