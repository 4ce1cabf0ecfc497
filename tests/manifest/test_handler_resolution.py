"""`resolve_handler`: the handler file and method of each runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.manifest import load_project, resolve_handler

from .projects import write_file, write_project

# Runtime, the candidate files in order of precedence.
DEFAULT_CANDIDATES = [
    ("nodejs22.x", ["index.js", "index.mjs", "index.cjs"]),
    ("python3.12", ["lambda.py", "handler.py", "index.py"]),
    ("ruby3.3", ["lambda.rb", "handler.rb", "index.rb"]),
    ("deno", ["mod.ts", "mod.js", "mod.tsx", "index.ts", "index.js", "index.tsx"]),
]


@pytest.mark.parametrize(("runtime", "candidates"), DEFAULT_CANDIDATES)
def test_default_file_precedence(tmp_path: Path, runtime: str, candidates: list[str]) -> None:
    for name in candidates:
        write_file(tmp_path / name, "")

    # Remove the winner each round: the next candidate must win.
    for name in candidates:
        stem = name.rsplit(".", 1)[0]
        assert resolve_handler(runtime, tmp_path, None) == (f"{stem}.handler", name, "handler")
        (tmp_path / name).unlink()


@pytest.mark.parametrize(
    ("runtime", "expected"),
    [
        ("nodejs22.x", "index.handler"),
        ("python3.12", "lambda.handler"),
        ("ruby3.3", "lambda.handler"),
        ("deno", "mod.handler"),
    ],
)
def test_no_file_found(tmp_path: Path, runtime: str, expected: str) -> None:
    assert resolve_handler(runtime, tmp_path, None) == (expected, None, "handler")


def test_other_files_ignored(tmp_path: Path) -> None:
    write_file(tmp_path / "index.ts", "")
    write_file(tmp_path / "main.py", "")
    (tmp_path / "index.js").mkdir()

    assert resolve_handler("nodejs22.x", tmp_path, None) == ("index.handler", None, "handler")
    assert resolve_handler("python3.12", tmp_path, None) == ("lambda.handler", None, "handler")


@pytest.mark.parametrize(
    ("runtime", "files", "setting", "expected"),
    [
        ("nodejs22.x", ["app.mjs"], "app.run", ("app.run", "app.mjs", "run")),
        ("nodejs22.x", ["app.js", "app.cjs"], "app.run", ("app.run", "app.js", "run")),
        ("nodejs22.x", ["index.js"], "app.run", ("app.run", None, "run")),
        (
            "python3.12",
            ["main.py"],
            "main.lambda_handler",
            ("main.lambda_handler", "main.py", "lambda_handler"),
        ),
        ("python3.12", ["lambda.py"], "main.go", ("main.go", None, "go")),
        (
            "ruby3.3",
            ["function.rb"],
            "function.handler",
            ("function.handler", "function.rb", "handler"),
        ),
        ("deno", ["app.tsx"], "app.serve", ("app.serve", "app.tsx", "serve")),
        ("nodejs22.x", ["lib/app.js"], "lib/app.go", ("lib/app.go", "lib/app.js", "go")),
    ],
)
def test_handler_setting(
    tmp_path: Path,
    runtime: str,
    files: list[str],
    setting: str,
    expected: tuple[str, str | None, str],
) -> None:
    for name in files:
        write_file(tmp_path / name, "")

    assert resolve_handler(runtime, tmp_path, setting) == expected


@pytest.mark.parametrize("runtime", ["provided", "provided.al2", "provided.al2023"])
def test_provided_bootstrap(tmp_path: Path, runtime: str) -> None:
    assert resolve_handler(runtime, tmp_path, None) == ("bootstrap", None, "handler")

    write_file(tmp_path / "bootstrap", "#!/bin/sh\n")

    assert resolve_handler(runtime, tmp_path, None) == ("bootstrap", "bootstrap", "handler")
    assert resolve_handler(runtime, tmp_path, "function.run") == (
        "function.run",
        "bootstrap",
        "run",
    )


def test_unknown_runtime_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        resolve_handler("java21", tmp_path, None)


def test_malformed_setting_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        resolve_handler("nodejs22.x", tmp_path, "index")


def test_resolution_has_no_side_effects(tmp_path: Path) -> None:
    resolve_handler("python3.12", tmp_path, None)
    resolve_handler("nodejs22.x", tmp_path, "app.run")

    assert list(tmp_path.iterdir()) == []


def test_load_project_fills_handler_fields(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        "@app\nchat\n@ws\nhello\nbye\n@aws\nruntime python3.12\n",
        handler_dirs=("src/ws/hello", "src/ws/bye"),
    )
    write_file(tmp_path / "src/ws/hello/handler.py", "")
    write_file(
        tmp_path / "src/ws/bye/config.arc", "@aws\nruntime nodejs20.x\nhandler bye.farewell\n"
    )
    write_file(tmp_path / "src/ws/bye/bye.cjs", "")

    app = load_project(tmp_path)
    hello = app.function("hello")
    bye = app.function("bye")

    assert (hello.handler, hello.handler_file, hello.handler_method) == (
        "handler.handler",
        "handler.py",
        "handler",
    )
    assert (bye.runtime, bye.handler, bye.handler_file, bye.handler_method) == (
        "nodejs20.x",
        "bye.farewell",
        "bye.cjs",
        "farewell",
    )
    assert hello.handler_setting is None
    assert bye.handler_setting == "bye.farewell"
    # Looking the file up again with the stored setting finds the same file.
    for function in (hello, bye):
        assert resolve_handler(function.runtime, function.src, function.handler_setting) == (
            function.handler,
            function.handler_file,
            function.handler_method,
        )
