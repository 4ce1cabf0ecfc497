"""The `.arc` tokenizer and parser: every construct, every error, and arbitrary input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.errors import ConfigError
from emulator.manifest.arc import Position, parse_arc, parse_arc_document

PATH = Path("/project/app.arc")

PARSE_CASES: list[tuple[str, str, dict[str, list[Any]]]] = [
    (
        "reference example: ws routes",
        "@ws\nhello\ncustom\n  src src/ws/custom-path\n",
        {"ws": ["hello", {"custom": {"src": "src/ws/custom-path"}}]},
    ),
    (
        "reference example: aws settings",
        "@aws\ntimeout 30\nlayers\n  arn:a\n  arn:b\n",
        {"aws": [["timeout", 30], {"layers": ["arn:a", "arn:b"]}]},
    ),
    (
        "scalars",
        "@p\nname\n123\n-4\n1.5\ntrue\nfalse\n-\n1e3\n0x10\n007\n-.5\n1.\n1_000\n",
        {"p": ["name", 123, -4, 1.5, True, False, "-", 1000.0, "0x10", 7, -0.5, 1.0, "1_000"]},
    ),
    (
        "words that only start like booleans",
        "@p\ntruth\nfalsey\nTrue\n",
        {"p": ["truth", "falsey", "True"]},
    ),
    (
        "arrays",
        "@http\nget /foo\npost /bar/:id 1 true\n",
        {"http": [["get", "/foo"], ["post", "/bar/:id", 1, True]]},
    ),
    (
        "vector",
        "@p\nvec\n  one\n  2\n  true\n",
        {"p": [{"vec": ["one", 2, True]}]},
    ),
    (
        "map with scalar, array and vector values",
        "@p\nmap\n  key value\n  arr 1 two true\n  vec\n    one\n    2\n    false\n  last x\n",
        {
            "p": [
                {
                    "map": {
                        "key": "value",
                        "arr": [1, "two", True],
                        "vec": ["one", 2, False],
                        "last": "x",
                    }
                }
            ]
        },
    ),
    (
        "map opened by a four-space list",
        "@p\nmap\n  vec\n    a\n    b\n",
        {"p": [{"map": {"vec": ["a", "b"]}}]},
    ),
    (
        "entries after a map",
        "@p\nmap\n  k v\nnext\nan array\n",
        {"p": [{"map": {"k": "v"}}, "next", ["an", "array"]]},
    ),
    (
        "comments anywhere",
        "# top\n@p # after the pragma\nvalue # trailing\n# own line\n  # indented\nother#tight\n",
        {"p": ["value", "other"]},
    ),
    (
        "comment lines inside a map",
        "@p\nmap\n  a 1\n  # note\n\n  b 2\n",
        {"p": [{"map": {"a": 1, "b": 2}}]},
    ),
    (
        "quotes keep spaces and hashes",
        "@p\n\"a # b\" 'c#d' `e f`\n",
        {"p": [["a # b", "c#d", "e f"]]},
    ),
    (
        "quoted values stay strings",
        '@p\n"true" \'30\' "" `-1`\n',
        {"p": [["true", "30", "", "-1"]]},
    ),
    (
        "escapes inside quotes",
        "@p\n\"say \\\"hi\\\"\" 'C:\\\\dir' 'a\\b' `x\\`y`\n",
        {"p": [['say "hi"', "C:\\dir", "a\\b", "x`y"]]},
    ),
    (
        "other quotes inside quotes",
        '@p\n"it\'s" \'say "hi"\'\n',
        {"p": [["it's", 'say "hi"']]},
    ),
    (
        "unquoted punctuation",
        "@p\n()/\\~-_.,:$*?&!%=+|^\n",
        {"p": ["()/\\~-_.,:$*?&!%=+|^"]},
    ),
    (
        "tabs count as two spaces",
        "@p\nmap\n\tkey value\n\tlist\n\t\tone\n\t  two\n",
        {"p": [{"map": {"key": "value", "list": ["one", "two"]}}]},
    ),
    (
        "crlf line endings",
        "@p\r\nmap\r\n  k v\r\n  l\r\n    x\r\nend\r\n",
        {"p": [{"map": {"k": "v", "l": ["x"]}}, "end"]},
    ),
    (
        "lone cr line endings",
        "@p\rmap\r  k v\r",
        {"p": [{"map": {"k": "v"}}]},
    ),
    (
        "pragmas without entries",
        "@a\n@b\nx\n@c\n",
        {"a": [], "b": ["x"], "c": []},
    ),
    (
        "pragma names with digits, dashes and underscores",
        "@my-pragma_2\nx\n",
        {"my-pragma_2": ["x"]},
    ),
    (
        "trailing spaces and tabs",
        "@p   \nvalue \t\nmap  \n  k  v  \n",
        {"p": ["value", {"map": {"k": "v"}}]},
    ),
    (
        "several spaces between values",
        "@p\na    b\t\tc\n",
        {"p": [["a", "b", "c"]]},
    ),
    (
        "unicode letters",
        "@p\ncafé naïve\n",
        {"p": [["café", "naïve"]]},
    ),
    (
        "byte order mark",
        "\ufeff@p\nx\n",
        {"p": ["x"]},
    ),
    (
        "numbers as vector and map names",
        "@p\n404\n  a\n500\n  k v\n",
        {"p": [{"404": ["a"]}, {"500": {"k": "v"}}]},
    ),
    (
        "no trailing newline",
        "@p\nmap\n  k v",
        {"p": [{"map": {"k": "v"}}]},
    ),
    (
        "empty text",
        "",
        {},
    ),
    (
        "integer too long to convert stays text",
        "@p\n" + "9" * 5000 + "\n",
        {"p": ["9" * 5000]},
    ),
    (
        "float overflow stays text",
        "@p\n1e999\n",
        {"p": ["1e999"]},
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [(text, expected) for _, text, expected in PARSE_CASES],
    ids=[name for name, _, _ in PARSE_CASES],
)
def test_parse_construct(text: str, expected: dict[str, list[Any]]) -> None:
    assert parse_arc(text, PATH) == expected


def test_parse_types_of_scalars() -> None:
    values = parse_arc("@p\n1\n1.0\ntrue\n'1'\n", PATH)["p"]

    assert type(values[0]) is int
    assert type(values[1]) is float
    assert type(values[2]) is bool
    assert type(values[3]) is str


def test_parse_untyped_keeps_text() -> None:
    text = "@env\ntesting\n  PORT 0080\n  FLAG true\n  RATIO 1.50\n  LIST 1 2\n"

    parsed = parse_arc(text, PATH, typed=False)

    assert parsed == {
        "env": [{"testing": {"PORT": "0080", "FLAG": "true", "RATIO": "1.50", "LIST": ["1", "2"]}}]
    }


def test_document_positions() -> None:
    text = "# comment\n@ws\nhello\n\ncustom\n  src dir\n  other x\n  \t\n@aws\n  \n007\n"

    document = parse_arc_document(text, PATH)

    assert document.pragma_positions == {"ws": Position(2, 1), "aws": Position(9, 1)}
    assert document.entry_positions["ws"] == [
        Position(3, 1, text="hello"),
        Position(5, 1, text="custom"),
    ]
    assert document.key_positions["ws"] == [
        {},
        {"src": Position(6, 3, text="src"), "other": Position(7, 3, text="other")},
    ]
    assert document.pragmas["aws"] == [7]
    assert document.entry_positions["aws"] == [Position(11, 1, text="007")]


ERROR_CASES: list[tuple[str, str, int, int, str]] = [
    ("content before the first pragma", "hello\n@app\n", 1, 1, "expected a pragma"),
    (
        "content after comments before the first pragma",
        "# c\n\n  x\n@app\n",
        3,
        3,
        "expected a pragma",
    ),
    ("pragma given twice", "@ws\nx\n@app\na\n@ws\n", 5, 1, "given twice (first on line 1)"),
    ("indented pragma", "@a\n  @b\n", 2, 3, "must start at the beginning"),
    ("pragma with a value", "@a b\n", 1, 4, "expected the end of the line after pragma @a"),
    ("pragma without a name", "@\n", 1, 2, "expected a pragma name"),
    ("pragma name with punctuation", "@a!\n", 1, 3, "expected the end of the line"),
    ("brace in a value", "@a\nfoo{bar}\n", 2, 4, "found `{`"),
    ("brace at the start of a line", "@a\n{x}\n", 2, 1, "expected a value, found `{`"),
    ("bracket after a space", "@a\nx [y]\n", 2, 3, "expected a value, found `[`"),
    ("control character", "@a\nx\x0by\n", 2, 2, "U+000B"),
    ("at sign inside a value", "@a\nuser@example.com\n", 2, 5, "found `@`"),
    ("at sign as a value", "@a\nx @b\n", 2, 3, "unexpected `@` after the start of the line"),
    ("unterminated double quote", '@a\nx "abc\n', 2, 3, "unterminated string"),
    ("unterminated backtick", "@a\n`abc\n", 2, 1, "expected a closing `"),
    ("quote escaped to the end", '@a\n"abc\\"\n', 2, 1, "unterminated string"),
    ("value glued to a closing quote", '@a\n"abc"def\n', 2, 6, "after `abc`"),
    ("quote inside an unquoted value", "@a\nit's\n", 2, 3, "after `it`"),
    ("indentation right after a pragma", "@a\n  x\n", 2, 3, "unexpected indentation"),
    ("indentation under an array", "@a\nget /\n  x\n", 3, 3, "unexpected indentation"),
    ("three spaces of indentation", "@a\nm\n   x\n", 3, 4, "found 3"),
    ("first indented line at four spaces", "@a\nm\n    x\n", 3, 5, "found four"),
    ("six spaces of indentation", "@a\nm\n  k\n      x\n", 4, 7, "found 6"),
    ("three tabs of indentation", "@a\nm\n\t\t\tx\n", 3, 4, "found 6"),
    ("map key without a value", "@a\nm\n  k v\n  alone\n", 4, 3, "key `alone` of `m` has no value"),
    ("map key with a value and a list", "@a\nm\n  k v\n    x\n", 4, 5, "already has a value"),
    ("two values in a map key's list", "@a\nm\n  k\n    x y\n", 4, 7, "one value per line"),
    ("map key given twice", "@a\nm\n  k 1\n  k 2\n", 4, 3, "given twice (first on line 3)"),
]


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_parse_error(text: str, line: int, column: int, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_arc(text, PATH)
    error = caught.value

    assert error.path == PATH
    assert error.line == line
    assert error.column == column
    assert message in error.message
    assert str(error).startswith(f"{PATH}:{line}:{column}: ")
    assert error.hint


# Characters that drive the tokenizer into every branch.
_ARC_ALPHABET = st.sampled_from(list("@#'\"`\\ \t\r\n-0123456789.aetrufls:/{}$\x0b\u00e9\ufeff"))
_ARC_LINES = st.lists(
    st.tuples(
        st.sampled_from(["", "  ", "    ", "\t", "   ", "@", "#"]),
        st.text(_ARC_ALPHABET, max_size=12),
    ).map("".join),
    max_size=12,
).map("\n".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.text(_ARC_ALPHABET, max_size=200), _ARC_LINES))
def test_parser_raises_only_config_error(text: str) -> None:
    try:
        parsed = parse_arc(text, PATH)
    except ConfigError as error:
        assert error.path == PATH
        assert error.line is not None
        assert error.column is not None
    else:
        assert isinstance(parsed, dict)
        for entries in parsed.values():
            assert isinstance(entries, list)
