"""The command line: `routes` and `--help` as real processes, and option building."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.cli import build_options, build_parser, main
from emulator.config import Options
from emulator.errors import ConfigError

from .projects import write_file, write_project

REPO_ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_SECONDS = 60


def _run(*arguments: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO_ROOT), environment.get("PYTHONPATH")])
    )
    return subprocess.run(
        [sys.executable, "-m", "emulator", *arguments],
        cwd=cwd or REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )


def _start_args(*arguments: str) -> Options:
    args = build_parser().parse_args(["start", *arguments])
    return build_options(args, {})


def test_routes_prints_table(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        "@app\nchat-app\n@ws\nsend-message\nrooms/join\n  src lib/join\n@aws\nruntime python\n"
        "@http\nget /\n@tables\ndata\n  id *String\n",
        handler_dirs=("src/ws/send-message", "lib/join"),
    )
    write_file(tmp_path / "src/ws/send-message/config.arc", "@aws\ntimeout 30\nmemory 256\n")
    for directory in ("connect", "default", "disconnect", "send-message"):
        write_file(tmp_path / f"src/ws/{directory}/lambda.py", "")
    write_file(tmp_path / "lib/join/lambda.py", "")

    result = _run("routes", str(tmp_path))
    lines = result.stdout.splitlines()

    assert result.returncode == 0, result.stderr
    assert lines[0] == "App: chat-app (app.arc)"
    assert lines[1].split() == ["ROUTE", "HANDLER", "RUNTIME", "TIMEOUT", "MEMORY"]
    rows = [line.split() for line in lines[2:7]]
    assert rows == [
        ["$connect", "src/ws/connect", "python3.14", "5", "s", "1152", "MB"],
        ["$default", "src/ws/default", "python3.14", "5", "s", "1152", "MB"],
        ["$disconnect", "src/ws/disconnect", "python3.14", "5", "s", "1152", "MB"],
        ["send-message", "src/ws/send-message", "python3.14", "30", "s", "256", "MB"],
        ["rooms/join", "lib/join", "python3.14", "5", "s", "1152", "MB"],
    ]
    assert lines[7] == "Not emulated: @http, @tables"
    # Columns are aligned: every row has its runtime at the header's column.
    runtime_column = lines[1].index("RUNTIME")
    for line in lines[2:7]:
        assert line[runtime_column:].startswith("python3.14")
    assert result.stderr == ""


def test_routes_default_directory(tmp_path: Path) -> None:
    write_project(tmp_path, "@app\nhere\n@ws\n")

    result = _run("routes", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "App: here (app.arc)"


def test_routes_warns_missing_handler_file(tmp_path: Path) -> None:
    write_project(tmp_path, "@app\nchat\n@ws\n")
    for directory in ("connect", "disconnect"):
        write_file(tmp_path / f"src/ws/{directory}/index.js", "")

    result = _run("routes", str(tmp_path))

    assert result.returncode == 0
    assert "WARNING" in result.stderr
    assert "route $default: no handler file for index.handler" in result.stderr
    assert "$connect" not in result.stderr


def test_routes_bad_manifest_exits_2(tmp_path: Path) -> None:
    path = write_project(tmp_path, "@app\nchat\n@ws\nhello world{\n")

    result = _run("routes", str(tmp_path))

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {path.resolve()}:4:12: ")
    assert "Traceback" not in result.stderr


def test_routes_invalid_setting_exits_2(tmp_path: Path) -> None:
    path = write_project(tmp_path, "@app\nchat\n@ws\n@aws\ntimeout 901\n")

    result = _run("routes", str(tmp_path))

    assert result.returncode == 2
    assert f"{path.resolve()}:5:1: invalid @aws timeout 901" in result.stderr
    assert "1 to 900" in result.stderr
    assert "Traceback" not in result.stderr


def test_routes_missing_manifest_exits_2(tmp_path: Path) -> None:
    result = _run("routes", str(tmp_path))

    assert result.returncode == 2
    assert result.stderr.startswith("error: no Architect manifest found in ")
    assert "Traceback" not in result.stderr


def test_start_bad_manifest_exits_2(tmp_path: Path) -> None:
    path = write_project(tmp_path, "@app\nchat\n@ws\n@aws\nmemory 1\n")

    # Without a command, `start` runs and fails on the manifest before serving.
    result = _run(str(tmp_path), "--port", "0")

    assert result.returncode == 2
    assert f"error: {path.resolve()}:5:1: invalid @aws memory 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_documents_options() -> None:
    result = _run("--help")
    # Join the lines that argparse wrapped.
    help_text = " ".join(result.stdout.split())

    assert result.returncode == 0
    for text in (
        "start",
        "routes",
        "PROJECT_DIR",
        "--host",
        "(default: 127.0.0.1)",
        "--port",
        "$ARC_HTTP_PORT, else $PORT, else 3333",
        "--internal-port",
        "$ARC_INTERNAL_PORT, else 2222",
        "--stage",
        "(default: testing)",
        "--route-responses",
        "--max-message-bytes",
        "(default: 131072)",
        "--max-frame-bytes",
        "(default: 32768)",
        "--idle-timeout",
        "(default: 600)",
        "--max-connection-duration",
        "(default: 7200)",
        "--integration-timeout",
        "(default: 29)",
        "--shutdown-timeout",
        "(default: 5)",
        "--no-prewarm",
        "--concurrency",
        "(default: 10)",
        "--queue-size",
        "(default: 1000)",
        "--idle-environment-timeout",
        "(default: 300)",
        "--pass-env",
        "--no-watch",
        "--allow-remote-management",
        "--verbose",
        "--log-level",
    ):
        assert text in help_text, text


def test_start_help_names_units() -> None:
    result = _run("start", "--help")
    text = " ".join(result.stdout.split())

    assert result.returncode == 0
    assert "--max-message-bytes BYTES" in text
    assert "--idle-timeout SECONDS" in text
    assert "in bytes" in text
    assert "seconds" in text


def test_routes_help() -> None:
    result = _run("routes", "--help")

    assert result.returncode == 0
    assert "PROJECT_DIR" in result.stdout
    assert "--port" not in result.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--port", "-1"], "invalid port '-1'"),
        (["--port", "65536"], "invalid port '65536'"),
        (["--port", "http"], "invalid port 'http'"),
        (["--internal-port", "-2"], "invalid port '-2'"),
        (["--max-message-bytes", "0"], "expected an integer of 1 or more"),
        (["--queue-size", "-1"], "expected an integer of 0 or more"),
        (["--idle-timeout", "0"], "expected a number of seconds greater than 0"),
        (["--idle-timeout", "nan"], "expected a number of seconds greater than 0"),
        (["--shutdown-timeout", "-1"], "expected a number of seconds, 0 or more"),
        (["--integration-timeout", "inf"], "expected a number of seconds greater than 0"),
        (["--stage", "a/b"], "invalid stage name 'a/b'"),
        (["--pass-env", "A-B"], "invalid environment variable name 'A-B'"),
        (["--log-level", "LOUD"], "invalid choice"),
    ],
)
def test_invalid_option_is_usage_error(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["start", *arguments])

    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_default_command_is_start(capsys: pytest.CaptureFixture[str]) -> None:
    # A usage error names the `start` parser, so the default command was chosen.
    with pytest.raises(SystemExit):
        main(["some-dir", "--port", "-1"])

    assert capsys.readouterr().err.startswith("usage: python3 -m emulator start ")


def test_build_options_defaults() -> None:
    assert _start_args() == Options()


def test_build_options_all_flags() -> None:
    options = _start_args(
        "--host",
        "0.0.0.0",
        "--port",
        "0",
        "--internal-port",
        "4444",
        "--stage",
        "dev",
        "--route-responses",
        "--max-message-bytes",
        "1000",
        "--max-frame-bytes",
        "100",
        "--idle-timeout",
        "1.5",
        "--max-connection-duration",
        "60",
        "--integration-timeout",
        "2",
        "--shutdown-timeout",
        "0",
        "--no-prewarm",
        "--concurrency",
        "3",
        "--queue-size",
        "0",
        "--idle-environment-timeout",
        "30",
        "--pass-env",
        "HOME",
        "--pass-env",
        "AWS_PROFILE",
        "--pass-env",
        "HOME",
        "--no-watch",
        "--allow-remote-management",
    )

    assert options == Options(
        host="0.0.0.0",
        port=0,
        internal_port=4444,
        stage="dev",
        route_responses=True,
        max_message_bytes=1000,
        max_frame_bytes=100,
        idle_timeout=1.5,
        max_connection_duration=60.0,
        integration_timeout=2.0,
        shutdown_timeout=0.0,
        prewarm=False,
        default_concurrency=3,
        queue_size=0,
        idle_environment_timeout=30.0,
        pass_env=("HOME", "AWS_PROFILE"),
        watch=False,
        allow_remote_management=True,
    )


@pytest.mark.parametrize(
    ("environ", "arguments", "port", "internal_port"),
    [
        ({}, [], 3333, 2222),
        ({"PORT": "4000"}, [], 4000, 2222),
        ({"ARC_HTTP_PORT": "5000", "PORT": "4000"}, [], 5000, 2222),
        ({"ARC_HTTP_PORT": "", "PORT": "4000"}, [], 4000, 2222),
        ({"ARC_HTTP_PORT": "5000"}, ["--port", "6000"], 6000, 2222),
        ({"ARC_HTTP_PORT": "0"}, [], 0, 2222),
        ({"ARC_INTERNAL_PORT": "2999"}, [], 3333, 2999),
        ({"ARC_INTERNAL_PORT": "2999"}, ["--internal-port", "0"], 3333, 0),
    ],
)
def test_ports_from_environment(
    environ: dict[str, str], arguments: list[str], port: int, internal_port: int
) -> None:
    args = build_parser().parse_args(["start", *arguments])

    options = build_options(args, environ)

    assert options.port == port
    assert options.internal_port == internal_port


@pytest.mark.parametrize(
    ("environ", "name"),
    [
        ({"ARC_HTTP_PORT": "abc"}, "ARC_HTTP_PORT"),
        ({"PORT": "-1"}, "PORT"),
        ({"ARC_INTERNAL_PORT": "70000"}, "ARC_INTERNAL_PORT"),
    ],
)
def test_invalid_port_in_environment(environ: dict[str, str], name: str) -> None:
    args = build_parser().parse_args(["start"])

    with pytest.raises(ConfigError) as caught:
        build_options(args, environ)

    assert f"invalid {name} value '{environ[name]}'" in str(caught.value)


def test_invalid_port_in_environment_exits_2(tmp_path: Path) -> None:
    write_project(tmp_path, "@app\nchat\n@ws\n")
    environment = dict(os.environ, PORT="not-a-port")
    environment["PYTHONPATH"] = str(REPO_ROOT)
    environment.pop("ARC_HTTP_PORT", None)

    result = subprocess.run(
        [sys.executable, "-m", "emulator", "start", str(tmp_path)],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )

    assert result.returncode == 2
    assert result.stderr.startswith("error: invalid PORT value 'not-a-port'")
    assert "Traceback" not in result.stderr
