"""`python -m emulator init`: the files it writes, and the files it leaves alone."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.errors import ConfigError
from emulator.manifest import load_project
from emulator.scaffold import app_name_for, init_project

REPO_ROOT = Path(__file__).resolve().parents[2]

# Seconds the init command gets; it only writes files.
CLI_TIMEOUT = 60.0

BUILTIN_DIRS = ("connect", "default", "disconnect")

# --runtime value: (handler file, a line of the handler's text).
RUNTIME_FILES = {
    "python3.11": ("lambda.py", "def handler(event, context):"),
    "nodejs20.x": ("index.mjs", "export async function handler(event, context) {"),
    "ruby3.3": ("lambda.rb", "def handler(event:, context:)"),
    "deno": ("mod.ts", "export function handler(event: WebSocketEvent)"),
    "provided.al2023": ("bootstrap", "#!/bin/sh"),
}


def run_init(*arguments: str | Path) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(
        [sys.executable, "-m", "emulator", "init", *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        env=environ,
        check=False,
    )


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Return each file under `root` with its bytes and modification time."""
    return {
        str(path.relative_to(root)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def write_manifest(root: Path, text: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "app.arc").write_text(text)


def test_empty_project_gets_manifest_and_node_handlers(tmp_path: Path) -> None:
    root = tmp_path / "my-chat"

    completed = run_init(root)

    assert completed.returncode == 0, completed.stderr
    created = [line for line in completed.stdout.splitlines() if line.startswith("created ")]
    assert created == [
        "created app.arc",
        "created src/ws/connect/index.mjs",
        "created src/ws/default/index.mjs",
        "created src/ws/disconnect/index.mjs",
    ]
    assert (root / "app.arc").read_text() == "@app\nmy-chat\n\n@ws\n"
    app = load_project(root)
    assert app.name == "my-chat"
    for function in app.functions:
        assert function.runtime == "nodejs22.x"
        assert function.handler_file == "index.mjs"
        assert not (function.src / "config.arc").exists()


@pytest.mark.parametrize("runtime", sorted(RUNTIME_FILES))
def test_empty_project_with_runtime(tmp_path: Path, runtime: str) -> None:
    root = tmp_path / "app"
    file_name, signature = RUNTIME_FILES[runtime]

    completed = run_init(root, "--runtime", runtime)

    assert completed.returncode == 0, completed.stderr
    assert (root / "app.arc").read_text() == f"@app\napp\n\n@ws\n\n@aws\nruntime {runtime}\n"
    app = load_project(root)
    for function in app.functions:
        handler = function.src / file_name
        assert f"created {handler.relative_to(root)}" in completed.stdout
        assert function.runtime == runtime
        assert function.handler_file == file_name
        assert signature in handler.read_text()
        assert function.route_key in handler.read_text()
        # The project's runtime is the route's, so no config file is needed.
        assert not (function.src / "config.arc").exists()


def test_provided_bootstrap_is_executable(tmp_path: Path) -> None:
    init_project(tmp_path, "provided")

    for name in BUILTIN_DIRS:
        bootstrap = tmp_path / "src" / "ws" / name / "bootstrap"
        mode = bootstrap.stat().st_mode
        assert mode & stat.S_IXUSR
        assert mode & stat.S_IXOTH


def test_message_handlers_return_route_body(tmp_path: Path) -> None:
    write_manifest(tmp_path, "@app\nbodies\n\n@ws\nsend\n")
    init_project(tmp_path, "python3.11")
    handlers = tmp_path / "src" / "ws"

    for name in ("default", "send"):
        assert '"body": json.dumps({"route": route})' in (handlers / name / "lambda.py").read_text()
    for name in ("connect", "disconnect"):
        text = (handlers / name / "lambda.py").read_text()
        assert "body" not in text
        assert 'return {"statusCode": 200}' in text


def test_provided_response_names_route(tmp_path: Path) -> None:
    write_manifest(tmp_path, "@app\nshell\n\n@ws\nrooms/join\n")
    init_project(tmp_path, "provided")
    handlers = tmp_path / "src" / "ws"

    join = (handlers / "rooms" / "join" / "bootstrap").read_text()
    expected = json.dumps({"statusCode": 200, "body": json.dumps({"route": "rooms/join"})})
    assert f"--data-binary '{expected}'" in join
    connect = (handlers / "connect" / "bootstrap").read_text()
    assert f"--data-binary '{json.dumps({'statusCode': 200})}'" in connect


def test_commonjs_under_package_json_without_type(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text(json.dumps({"name": "app", "private": True}))

    written = init_project(tmp_path)

    handlers = [path for path in written if path.name.startswith("index.")]
    assert [path.name for path in handlers] == ["index.js"] * 3
    text = handlers[0].read_text()
    assert "exports.handler = async function (event, context) {" in text
    assert "export " not in text
    assert load_project(tmp_path).function("connect").handler_file == "index.js"


def test_esm_under_package_json_with_type_module(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text(json.dumps({"name": "app", "type": "module"}))

    written = init_project(tmp_path)

    assert [path.name for path in written] == ["app.arc"] + ["index.mjs"] * 3


def test_handler_directory_package_json_wins(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text(json.dumps({"type": "module"}))
    connect = tmp_path / "src" / "ws" / "connect"
    connect.mkdir(parents=True)
    (connect / "package.json").write_text(json.dumps({"name": "connect"}))

    init_project(tmp_path)

    assert (connect / "index.js").is_file()
    assert (tmp_path / "src" / "ws" / "default" / "index.mjs").is_file()


def test_partial_project_keeps_existing_files(tmp_path: Path) -> None:
    write_manifest(tmp_path, "@app\npartial\n\n@ws\nsend\nrooms/join\n\n@aws\nruntime python3.11\n")
    connect = tmp_path / "src" / "ws" / "connect"
    connect.mkdir(parents=True)
    (connect / "handler.py").write_text("def handler(event, context):\n    return 1\n")
    empty = tmp_path / "src" / "ws" / "send"
    empty.mkdir(parents=True)
    before = snapshot(tmp_path)

    completed = run_init(tmp_path)

    assert completed.returncode == 0, completed.stderr
    created = [line for line in completed.stdout.splitlines() if line.startswith("created ")]
    assert created == [
        "created src/ws/default/lambda.py",
        "created src/ws/disconnect/lambda.py",
        "created src/ws/send/lambda.py",
        "created src/ws/rooms/join/lambda.py",
    ]
    after = snapshot(tmp_path)
    for name, content in before.items():
        assert after[name] == content, f"{name} changed"
    app = load_project(tmp_path)
    assert app.function("connect").handler_file == "handler.py"
    assert app.function("rooms/join").handler_file == "lambda.py"


def test_second_run_writes_nothing(tmp_path: Path) -> None:
    write_manifest(tmp_path, "@app\ntwice\n\n@ws\nsend\n")
    assert run_init(tmp_path, "--runtime", "python3.11").returncode == 0
    before = snapshot(tmp_path)

    completed = run_init(tmp_path, "--runtime", "nodejs20.x")

    assert completed.returncode == 0, completed.stderr
    assert "created" not in completed.stdout
    assert "nothing to create" in completed.stdout
    assert snapshot(tmp_path) == before


def test_other_runtime_gets_config_arc(tmp_path: Path) -> None:
    write_manifest(tmp_path, "@app\nmixed\n\n@ws\nsend\n\n@aws\nruntime nodejs20.x\n")
    for name in BUILTIN_DIRS:
        directory = tmp_path / "src" / "ws" / name
        directory.mkdir(parents=True)
        (directory / "index.js").write_text("exports.handler = async () => ({statusCode: 200})\n")

    written = init_project(tmp_path, "python3.11")

    send = tmp_path / "src" / "ws" / "send"
    assert written == [send / "lambda.py", send / "config.arc"]
    assert "@aws\nruntime python3.11\n" in (send / "config.arc").read_text()
    app = load_project(tmp_path)
    assert app.function("send").runtime == "python3.11"
    assert app.function("send").handler_file == "lambda.py"
    assert app.function("connect").runtime == "nodejs20.x"


def test_route_config_runtime_wins(tmp_path: Path) -> None:
    write_manifest(tmp_path, "@app\nown\n\n@ws\nsend\n")
    send = tmp_path / "src" / "ws" / "send"
    send.mkdir(parents=True)
    (send / "config.arc").write_text("@aws\nruntime python3.11\n")
    config_before = (send / "config.arc").read_bytes()

    init_project(tmp_path, "provided")

    assert (send / "lambda.py").is_file()
    assert not (send / "bootstrap").exists()
    assert (send / "config.arc").read_bytes() == config_before
    assert (tmp_path / "src" / "ws" / "connect" / "bootstrap").is_file()


def test_config_without_runtime_is_kept(tmp_path: Path) -> None:
    write_manifest(tmp_path, "@app\nkeep\n\n@ws\n")
    connect = tmp_path / "src" / "ws" / "connect"
    connect.mkdir(parents=True)
    (connect / "config.arc").write_text("@aws\ntimeout 9\n")

    completed = run_init(tmp_path, "--runtime", "python3.11")

    assert completed.returncode == 0, completed.stderr
    assert "created src/ws/connect/config.arc" not in completed.stdout
    assert (connect / "config.arc").read_text() == "@aws\ntimeout 9\n"
    # The route keeps the project's runtime, so its handler is for that runtime.
    assert (connect / "index.mjs").is_file()
    assert not (connect / "lambda.py").exists()
    assert (tmp_path / "src" / "ws" / "default" / "lambda.py").is_file()
    function = load_project(tmp_path).function("connect")
    assert function.runtime == "nodejs22.x"
    assert function.handler_file == "index.mjs"
    assert "add `runtime python3.11` to its @aws" in completed.stderr


def test_handler_setting_names_file_and_method(tmp_path: Path) -> None:
    write_manifest(tmp_path, "@app\nnamed\n\n@ws\n\n@aws\nruntime python3.11\n")
    default = tmp_path / "src" / "ws" / "default"
    default.mkdir(parents=True)
    (default / "config.arc").write_text("@aws\nhandler app/main.respond\n")

    init_project(tmp_path)

    handler = default / "app" / "main.py"
    assert "def respond(event, context):" in handler.read_text()
    function = load_project(tmp_path).function("default")
    assert function.handler_file == "app/main.py"
    assert function.handler_method == "respond"


def test_shared_directory_gets_one_handler(tmp_path: Path) -> None:
    write_manifest(
        tmp_path,
        "@app\nshared\n\n@ws\none\n  src src/ws/both\ntwo\n  src src/ws/both\n\n"
        "@aws\nruntime python3.11\n",
    )

    written = init_project(tmp_path)

    both = tmp_path / "src" / "ws" / "both"
    assert written.count(both / "lambda.py") == 1
    assert load_project(tmp_path).function("two").handler_file == "lambda.py"


def test_directory_outside_project_is_rejected(tmp_path: Path) -> None:
    root = tmp_path / "app"
    write_manifest(root, "@app\nescape\n\n@ws\nout\n  src ../elsewhere\n")

    with pytest.raises(ConfigError, match="outside the project root"):
        init_project(root)

    assert not (tmp_path / "elsewhere").exists()


def test_manifest_without_ws_is_rejected(tmp_path: Path) -> None:
    write_manifest(tmp_path, "@app\nhttp-only\n\n@http\nget /\n")

    completed = run_init(tmp_path)

    assert completed.returncode == 2
    assert "no @ws pragma" in completed.stderr
    assert not (tmp_path / "src").exists()


def test_invalid_runtime_is_rejected(tmp_path: Path) -> None:
    completed = run_init(tmp_path, "--runtime", "cobol")

    assert completed.returncode == 2
    assert "invalid runtime 'cobol'" in completed.stderr
    assert list(tmp_path.iterdir()) == []


def test_existing_file_is_never_replaced(tmp_path: Path) -> None:
    # A directory where the handler file would go: init must fail, not replace it.
    write_manifest(tmp_path, "@app\nblocked\n\n@ws\n\n@aws\nruntime python3.11\n")
    blocked = tmp_path / "src" / "ws" / "connect" / "lambda.py"
    blocked.mkdir(parents=True)

    with pytest.raises(ConfigError, match="does not overwrite"):
        init_project(tmp_path)

    assert blocked.is_dir()


def test_missing_directory_error_suggests_init(tmp_path: Path) -> None:
    write_manifest(tmp_path, "@app\nmissing\n\n@ws\n")

    with pytest.raises(ConfigError) as raised:
        load_project(tmp_path)

    assert raised.value.hint is not None
    assert "python3 -m emulator init" in raised.value.hint


@pytest.mark.parametrize(
    ("directory", "expected"),
    [("my-app", "my-app"), ("My App!", "My-App"), ("...", "app"), ("chat_v2.1", "chat_v2.1")],
)
def test_app_name_from_directory(tmp_path: Path, directory: str, expected: str) -> None:
    assert app_name_for(tmp_path / directory) == expected
