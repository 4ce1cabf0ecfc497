"""Function settings: defaults, layering, per-function config files, validation and runtimes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emulator.errors import ConfigError
from emulator.manifest import canonical_runtime, load_project, runtime_family
from emulator.manifest.runtimes import NEWEST_RUNTIMES

from .projects import place, write_file, write_project

HELLO = "src/ws/hello"


def _project(root: Path, aws: str = "", config: tuple[str, str] | None = None) -> Path:
    """Write a project with route `hello`, an `@aws` section and optionally a config file."""
    path = write_project(root, f"@app\nchat\n@ws\nhello\n@aws\n{aws}", handler_dirs=(HELLO,))
    if config is not None:
        name, text = config
        write_file(root / HELLO / name, text)
    return path


def test_defaults(tmp_path: Path) -> None:
    write_project(tmp_path, "@app\nchat\n@ws\n")

    function = load_project(tmp_path).function("default")

    assert function.runtime == "nodejs22.x"
    assert function.timeout == 5
    assert function.memory == 1152
    assert function.concurrency is None
    assert function.region == "us-west-2"
    assert function.handler == "index.handler"
    assert function.handler_method == "handler"
    assert function.config_file is None


def test_manifest_aws_applies_to_all(tmp_path: Path) -> None:
    _project(
        tmp_path,
        "runtime python3.12\ntimeout 60\nmemory 2048\nconcurrency 4\nregion ap-southeast-2\n"
        "handler app.main\n",
    )

    app = load_project(tmp_path)

    for function in app.functions:
        assert function.runtime == "python3.12"
        assert function.timeout == 60
        assert function.memory == 2048
        assert function.concurrency == 4
        assert function.region == "ap-southeast-2"
        assert function.handler == "app.main"
        assert function.handler_method == "main"


def test_config_file_overrides_manifest(tmp_path: Path) -> None:
    config = tmp_path / HELLO / "config.arc"
    _project(
        tmp_path,
        "runtime python\ntimeout 60\nmemory 2048\n",
        ("config.arc", "@aws\ntimeout 10\nruntime ruby\n"),
    )

    app = load_project(tmp_path)
    hello = app.function("hello")
    default = app.function("default")

    assert hello.timeout == 10
    assert hello.runtime == NEWEST_RUNTIMES["ruby"]
    assert hello.memory == 2048
    assert hello.config_file == config.resolve()
    assert hello.handler == "lambda.handler"
    assert default.timeout == 60
    assert default.runtime == NEWEST_RUNTIMES["python"]
    assert default.config_file is None


CONFIG_FORMS = [
    ("config.arc", "@aws\ntimeout 42\nmemory 256\n"),
    (".arc-config", "@aws\ntimeout 42\nmemory 256\n"),
    ("arc.json", json.dumps({"aws": {"timeout": 42, "memory": 256}})),
    ("arc-config.json", json.dumps({"aws": {"timeout": 42, "memory": 256}})),
    ("config.yaml", "aws:\n  timeout: 42\n  memory: 256\n"),
    ("config.yml", "aws:\n  timeout: 42\n  memory: 256\n"),
    ("arc-config.yaml", "aws:\n  timeout: 42\n  memory: 256\n"),
    ("arc-config.yml", "aws:\n  timeout: 42\n  memory: 256\n"),
]


@pytest.mark.parametrize(("name", "text"), CONFIG_FORMS, ids=[name for name, _ in CONFIG_FORMS])
def test_config_file_forms(tmp_path: Path, name: str, text: str) -> None:
    _project(tmp_path, "timeout 60\n", (name, text))

    hello = load_project(tmp_path).function("hello")

    assert hello.timeout == 42
    assert hello.memory == 256
    assert hello.config_file == (tmp_path / HELLO / name).resolve()


def test_first_config_file_wins(tmp_path: Path) -> None:
    _project(tmp_path)
    for index, (name, _) in enumerate(CONFIG_FORMS):
        timeout = index + 1
        if name in ("config.arc", ".arc-config"):
            text = f"@aws\ntimeout {timeout}\n"
        elif name.endswith(".json"):
            text = json.dumps({"aws": {"timeout": timeout}})
        else:
            text = f"aws:\n  timeout: {timeout}\n"
        write_file(tmp_path / HELLO / name, text)

    for index, (name, _) in enumerate(CONFIG_FORMS):
        hello = load_project(tmp_path).function("hello")
        assert hello.config_file is not None
        assert hello.config_file.name == name
        assert hello.timeout == index + 1
        (tmp_path / HELLO / name).unlink()


def test_config_file_without_aws(tmp_path: Path) -> None:
    _project(tmp_path, "timeout 60\n", ("config.arc", "@other\nx\n"))

    hello = load_project(tmp_path).function("hello")

    assert hello.timeout == 60
    assert hello.config_file == (tmp_path / HELLO / "config.arc").resolve()


def test_unknown_aws_keys_ignored(tmp_path: Path) -> None:
    _project(
        tmp_path,
        "profile work\narchitecture arm64\nlayers\n  arn:a\npolicies\n  p1\n  p2\n"
        "apigateway http\nstandalone\n1 2 3\n",
    )

    function = load_project(tmp_path).function("hello")

    assert function.timeout == 5
    assert function.memory == 1152


def test_later_duplicate_key_wins(tmp_path: Path) -> None:
    _project(tmp_path, "timeout 10\ntimeout 20\n")

    assert load_project(tmp_path).function("hello").timeout == 20


VALID_VALUES = [
    ("timeout 1", "timeout", 1),
    ("timeout 900", "timeout", 900),
    ("memory 128", "memory", 128),
    ("memory 10240", "memory", 10240),
    ("concurrency 1", "concurrency", 1),
    ("concurrency 5000", "concurrency", 5000),
    ("handler index.handler", "handler", "index.handler"),
    ("handler lib/app.run_it", "handler", "lib/app.run_it"),
    ("handler my-file.$handler", "handler", "my-file.$handler"),
    ("region us-east-1", "region", "us-east-1"),
    ("region us-gov-west-1", "region", "us-gov-west-1"),
    ("region ap-southeast-2", "region", "ap-southeast-2"),
]


@pytest.mark.parametrize(("line", "field", "expected"), VALID_VALUES)
def test_valid_setting(tmp_path: Path, line: str, field: str, expected: object) -> None:
    _project(tmp_path, line + "\n")

    function = load_project(tmp_path).function("hello")

    assert getattr(function, field) == expected


INVALID_VALUES = [
    ("timeout 0", "invalid @aws timeout 0: expected an integer number of seconds from 1 to 900"),
    ("timeout 901", "invalid @aws timeout 901: expected an integer number of seconds"),
    ("timeout -5", "invalid @aws timeout -5"),
    ("timeout 1.5", "invalid @aws timeout 1.5"),
    ("timeout '30'", "invalid @aws timeout '30'"),
    ("timeout true", "invalid @aws timeout true"),
    ("timeout", "invalid @aws timeout (no value)"),
    ("timeout 1 2", "invalid @aws timeout [1, 2]"),
    ("memory 127", "invalid @aws memory 127: expected an integer number of MB from 128 to 10240"),
    ("memory 10241", "invalid @aws memory 10241: expected an integer number of MB"),
    ("memory big", "invalid @aws memory 'big'"),
    ("concurrency 0", "invalid @aws concurrency 0: expected an integer of 1 or more"),
    ("concurrency -1", "invalid @aws concurrency -1"),
    ("handler index", "invalid @aws handler 'index': expected `file.method`"),
    ("handler index.js.handler", "invalid @aws handler 'index.js.handler'"),
    ("handler .handler", "invalid @aws handler '.handler'"),
    ("handler index.", "invalid @aws handler 'index.'"),
    ("handler ../x.handler", "invalid @aws handler '../x.handler'"),
    ("handler index.1method", "invalid @aws handler 'index.1method'"),
    ("region mars", "invalid @aws region 'mars': expected a region name such as us-west-2"),
    ("region US-WEST-2", "invalid @aws region 'US-WEST-2'"),
    ("region us-west", "invalid @aws region 'us-west'"),
    ("region 5", "invalid @aws region 5"),
    ("runtime java21", "invalid @aws runtime 'java21'"),
    ("runtime python2.7", "invalid @aws runtime 'python2.7'"),
    ("runtime Python3.12", "invalid @aws runtime 'Python3.12'"),
    ("runtime nodejs22", "invalid @aws runtime 'nodejs22'"),
    ("runtime provided.al3", "invalid @aws runtime 'provided.al3'"),
    ("runtime 3", "invalid @aws runtime 3"),
]


@pytest.mark.parametrize(("line", "message"), INVALID_VALUES)
def test_invalid_setting_in_manifest(tmp_path: Path, line: str, message: str) -> None:
    path = _project(tmp_path, "memory 256\n" + line + "\n")

    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)
    error = caught.value

    assert message in error.message
    assert place(error) == f"{path.resolve()}:7:1"


def test_invalid_setting_in_config_file(tmp_path: Path) -> None:
    _project(tmp_path, "timeout 60\n", ("config.arc", "# settings\n@aws\n\nmemory 64\n"))
    config = (tmp_path / HELLO / "config.arc").resolve()

    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)

    assert place(caught.value) == f"{config}:4:1"
    assert "invalid @aws memory 64: expected an integer number of MB from 128 to 10240" in str(
        caught.value
    )


def test_invalid_setting_in_json_config(tmp_path: Path) -> None:
    _project(tmp_path, "", ("arc-config.json", json.dumps({"aws": {"timeout": 1000}})))
    config = (tmp_path / HELLO / "arc-config.json").resolve()

    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)

    assert str(caught.value).startswith(
        f"{config}: aws.timeout: invalid @aws timeout 1000: expected an integer number of seconds"
    )


def test_invalid_setting_in_yaml_config(tmp_path: Path) -> None:
    _project(tmp_path, "", ("config.yaml", "aws:\n  runtime: python\n  region: Moon-1\n"))
    config = (tmp_path / HELLO / "config.yaml").resolve()

    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)

    assert place(caught.value) == f"{config}:3:3"
    assert "invalid @aws region 'Moon-1'" in str(caught.value)


def test_invalid_runtime_hint_lists_forms(tmp_path: Path) -> None:
    _project(tmp_path, "runtime go1.x\n")

    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)

    assert caught.value.hint is not None
    for form in ("nodejsNN.x", "python3.NN", "rubyN.N", "deno", "provided.al2023", "node"):
        assert form in caught.value.hint


RUNTIME_ALIASES = [
    ("node", NEWEST_RUNTIMES["nodejs"]),
    ("nodejs", NEWEST_RUNTIMES["nodejs"]),
    ("Node.js", NEWEST_RUNTIMES["nodejs"]),
    ("NODE", NEWEST_RUNTIMES["nodejs"]),
    ("python", NEWEST_RUNTIMES["python"]),
    ("py", NEWEST_RUNTIMES["python"]),
    ("Python", NEWEST_RUNTIMES["python"]),
    ("ruby", NEWEST_RUNTIMES["ruby"]),
    ("rb", NEWEST_RUNTIMES["ruby"]),
]


@pytest.mark.parametrize(("alias", "runtime"), RUNTIME_ALIASES)
def test_runtime_alias(tmp_path: Path, alias: str, runtime: str) -> None:
    _project(tmp_path, f"runtime {alias}\n")

    assert load_project(tmp_path).function("hello").runtime == runtime


def test_newest_runtimes_table() -> None:
    assert NEWEST_RUNTIMES == {"nodejs": "nodejs24.x", "python": "python3.14", "ruby": "ruby3.4"}


CANONICAL_RUNTIMES = [
    ("nodejs18.x", "nodejs"),
    ("nodejs22.x", "nodejs"),
    ("nodejs99.x", "nodejs"),
    ("python3.9", "python"),
    ("python3.13", "python"),
    ("ruby3.2", "ruby"),
    ("ruby10.1", "ruby"),
    ("deno", "deno"),
    ("provided", "provided"),
    ("provided.al2", "provided"),
    ("provided.al2023", "provided"),
]


@pytest.mark.parametrize(("runtime", "family"), CANONICAL_RUNTIMES)
def test_canonical_runtime_kept(runtime: str, family: str) -> None:
    assert canonical_runtime(runtime) == runtime
    assert runtime_family(runtime) == family


@pytest.mark.parametrize(
    "runtime",
    ["java21", "python2.7", "python3", "nodejs", "nodejs22", "ruby3", "Deno", "go1.x", ""],
)
def test_runtime_family_rejects(runtime: str) -> None:
    with pytest.raises(ValueError):
        runtime_family(runtime)


@pytest.mark.parametrize(
    "runtime", ["java21", "python2.7", "python3", "nodejs22", "ruby3", "Deno", "go1.x", ""]
)
def test_canonical_runtime_rejects(runtime: str) -> None:
    assert canonical_runtime(runtime) is None
