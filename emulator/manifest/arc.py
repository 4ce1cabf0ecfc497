"""Parser for Architect's `.arc` text format.

The format is line-based. A line that starts with `@name` opens a pragma,
and every other line adds an entry to the open pragma:

    @aws                    a pragma
    timeout 30              an array: ["timeout", 30]
    layers                  a vector: {"layers": ["arn:a", "arn:b"]}
      arn:a
      arn:b
    custom                  a map: {"custom": {"src": "dir", "env": ["a", "b"]}}
      src dir
      env
        a
        b

A line with one value and nothing indented under it is a scalar entry.
Values are `true` and `false`, numbers (a token that starts with `-` or a
digit and reads as a decimal number), and strings. Unquoted strings contain
letters, digits and the characters of `_UNQUOTED_PUNCTUATION`; strings in
`'`, `"` or backticks may contain anything but a line break. Inside quotes
a backslash before the quote character or before another backslash stands
for that character, and any other backslash is kept. `#` starts a comment
anywhere outside quotes. A tab counts as two spaces of indentation, and
`\\n`, `\\r\\n` and `\\r` all end a line.

The rules follow Architect's parser (`@architect/parser`). Where that parser
accepts input ambiguously (an indented pragma, a character that is neither
a value nor a separator), this one raises ConfigError instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.errors import ConfigError

Scalar = str | int | float | bool

_UNQUOTED_PUNCTUATION = frozenset("()/\\~-_.,:$*?&!%=+|^")
_QUOTES = frozenset("'\"`")
_PRAGMA_NAME = re.compile(r"[a-zA-Z0-9_-]+")
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"-?\d+")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")

_UNQUOTED_HINT = (
    "Unquoted values may contain letters, digits and ()/\\~-_.,:$*?&!%=+|^; "
    "put other characters inside quotes."
)


@dataclass(frozen=True, slots=True)
class Position:
    """Location of a manifest entry or key in its file.

    `line` and `column` count from 1 and are known for `.arc` and YAML files.
    `key` is the entry's path in a JSON or YAML document (`ws[2]`,
    `aws.timeout`). `text` is the first value of a `.arc` entry as written,
    so that a route named `007` keeps its leading zeros after the parser
    has read it as the number 7.
    """

    line: int | None = None
    column: int | None = None
    key: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class ArcDocument:
    """The parsed pragmas of a `.arc` file and where each entry was written.

    `entry_positions[pragma][i]` is the position of `pragmas[pragma][i]`.
    `key_positions[pragma][i]` maps each key of a map entry to the position
    of its line, and is empty for the other kinds of entries.
    """

    pragmas: dict[str, list[Any]]
    pragma_positions: dict[str, Position]
    entry_positions: dict[str, list[Position]]
    key_positions: dict[str, list[dict[str, Position]]]


@dataclass(frozen=True, slots=True)
class _Token:
    value: Scalar
    # The value as a string: the text between the quotes with escapes
    # applied, or the unquoted text as written.
    text: str
    column: int


@dataclass(frozen=True, slots=True)
class _Line:
    number: int
    # Width of the leading whitespace, with a tab counted as two spaces.
    indent: int
    # Column of the first token or of the `@` of a pragma.
    column: int
    pragma: str | None
    tokens: tuple[_Token, ...]


def parse_arc(text: str, path: Path | None = None, *, typed: bool = True) -> dict[str, list[Any]]:
    """Parse `.arc` text into a mapping of pragma name to its list of entries.

    With `typed=False` every value stays the string that was written, so
    `PORT 0080` keeps its leading zeros. Raises ConfigError with the line,
    the column and what was expected when the text is malformed.
    """
    return parse_arc_document(text, path, typed=typed).pragmas


def parse_arc_document(text: str, path: Path | None = None, *, typed: bool = True) -> ArcDocument:
    """Parse `.arc` text like `parse_arc`, keeping where each entry was written."""
    lines = list(_tokenize(text, path, typed))
    pragmas: dict[str, list[Any]] = {}
    pragma_positions: dict[str, Position] = {}
    entry_positions: dict[str, list[Position]] = {}
    key_positions: dict[str, list[dict[str, Position]]] = {}
    current: str | None = None

    index = 0
    while index < len(lines):
        line = lines[index]
        if line.pragma is not None:
            if line.pragma in pragmas:
                first = pragma_positions[line.pragma].line
                raise _error(
                    path,
                    line,
                    line.column,
                    f"pragma @{line.pragma} is given twice (first on line {first})",
                    f"Merge the two @{line.pragma} sections into one.",
                )
            current = line.pragma
            pragmas[current] = []
            pragma_positions[current] = Position(line.number, line.column)
            entry_positions[current] = []
            key_positions[current] = []
            index += 1
            continue

        if current is None:
            raise _error(
                path,
                line,
                line.column,
                "expected a pragma such as @app before the first entry",
                "Start the file with a pragma line, for example `@app`.",
            )
        if line.indent > 0:
            raise _unexpected_indentation(path, line)

        block_end = index + 1
        while (
            block_end < len(lines)
            and lines[block_end].pragma is None
            and lines[block_end].indent > 0
        ):
            block_end += 1
        entry, keys = _parse_entry(path, line, lines[index + 1 : block_end])

        pragmas[current].append(entry)
        first_token = line.tokens[0]
        entry_positions[current].append(Position(line.number, line.column, text=first_token.text))
        key_positions[current].append(keys)
        index = block_end

    return ArcDocument(pragmas, pragma_positions, entry_positions, key_positions)


def _parse_entry(
    path: Path | None, line: _Line, block: list[_Line]
) -> tuple[Any, dict[str, Position]]:
    """Build one entry from a line and the lines indented under it."""
    if len(line.tokens) > 1:
        if block:
            raise _unexpected_indentation(path, block[0])
        return [token.value for token in line.tokens], {}

    head = line.tokens[0]
    if not block:
        return head.value, {}

    for nested in block:
        if nested.indent not in (2, 4):
            raise _error(
                path,
                nested,
                nested.column,
                f"expected an indentation of two or four spaces, found {nested.indent}",
                "Indent the values of a vector or map two spaces, "
                "and the list under a map key four spaces.",
            )
    if block[0].indent != 2:
        raise _error(
            path,
            block[0],
            block[0].column,
            f"expected two spaces of indentation under `{head.text}`, found four",
            "Indent the values of a vector or map two spaces.",
        )

    is_map = any(nested.indent == 4 or len(nested.tokens) > 1 for nested in block)
    if is_map:
        values, keys = _parse_map(path, head.text, block)
        return {head.text: values}, keys
    return {head.text: [nested.tokens[0].value for nested in block]}, {}


def _parse_map(
    path: Path | None, name: str, block: list[_Line]
) -> tuple[dict[str, Any], dict[str, Position]]:
    """Read `key value...` lines, where a key alone takes the list indented under it."""
    values: dict[str, Any] = {}
    keys: dict[str, Position] = {}

    index = 0
    while index < len(block):
        line = block[index]
        key = line.tokens[0].text
        if key in values:
            raise _error(
                path,
                line,
                line.column,
                f"key `{key}` of `{name}` is given twice (first on line {keys[key].line})",
                "Remove one of the two lines.",
            )

        list_end = index + 1
        while list_end < len(block) and block[list_end].indent == 4:
            list_end += 1
        nested = block[index + 1 : list_end]

        if len(line.tokens) > 1:
            if nested:
                raise _error(
                    path,
                    nested[0],
                    nested[0].column,
                    f"unexpected indentation: key `{key}` already has a value on its line",
                    "Either write the values after the key, or list them under it, not both.",
                )
            found = [token.value for token in line.tokens[1:]]
            values[key] = found[0] if len(found) == 1 else found
        else:
            if not nested:
                raise _error(
                    path,
                    line,
                    line.column,
                    f"key `{key}` of `{name}` has no value",
                    "Write the value after the key on the same line, or list values "
                    "indented four spaces under it. A vector has one value per line "
                    "and no keys.",
                )
            for item in nested:
                if len(item.tokens) > 1:
                    raise _error(
                        path,
                        item,
                        item.tokens[1].column,
                        f"expected one value per line in the list under key `{key}`",
                        "Put each value of the list on its own line.",
                    )
            values[key] = [item.tokens[0].value for item in nested]

        keys[key] = Position(line.number, line.column, text=key)
        index = list_end

    return values, keys


def _tokenize(text: str, path: Path | None, typed: bool) -> Iterator[_Line]:
    """Yield the lines that contain a pragma or values, skipping blanks and comments."""
    text = text.removeprefix("\ufeff")
    for number, raw in enumerate(_LINE_BREAK.split(text), start=1):
        line = _tokenize_line(raw, number, path, typed)
        if line is not None:
            yield line


def _tokenize_line(raw: str, number: int, path: Path | None, typed: bool) -> _Line | None:
    indent = 0
    cursor = 0
    while cursor < len(raw) and raw[cursor] in " \t":
        indent += 2 if raw[cursor] == "\t" else 1
        cursor += 1
    if cursor == len(raw) or raw[cursor] == "#":
        return None

    start_column = cursor + 1
    if raw[cursor] == "@":
        if indent:
            raise ConfigError(
                "a pragma must start at the beginning of its line",
                path=path,
                line=number,
                column=start_column,
                hint="Remove the indentation before the `@`.",
            )
        pragma = _read_pragma(raw, cursor, number, path)
        return _Line(number, 0, start_column, pragma, ())

    tokens: list[_Token] = []
    while cursor < len(raw):
        character = raw[cursor]
        if character in " \t":
            cursor += 1
            continue
        if character == "#":
            break

        if character in _QUOTES:
            token, cursor = _read_quoted(raw, cursor, number, path)
        elif _is_unquoted(character):
            token, cursor = _read_unquoted(raw, cursor, typed)
        elif character == "@":
            raise ConfigError(
                "unexpected `@` after the start of the line, where no pragma can begin",
                path=path,
                line=number,
                column=cursor + 1,
                hint="Put values that contain `@` inside quotes.",
            )
        else:
            raise ConfigError(
                f"expected a value, found {_describe(character)}",
                path=path,
                line=number,
                column=cursor + 1,
                hint=_UNQUOTED_HINT,
            )

        if cursor < len(raw) and raw[cursor] not in " \t#":
            raise ConfigError(
                f"expected a space, a comment or the end of the line after `{token.text}`, "
                f"found {_describe(raw[cursor])}",
                path=path,
                line=number,
                column=cursor + 1,
                hint=_UNQUOTED_HINT,
            )
        tokens.append(token)

    return _Line(number, indent, start_column, None, tuple(tokens))


def _read_pragma(raw: str, cursor: int, number: int, path: Path | None) -> str:
    match = _PRAGMA_NAME.match(raw, cursor + 1)
    if match is None:
        raise ConfigError(
            "expected a pragma name after `@`",
            path=path,
            line=number,
            column=cursor + 2,
            hint="Pragma names contain letters, digits, `-` and `_`, as in `@ws`.",
        )
    rest = raw[match.end() :].lstrip(" \t")
    if rest and not rest.startswith("#"):
        column = len(raw) - len(rest) + 1
        raise ConfigError(
            f"expected the end of the line after pragma @{match.group()}, "
            f"found {_describe(rest[0])}",
            path=path,
            line=number,
            column=column,
            hint="A pragma line contains only `@name`; put its entries on the lines below.",
        )
    return match.group()


def _read_quoted(raw: str, cursor: int, number: int, path: Path | None) -> tuple[_Token, int]:
    quote = raw[cursor]
    characters: list[str] = []
    position = cursor + 1
    while position < len(raw):
        character = raw[position]
        if character == "\\" and position + 1 < len(raw) and raw[position + 1] in (quote, "\\"):
            characters.append(raw[position + 1])
            position += 2
            continue
        if character == quote:
            text = "".join(characters)
            return _Token(text, text, cursor + 1), position + 1
        characters.append(character)
        position += 1

    raise ConfigError(
        f"unterminated string: expected a closing {quote} on the same line",
        path=path,
        line=number,
        column=cursor + 1,
        hint="Quoted strings cannot span lines.",
    )


def _read_unquoted(raw: str, cursor: int, typed: bool) -> tuple[_Token, int]:
    end = cursor
    while end < len(raw) and _is_unquoted(raw[end]):
        end += 1
    text = raw[cursor:end]
    value = _scalar(text) if typed else text
    return _Token(value, text, cursor + 1), end


def _is_unquoted(character: str) -> bool:
    return character.isalnum() or character in _UNQUOTED_PUNCTUATION


def _scalar(text: str) -> Scalar:
    """Read an unquoted token as a boolean, an integer, a float or a string."""
    if text == "true":
        return True
    if text == "false":
        return False
    if _NUMBER.fullmatch(text):
        if _INTEGER.fullmatch(text):
            try:
                return int(text)
            except ValueError:
                # More digits than int() converts (sys.get_int_max_str_digits).
                return text
        number = float(text)
        if math.isfinite(number):
            return number
    return text


def _describe(character: str) -> str:
    if character.isprintable():
        return f"`{character}`"
    return f"U+{ord(character):04X}"


def _unexpected_indentation(path: Path | None, line: _Line) -> ConfigError:
    return _error(
        path,
        line,
        line.column,
        "unexpected indentation",
        "Only a line with a single value (the name of a vector or map) "
        "can have lines indented under it.",
    )


def _error(path: Path | None, line: _Line, column: int, message: str, hint: str) -> ConfigError:
    return ConfigError(message, path=path, line=line.number, column=column, hint=hint)
