"""Manifest lookup and the `.arc`, JSON, YAML and package.json forms."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from emulator.config import AppConfig
from emulator.errors import ConfigError
from emulator.manifest import load_project
from emulator.manifest.documents import find_manifest

from .projects import make_dirs, write_file, write_project

HANDLER_DIRS = ("src/ws/hello", "src/handlers/custom", "src/ws/rooms/join")

ARC_MANIFEST = """\
@app
chat-app

@ws
$default
hello
custom
  src src/handlers/custom
rooms/join

@aws
runtime python
timeout 30
memory 512
region eu-west-1
concurrency 3
layers
  arn:aws:lambda:eu-west-1:123456789012:layer:a:1
  arn:aws:lambda:eu-west-1:123456789012:layer:b:2

@http
get /
"""

MANIFEST_DATA = {
    "app": "chat-app",
    "ws": ["$default", "hello", {"custom": {"src": "src/handlers/custom"}}, "rooms/join"],
    "aws": {
        "runtime": "python",
        "timeout": 30,
        "memory": 512,
        "region": "eu-west-1",
        "concurrency": 3,
        "layers": [
            "arn:aws:lambda:eu-west-1:123456789012:layer:a:1",
            "arn:aws:lambda:eu-west-1:123456789012:layer:b:2",
        ],
    },
    "http": [{"get": "/"}],
}

YAML_MANIFEST = """\
app: chat-app
ws:
  - $default
  - hello
  - custom:
      src: src/handlers/custom
  - rooms/join
aws:
  runtime: python
  timeout: 30
  memory: 512
  region: eu-west-1
  concurrency: 3
  layers:
    - arn:aws:lambda:eu-west-1:123456789012:layer:a:1
    - arn:aws:lambda:eu-west-1:123456789012:layer:b:2
http:
  - get: /
"""

MANIFEST_TEXTS = {
    "app.arc": ARC_MANIFEST,
    ".arc": ARC_MANIFEST,
    "arc.json": json.dumps(MANIFEST_DATA, indent=2),
    "arc.yaml": YAML_MANIFEST,
    "arc.yml": YAML_MANIFEST,
    "package.json": json.dumps({"name": "chat", "version": "1.0.0", "arc": MANIFEST_DATA}),
}


def _load_alone(root: Path, name: str, text: str) -> AppConfig:
    """Load the project with `name` as its only manifest file."""
    for other in MANIFEST_TEXTS:
        (root / other).unlink(missing_ok=True)
    write_file(root / name, text)
    return load_project(root)


def _without_manifest_path(app: AppConfig) -> AppConfig:
    return dataclasses.replace(app, manifest=Path())


def test_six_forms_resolve_equal(tmp_path: Path) -> None:
    make_dirs(tmp_path, ("src/ws/connect", "src/ws/default", "src/ws/disconnect", *HANDLER_DIRS))

    apps = {name: _load_alone(tmp_path, name, text) for name, text in MANIFEST_TEXTS.items()}

    reference = _without_manifest_path(apps["app.arc"])
    for name, app in apps.items():
        assert app.manifest == tmp_path.resolve() / name
        assert _without_manifest_path(app) == reference, name


def test_six_forms_normalize_equal(tmp_path: Path) -> None:
    make_dirs(tmp_path, HANDLER_DIRS)
    pragmas = {}
    for name, text in MANIFEST_TEXTS.items():
        for other in MANIFEST_TEXTS:
            (tmp_path / other).unlink(missing_ok=True)
        write_file(tmp_path / name, text)
        document = find_manifest(tmp_path)
        assert document is not None
        pragmas[name] = document.pragmas

    for name, parsed in pragmas.items():
        assert parsed == pragmas["app.arc"], name


def test_forms_resolve_expected_config(tmp_path: Path) -> None:
    make_dirs(tmp_path, ("src/ws/connect", "src/ws/default", "src/ws/disconnect", *HANDLER_DIRS))

    app = _load_alone(tmp_path, "app.arc", ARC_MANIFEST)

    root = tmp_path.resolve()
    assert app.name == "chat-app"
    assert app.root == root
    assert app.other_pragmas == ("http",)
    assert [f.route_key for f in app.functions] == [
        "$connect",
        "$default",
        "$disconnect",
        "hello",
        "custom",
        "rooms/join",
    ]
    assert app.function("custom").src == root / "src/handlers/custom"
    assert app.function("rooms/join").src == root / "src/ws/rooms/join"
    for function in app.functions:
        assert function.runtime == "python3.14"
        assert function.timeout == 30
        assert function.memory == 512
        assert function.region == "eu-west-1"
        assert function.concurrency == 3


def test_ws_object_form(tmp_path: Path) -> None:
    make_dirs(tmp_path, HANDLER_DIRS)
    data = {
        "app": ["chat-app"],
        "ws": {"hello": None, "custom": {"src": "src/handlers/custom"}, "rooms/join": {}},
    }
    write_project(tmp_path, json.dumps(data), manifest_name="arc.json")

    app = load_project(tmp_path)

    assert app.name == "chat-app"
    assert [f.name for f in app.functions][3:] == ["hello", "custom", "rooms/join"]
    assert app.function("custom").src == tmp_path.resolve() / "src/handlers/custom"


@pytest.mark.parametrize("ws", [None, [], {}])
def test_ws_empty_forms(tmp_path: Path, ws: object) -> None:
    write_project(tmp_path, json.dumps({"app": "a", "ws": ws}), manifest_name="arc.json")

    app = load_project(tmp_path)

    assert [f.name for f in app.functions] == ["connect", "default", "disconnect"]


def test_yaml_empty_ws(tmp_path: Path) -> None:
    write_project(tmp_path, "app: a\nws:\n", manifest_name="arc.yaml")

    app = load_project(tmp_path)

    assert [f.route_key for f in app.functions] == ["$connect", "$default", "$disconnect"]


def test_package_json_architect_key(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        json.dumps({"name": "x", "architect": {"app": "from-architect", "ws": []}}),
        manifest_name="package.json",
    )

    app = load_project(tmp_path)

    assert app.name == "from-architect"


def test_package_json_arc_key_wins(tmp_path: Path) -> None:
    data = {"arc": {"app": "from-arc", "ws": []}, "architect": {"app": "other", "ws": []}}
    write_project(tmp_path, json.dumps(data), manifest_name="package.json")

    assert load_project(tmp_path).name == "from-arc"


def test_lookup_order(tmp_path: Path) -> None:
    write_project(tmp_path, "@app\nfrom-app-arc\n@ws\n")
    names = ["app.arc", ".arc", "arc.json", "arc.yaml", "arc.yml", "package.json"]
    write_file(tmp_path / ".arc", "@app\nfrom-dot-arc\n@ws\n")
    write_file(tmp_path / "arc.json", '{"app": "from-arc-json", "ws": []}')
    write_file(tmp_path / "arc.yaml", "app: from-arc-yaml\nws: []\n")
    write_file(tmp_path / "arc.yml", "app: from-arc-yml\nws: []\n")
    write_file(tmp_path / "package.json", '{"arc": {"app": "from-package-json", "ws": []}}')
    expected = {
        "app.arc": "from-app-arc",
        ".arc": "from-dot-arc",
        "arc.json": "from-arc-json",
        "arc.yaml": "from-arc-yaml",
        "arc.yml": "from-arc-yml",
        "package.json": "from-package-json",
    }

    for name in names:
        app = load_project(tmp_path)
        assert app.name == expected[name]
        assert app.manifest.name == name
        (tmp_path / name).unlink()


def test_no_manifest_names_candidates(tmp_path: Path) -> None:
    write_file(tmp_path / "package.json", '{"name": "not-architect"}')

    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)
    text = str(caught.value)

    assert str(tmp_path.resolve()) in text
    for name in ("app.arc", ".arc", "arc.json", "arc.yaml", "arc.yml", "package.json"):
        assert name in text
    assert "`arc` or `architect` key" in text


def test_missing_project_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path / "absent")

    assert "project directory" in str(caught.value)
    assert "not found" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("app.arc", "@app\nchat\n@http\nget /\n"),
        ("arc.json", '{"app": "chat", "http": []}'),
        ("arc.yaml", "app: chat\n"),
        ("package.json", '{"arc": {"app": "chat"}}'),
    ],
)
def test_manifest_without_ws(tmp_path: Path, name: str, text: str) -> None:
    write_project(tmp_path, text, manifest_name=name)

    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)

    assert caught.value.path == tmp_path.resolve() / name
    assert "no @ws pragma" in str(caught.value)
    assert str(caught.value).startswith(f"{tmp_path.resolve() / name}: ")


def test_other_pragmas_in_order(tmp_path: Path) -> None:
    write_project(tmp_path, "@app\nchat\n@tables\nx\n@ws\n@http\nget /\n@aws\nregion us-east-1\n")

    app = load_project(tmp_path)

    assert app.other_pragmas == ("tables", "http")


JSON_SYNTAX_ERRORS = [
    ("arc.json", '{\n  "app": "chat",\n  "ws": [,]\n}', 3, 10),
    ("package.json", '{"name": "x",\n"arc": }', 2, 8),
]


@pytest.mark.parametrize(("name", "text", "line", "column"), JSON_SYNTAX_ERRORS)
def test_json_syntax_error(tmp_path: Path, name: str, text: str, line: int, column: int) -> None:
    path = write_file(tmp_path / name, text)

    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)

    assert caught.value.line == line
    assert caught.value.column == column
    assert str(caught.value).startswith(f"{path.resolve()}:{line}:{column}: invalid JSON")


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path = write_file(tmp_path / "arc.yaml", "app: chat\nws:\n  - [hello\n  - x: y: z\n")

    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)

    assert caught.value.path == path.resolve()
    assert caught.value.line == 4
    assert caught.value.column is not None
    assert str(caught.value).startswith(f"{path.resolve()}:4:")
    assert "invalid YAML" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("arc.json", "[1, 2]", "expected a JSON object at the top level, found an array"),
        ("arc.yaml", "- a\n- b\n", "expected a mapping of pragmas at the top level"),
        ("package.json", '{"arc": ["app"]}', "the `arc` key of package.json must be an object"),
    ],
)
def test_top_level_shape_errors(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = write_file(tmp_path / name, text)

    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)

    assert caught.value.path == path.resolve()
    assert message in str(caught.value)


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "app.arc"
    path.write_bytes(b"@app\n\xff\xfe\n@ws\n")

    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)

    assert caught.value.path == path.resolve()
    assert "not valid UTF-8" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("@ws\n", None),
        ("@app\n@ws\n", 1),
        ("@app\none two\n@ws\n", 2),
        ("@app\none\ntwo\n@ws\n", 2),
        ("@app\ntrue\n@ws\n", 2),
    ],
)
def test_app_name_errors(tmp_path: Path, text: str, line: int | None) -> None:
    path = write_project(tmp_path, text)

    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)

    assert caught.value.path == path.resolve()
    assert caught.value.line == line
    assert "@app" in str(caught.value)


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ('""', "invalid @app entry: expected the app name, found ''"),
        ("true", "invalid @app entry: expected the app name, found a boolean"),
        ('{"name": "x"}', "invalid @app entry: expected the app name, found a list"),
    ],
)
def test_json_invalid_app_name(tmp_path: Path, app: str, message: str) -> None:
    path = write_project(tmp_path, f'{{"app": {app}, "ws": []}}', manifest_name="arc.json")

    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)

    assert caught.value.path == path.resolve()
    assert message in str(caught.value)


def test_json_app_name_error_names_key(tmp_path: Path) -> None:
    write_project(tmp_path, '{"app": ["a", "b"], "ws": []}', manifest_name="arc.json")

    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)

    assert "app[0]: expected exactly one app name" in str(caught.value)


def test_numeric_app_name_keeps_text(tmp_path: Path) -> None:
    write_project(tmp_path, "@app\n007\n@ws\n")

    assert load_project(tmp_path).name == "007"
