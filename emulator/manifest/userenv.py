"""The user's environment variables for every function: `.env` or the `@env` of prefs.arc."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from emulator.errors import ConfigError
from emulator.manifest.arc import Position
from emulator.manifest.documents import PREFERENCES_FILES, Document, read_document, read_text

# Variables that Lambda sets in every execution environment and that a
# function's configuration cannot set. Source: "Defined runtime environment
# variables" in the AWS Lambda Developer Guide. Every other `AWS_LAMBDA_`
# name is treated as reserved too (see `is_reserved_env_name`), because
# Lambda adds new ones under that prefix.
RESERVED_ENV_NAMES: frozenset[str] = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
        "TZ",
    }
)
RESERVED_ENV_PREFIXES: tuple[str, ...] = ("AWS_LAMBDA_",)

DOTENV_FILE = ".env"

# The environment that Architect's sandbox reads from the `@env` section.
PREFERENCES_ENVIRONMENT = "testing"

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_ASSIGNMENT = re.compile(r"[ \t]*(?:export[ \t]+)?([^=\s]+)[ \t]*=")
_DOUBLE_QUOTE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


def is_reserved_env_name(name: str) -> bool:
    """Tell whether Lambda reserves the environment variable `name`."""
    return name in RESERVED_ENV_NAMES or name.startswith(RESERVED_ENV_PREFIXES)


def load_user_env(root: Path) -> tuple[dict[str, str], Path | None]:
    """Read the user's variables and the file they came from.

    `.env` in the project root wins. Without it, the variables are the map
    `testing` in the `@env` section of the first preferences file
    (preferences.arc, prefs.arc, .preferences.arc or .prefs.arc).
    Raises ConfigError for malformed files, invalid names and reserved names.
    """
    dotenv = root / DOTENV_FILE
    if dotenv.is_file():
        return parse_dotenv(read_text(dotenv), dotenv), dotenv

    for name in PREFERENCES_FILES:
        path = root / name
        if path.is_file():
            # Untyped, so that `PORT 0080` stays "0080" rather than becoming 80.
            document = read_document(path, typed=False)
            assert document is not None
            return _read_preferences_env(document), path
    return {}, None


def parse_dotenv(text: str, path: Path) -> dict[str, str]:
    """Parse dotenv text: `NAME=value` lines, later lines win.

    Blank lines and lines starting with `#` are skipped, and `export ` before
    a name is allowed. An unquoted value ends at a `#` that follows
    whitespace, and its outer whitespace is dropped. Values in single quotes
    or backticks are literal; in double quotes, `\\n`, `\\r`, `\\t`, `\\"`
    and `\\\\` are escapes. Quoted values may span lines.
    """
    lines = _LINE_BREAK.split(text.removeprefix("\ufeff"))
    variables: dict[str, str] = {}

    index = 0
    while index < len(lines):
        number = index + 1
        line = lines[index]
        index += 1
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue

        match = _ASSIGNMENT.match(line)
        if match is None:
            raise ConfigError(
                "expected NAME=value",
                path=path,
                line=number,
                column=len(line) - len(line.lstrip()) + 1,
                hint="Each line of .env assigns one variable, for example `API_URL=http://localhost`.",
            )
        name = match.group(1)
        _check_name(name, path, Position(number, match.start(1) + 1))

        # `rest` starts right after the `=`, so a `#` there is data, not a comment.
        rest = line[match.end() :]
        value_start = len(line) - len(rest.lstrip(" \t"))
        if line[value_start : value_start + 1] in ("'", '"', "`"):
            value, index = _read_quoted_value(lines, index - 1, value_start, path)
        else:
            value = _strip_inline_comment(rest).strip()
        variables[name] = value

    return variables


def _read_quoted_value(lines: list[str], index: int, start: int, path: Path) -> tuple[str, int]:
    """Read a quoted value that opens at `lines[index][start]`.

    Returns the value and the index of the line after the closing quote.
    """
    quote = lines[index][start]
    characters: list[str] = []
    line_index = index
    cursor = start + 1
    while line_index < len(lines):
        line = lines[line_index]
        while cursor < len(line):
            character = line[cursor]
            if quote == '"' and character == "\\" and cursor + 1 < len(line):
                escaped = line[cursor + 1]
                characters.append(_DOUBLE_QUOTE_ESCAPES.get(escaped, "\\" + escaped))
                cursor += 2
                continue
            if character == quote:
                _check_after_quote(line, cursor + 1, path, line_index + 1)
                return "".join(characters), line_index + 1
            characters.append(character)
            cursor += 1
        characters.append("\n")
        line_index += 1
        cursor = 0

    raise ConfigError(
        f"unterminated value: expected a closing {quote}",
        path=path,
        line=index + 1,
        column=start + 1,
        hint="Close the quoted value, or escape the quote inside it.",
    )


def _check_after_quote(line: str, cursor: int, path: Path, number: int) -> None:
    rest = line[cursor:]
    if rest.strip() and not rest.lstrip().startswith("#"):
        raise ConfigError(
            "expected the end of the line or a comment after the closing quote",
            path=path,
            line=number,
            column=cursor + len(rest) - len(rest.lstrip()) + 1,
        )


def _strip_inline_comment(value: str) -> str:
    for index, character in enumerate(value):
        if character == "#" and index > 0 and value[index - 1] in " \t":
            return value[:index]
    return value


def _read_preferences_env(document: Document) -> dict[str, str]:
    variables: dict[str, str] = {}
    for index, entry in enumerate(document.pragmas.get("env", [])):
        position = document.position("env", index)
        if not isinstance(entry, dict) or PREFERENCES_ENVIRONMENT not in entry:
            continue
        values = entry[PREFERENCES_ENVIRONMENT]
        if not isinstance(values, dict):
            raise document.error(
                f"expected `NAME value` lines under `{PREFERENCES_ENVIRONMENT}` in @env",
                position,
                hint=f"For example:\n    @env\n    {PREFERENCES_ENVIRONMENT}\n      API_URL http://localhost",
            )
        for name, value in values.items():
            key_position = document.position("env", index, name)
            _check_name(name, document.path, key_position)
            variables[name] = _env_value(value)
    return variables


def _env_value(value: Any) -> str:
    # Several values on a line are joined with spaces, as Architect does.
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    return str(value)


def _check_name(name: str, path: Path, position: Position) -> None:
    if not _ENV_NAME.fullmatch(name):
        raise ConfigError(
            f"invalid environment variable name '{name}'",
            path=path,
            line=position.line,
            column=position.column,
            hint="Names contain only letters, digits and underscores, "
            "and do not start with a digit.",
        )
    if is_reserved_env_name(name):
        raise ConfigError(
            f"environment variable {name} is reserved by Lambda and cannot be set",
            path=path,
            line=position.line,
            column=position.column,
            hint=f"Lambda sets {name} itself; rename your variable.",
        )
