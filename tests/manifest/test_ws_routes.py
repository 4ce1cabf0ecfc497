"""`@ws` routes: built-in routes, names, handler directories and their errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from emulator.errors import ConfigError
from emulator.manifest import load_project

from .projects import make_dirs, place, write_file, write_project


def _load_error(root: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_project(root)
    return caught.value


def test_builtin_routes_backfilled(tmp_path: Path) -> None:
    write_project(tmp_path, "@app\nchat\n@ws\n")

    app = load_project(tmp_path)

    assert [(f.name, f.route_key) for f in app.functions] == [
        ("connect", "$connect"),
        ("default", "$default"),
        ("disconnect", "$disconnect"),
    ]
    assert all(f.is_builtin for f in app.functions)
    assert app.custom_routes == frozenset()


def test_routes_in_stable_order(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        "@app\nchat\n@ws\nzeta\ndisconnect\nalpha\n$connect\nmiddle\n",
        handler_dirs=("src/ws/zeta", "src/ws/alpha", "src/ws/middle"),
    )

    app = load_project(tmp_path)

    assert [f.route_key for f in app.functions] == [
        "$connect",
        "$default",
        "$disconnect",
        "zeta",
        "alpha",
        "middle",
    ]
    assert app.custom_routes == frozenset({"zeta", "alpha", "middle"})


def test_builtin_route_with_src(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        "@app\nchat\n@ws\n$connect\n  src handlers/connect\n",
        handler_dirs=("handlers/connect",),
    )

    app = load_project(tmp_path)

    assert app.function("connect").src == tmp_path.resolve() / "handlers/connect"
    assert app.function("connect").route_key == "$connect"


def test_nested_route_name(tmp_path: Path) -> None:
    write_project(tmp_path, "@app\nchat\n@ws\nrooms/join\n", handler_dirs=("src/ws/rooms/join",))

    function = load_project(tmp_path).function("rooms/join")

    assert function.src == tmp_path.resolve() / "src/ws/rooms/join"
    assert function.route_key == "rooms/join"


def test_numeric_route_name_keeps_text(tmp_path: Path) -> None:
    write_project(
        tmp_path, "@app\nchat\n@ws\n007\n1.50\n", handler_dirs=("src/ws/007", "src/ws/1.50")
    )

    app = load_project(tmp_path)

    assert [f.name for f in app.functions][3:] == ["007", "1.50"]


@pytest.mark.parametrize(
    "name", ["a", "A-Z_0.9", "send/message", "x" * 255, "default-ish", "connects", "ws.v2"]
)
def test_valid_route_names(tmp_path: Path, name: str) -> None:
    write_project(tmp_path, f"@app\nchat\n@ws\n{name}\n", handler_dirs=(f"src/ws/{name}",))

    assert load_project(tmp_path).function(name).route_key == name


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("$custom", "invalid @ws route name '$custom'"),
        ("a:b", "invalid @ws route name 'a:b'"),
        ('"has space"', "invalid @ws route name 'has space'"),
        ('""', "invalid @ws route name ''"),
        ("x" * 256, "256 characters long, more than 255"),
        ("true", "expected a route name, found a boolean"),
        ("get /path", "expected one route name per line, found 2 values"),
        ("custom\n  one\n  two", "expected `src <directory>` under route `custom`, found a list"),
        ("custom\n  src 42", "invalid src 42 of route `custom`"),
    ],
)
def test_invalid_route_entry(tmp_path: Path, entry: str, message: str) -> None:
    path = write_project(tmp_path, f"@app\nchat\n@ws\nok\n{entry}\n", handler_dirs=("src/ws/ok",))

    error = _load_error(tmp_path)

    assert message in error.message
    assert error.path == path.resolve()
    # The second entry of @ws is on line 5; `src` of the map form on line 6.
    expected_line = 6 if "src 42" in entry else 5
    assert error.line == expected_line
    assert place(error) == f"{path.resolve()}:{expected_line}:{error.column}"
    assert error.hint


def test_duplicate_dollar_route(tmp_path: Path) -> None:
    path = write_project(tmp_path, "@app\nchat\n@ws\ndefault\nhello\n$default\n")
    make_dirs(tmp_path, ("src/ws/hello",))

    error = _load_error(tmp_path)

    assert "@ws route `default` is declared twice (first on line 4)" in error.message
    assert place(error) == f"{path.resolve()}:6:1"


def test_duplicate_custom_route(tmp_path: Path) -> None:
    path = write_project(tmp_path, "@app\nchat\n@ws\nhello\nHello\nhello\n")
    make_dirs(tmp_path, ("src/ws/hello", "src/ws/Hello"))

    error = _load_error(tmp_path)

    assert "`hello` is declared twice (first on line 4)" in error.message
    assert place(error) == f"{path.resolve()}:6:1"


def test_duplicate_route_in_json(tmp_path: Path) -> None:
    path = write_project(
        tmp_path,
        json.dumps({"app": "chat", "ws": ["default", "$default"]}),
        manifest_name="arc.json",
    )

    error = _load_error(tmp_path)

    assert error.path == path.resolve()
    assert "ws[1]: @ws route `default` is declared twice" in str(error)


def test_missing_handler_directory(tmp_path: Path) -> None:
    path = write_project(tmp_path, "@app\nchat\n\n@ws\nhello\n")

    error = _load_error(tmp_path)

    assert error.message == "the handler directory src/ws/hello of route hello does not exist"
    assert place(error) == f"{path.resolve()}:5:1"
    assert error.hint is not None
    assert "mkdir -p src/ws/hello" in error.hint
    assert "src/ws/hello/index.js" in error.hint


def test_missing_builtin_directory_points_at_ws(tmp_path: Path) -> None:
    path = write_file(tmp_path / "app.arc", "@app\nchat\n@aws\nruntime python\n@ws\n")

    error = _load_error(tmp_path)

    assert "src/ws/connect of route $connect does not exist" in error.message
    assert place(error) == f"{path.resolve()}:5:1"
    assert error.hint is not None
    assert "src/ws/connect/lambda.py" in error.hint


def test_missing_src_directory(tmp_path: Path) -> None:
    path = write_project(tmp_path, "@app\nchat\n@ws\ncustom\n  src lib/custom\n")

    error = _load_error(tmp_path)

    assert "lib/custom of route custom does not exist" in error.message
    assert place(error) == f"{path.resolve()}:4:1"
    assert error.hint is not None
    assert "mkdir -p lib/custom" in error.hint


def test_handler_directory_is_a_file(tmp_path: Path) -> None:
    write_project(tmp_path, "@app\nchat\n@ws\nhello\n")
    write_file(tmp_path / "src/ws/hello", "not a directory")

    error = _load_error(tmp_path)

    assert "src/ws/hello of route hello is not a directory" in error.message


@pytest.mark.parametrize(
    "entry",
    [
        "custom\n  src ../outside",
        "custom\n  src src/../../outside",
        "../../../outside",
    ],
)
def test_handler_directory_outside_root(tmp_path: Path, entry: str) -> None:
    root = tmp_path / "project"
    make_dirs(tmp_path, ("outside",))
    path = write_project(root, f"@app\nchat\n@ws\n{entry}\n")

    error = _load_error(root)

    assert "outside the project root" in error.message
    assert str(tmp_path.resolve() / "outside") in error.message
    assert place(error) == f"{path.resolve()}:4:1"


def test_absolute_src_outside_root(tmp_path: Path) -> None:
    root = tmp_path / "project"
    make_dirs(tmp_path, ("outside",))
    write_project(root, f"@app\nchat\n@ws\ncustom\n  src {tmp_path / 'outside'}\n")

    assert "outside the project root" in _load_error(root).message


def test_symlink_outside_root(tmp_path: Path) -> None:
    root = tmp_path / "project"
    make_dirs(tmp_path, ("outside",))
    path = write_project(root, "@app\nchat\n@ws\nhello\n")
    os.symlink(tmp_path / "outside", root / "src/ws/hello")

    error = _load_error(root)

    assert "src/ws/hello of route hello resolves to" in error.message
    assert "outside the project root" in error.message
    assert place(error) == f"{path.resolve()}:4:1"


def test_symlink_inside_root(tmp_path: Path) -> None:
    write_project(tmp_path, "@app\nchat\n@ws\nhello\n", handler_dirs=("shared/hello",))
    os.symlink(tmp_path / "shared/hello", tmp_path / "src/ws/hello")

    function = load_project(tmp_path).function("hello")

    assert function.src == tmp_path.resolve() / "shared/hello"


def test_dotdot_inside_root(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        "@app\nchat\n@ws\ncustom\n  src src/ws/../lib/custom\n",
        handler_dirs=("src/lib/custom",),
    )

    assert load_project(tmp_path).function("custom").src == tmp_path.resolve() / "src/lib/custom"


def test_missing_handler_file_is_not_an_error(tmp_path: Path) -> None:
    write_project(tmp_path, "@app\nchat\n@ws\nhello\n", handler_dirs=("src/ws/hello",))

    function = load_project(tmp_path).function("hello")

    assert function.handler_file is None
    assert function.handler == "index.handler"
    assert function.handler_method == "handler"


def test_unknown_route_setting_logs_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_project(
        tmp_path,
        "@app\nchat\n@ws\ncustom\n  src lib/custom\n  memory 512\n",
        handler_dirs=("lib/custom",),
    )

    app = load_project(tmp_path)

    assert app.function("custom").src == tmp_path.resolve() / "lib/custom"
    assert app.function("custom").memory == 1152
    assert "ignoring setting 'memory' of @ws route 'custom'" in caplog.text
