"""User environment variables: `.env`, prefs.arc `@env` and the reserved names."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.errors import ConfigError
from emulator.manifest import RESERVED_ENV_NAMES, is_reserved_env_name, load_project
from emulator.manifest.userenv import load_user_env, parse_dotenv

from .projects import place, write_file, write_project

ENV_PATH = Path("/project/.env")

DOTENV_CASES: list[tuple[str, str, dict[str, str]]] = [
    ("plain", "A=1\nB=two words\n", {"A": "1", "B": "two words"}),
    ("spaces around the equals sign", "A = 1\n  B\t=\t2  \n", {"A": "1", "B": "2"}),
    ("export prefix", "export A=1\nexport\tB=2\n", {"A": "1", "B": "2"}),
    ("name starting with export", "exported=1\n", {"exported": "1"}),
    ("comments and blank lines", "# c\n\n  # indented\nA=1 # trailing\n", {"A": "1"}),
    (
        "hash without a space is data",
        "URL=http://x/#frag\nB=#tag\n",
        {"URL": "http://x/#frag", "B": "#tag"},
    ),
    ("empty values", "A=\nB=\"\"\nC=''\nD= # note\n", {"A": "", "B": "", "C": "", "D": ""}),
    ("double quotes with escapes", 'A="a\\nb\\tc \\"q\\" \\\\ \\x"\n', {"A": 'a\nb\tc "q" \\ \\x'}),
    ("single quotes are literal", "A='a\\nb # c'\n", {"A": "a\\nb # c"}),
    ("backticks are literal", 'A=`it\'s "x"`\n', {"A": 'it\'s "x"'}),
    ("comment after a quoted value", 'A="x" # note\n', {"A": "x"}),
    ("multi-line quoted value", 'A="line 1\nline 2"\nB=3\n', {"A": "line 1\nline 2", "B": "3"}),
    ("equals signs in the value", "A=x=y==z\n", {"A": "x=y==z"}),
    ("quotes inside an unquoted value", 'A=it\'s "ok"\n', {"A": 'it\'s "ok"'}),
    ("later lines win", "A=1\nA=2\n", {"A": "2"}),
    ("crlf line endings", "A=1\r\nB='2'\r\n", {"A": "1", "B": "2"}),
    ("byte order mark", "\ufeffA=1\n", {"A": "1"}),
    ("no trailing newline", "A=1", {"A": "1"}),
    ("unicode value", "A=café ☕\n", {"A": "café ☕"}),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [case[1:] for case in DOTENV_CASES],
    ids=[case[0] for case in DOTENV_CASES],
)
def test_parse_dotenv(text: str, expected: dict[str, str]) -> None:
    assert parse_dotenv(text, ENV_PATH) == expected


DOTENV_ERRORS: list[tuple[str, str, int, int, str]] = [
    ("line without equals sign", "A=1\njust words\n", 2, 1, "expected NAME=value"),
    ("export without assignment", "export A\n", 1, 1, "expected NAME=value"),
    ("invalid name", "A=1\n  MY-VAR=1\n", 2, 3, "invalid environment variable name 'MY-VAR'"),
    ("name starting with a digit", "1A=1\n", 1, 1, "invalid environment variable name '1A'"),
    ("unterminated quote", 'A=1\nB="abc\nC=2\n', 2, 3, "unterminated value"),
    ("text after a closing quote", "A='x' y\n", 1, 7, "after the closing quote"),
    ("reserved name", "A=1\nAWS_REGION=eu-west-1\n", 2, 1, "AWS_REGION is reserved"),
    ("reserved prefix", "export AWS_LAMBDA_ANYTHING=1\n", 1, 8, "AWS_LAMBDA_ANYTHING is reserved"),
    ("reserved handler", "_HANDLER=x.y\n", 1, 1, "_HANDLER is reserved"),
]


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [case[1:] for case in DOTENV_ERRORS],
    ids=[case[0] for case in DOTENV_ERRORS],
)
def test_dotenv_error(text: str, line: int, column: int, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_dotenv(text, ENV_PATH)

    assert message in caught.value.message
    assert place(caught.value) == f"{ENV_PATH}:{line}:{column}"


@pytest.mark.parametrize(
    "name",
    [
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_SOMETHING_NEW",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "TZ",
    ],
)
def test_reserved_names(name: str) -> None:
    assert is_reserved_env_name(name)


@pytest.mark.parametrize(
    "name",
    ["PATH", "LANG", "NODE_PATH", "PYTHONPATH", "AWS_PROFILE", "MY_TZ", "ARC_ENV", "aws_region"],
)
def test_unreserved_names(name: str) -> None:
    assert not is_reserved_env_name(name)


def test_reserved_constant_is_frozen() -> None:
    assert isinstance(RESERVED_ENV_NAMES, frozenset)
    assert "_HANDLER" in RESERVED_ENV_NAMES


def test_no_user_env(tmp_path: Path) -> None:
    assert load_user_env(tmp_path) == ({}, None)


@pytest.mark.parametrize("name", ["preferences.arc", "prefs.arc", ".preferences.arc", ".prefs.arc"])
def test_prefs_env_testing(tmp_path: Path, name: str) -> None:
    path = write_file(
        tmp_path / name,
        "@sandbox\nlivereload true\n@env\ntesting\n  API_URL http://localhost:3000\n"
        "  PORT 0080\n  GREETING 'hello world'\n  WORDS one two\n  EMPTY ''\n"
        "staging\n  API_URL https://staging.example\n",
    )

    variables, source = load_user_env(tmp_path)

    assert variables == {
        "API_URL": "http://localhost:3000",
        "PORT": "0080",
        "GREETING": "hello world",
        "WORDS": "one two",
        "EMPTY": "",
    }
    assert source == path


def test_prefs_precedence(tmp_path: Path) -> None:
    names = ["preferences.arc", "prefs.arc", ".preferences.arc", ".prefs.arc"]
    for name in names:
        write_file(tmp_path / name, f"@env\ntesting\n  FROM {name}\n")

    for name in names:
        variables, source = load_user_env(tmp_path)
        assert variables == {"FROM": name}
        assert source == tmp_path / name
        (tmp_path / name).unlink()


def test_dotenv_beats_prefs(tmp_path: Path) -> None:
    write_file(tmp_path / "prefs.arc", "@env\ntesting\n  A from-prefs\n  B only-prefs\n")
    dotenv = write_file(tmp_path / ".env", "A=from-dotenv\n")

    assert load_user_env(tmp_path) == ({"A": "from-dotenv"}, dotenv)


def test_prefs_without_testing(tmp_path: Path) -> None:
    path = write_file(tmp_path / "prefs.arc", "@env\nproduction\n  A 1\n@sandbox\nx\n")

    assert load_user_env(tmp_path) == ({}, path)


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        ("@env\ntesting\n  A 1\n  AWS_REGION us-east-1\n", 4, 3, "AWS_REGION is reserved"),
        (
            "@env\ntesting\n  A 1\n  'MY VAR' x\n",
            4,
            3,
            "invalid environment variable name 'MY VAR'",
        ),
        ("@env\n\ntesting\n  ONLY\n  NAMES\n", 3, 1, "expected `NAME value` lines under `testing`"),
        ("@env\ntesting\n  A 1\n  B\n", 4, 3, "key `B` of `testing` has no value"),
    ],
)
def test_prefs_errors(tmp_path: Path, text: str, line: int, column: int, message: str) -> None:
    path = write_file(tmp_path / "prefs.arc", text)

    with pytest.raises(ConfigError) as caught:
        load_user_env(tmp_path)

    assert message in caught.value.message
    assert place(caught.value) == f"{path}:{line}:{column}"


def test_load_project_reads_user_env(tmp_path: Path) -> None:
    write_project(tmp_path, "@app\nchat\n@ws\n")
    write_file(tmp_path / ".env", "SECRET=shh\nexport MODE=test\n")

    app = load_project(tmp_path)

    assert dict(app.user_env) == {"SECRET": "shh", "MODE": "test"}
    assert app.user_env_file == tmp_path.resolve() / ".env"
    with pytest.raises(TypeError):
        app.user_env["OTHER"] = "x"  # type: ignore[index]


def test_load_project_rejects_reserved(tmp_path: Path) -> None:
    write_project(tmp_path, "@app\nchat\n@ws\n")
    write_file(tmp_path / ".env", "OK=1\nLAMBDA_TASK_ROOT=/tmp\n")

    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)

    assert "LAMBDA_TASK_ROOT is reserved" in str(caught.value)
    assert str(caught.value).startswith(f"{tmp_path.resolve() / '.env'}:2:1: ")
