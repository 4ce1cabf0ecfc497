"""Lambda runtime identifiers: the accepted forms, the short aliases and their families."""

from __future__ import annotations

import re
from typing import Literal

RuntimeFamily = Literal["nodejs", "python", "ruby", "deno", "provided"]

DEFAULT_RUNTIME = "nodejs22.x"

# The newest runtime of each language that Lambda offers, which the short
# aliases select. Source: the "Lambda runtimes" page of the AWS Lambda
# Developer Guide (nodejs24.x and python3.14 were added in November 2025,
# ruby3.4 earlier in 2025).
# NOTE: update this table when Lambda adds a runtime; nothing else reads it.
NEWEST_RUNTIMES: dict[RuntimeFamily, str] = {
    "nodejs": "nodejs24.x",
    "python": "python3.14",
    "ruby": "ruby3.4",
}

# Short names that Architect accepts in place of a runtime identifier (its
# `lambda-runtimes` package lists the same aliases). They are matched without
# regard to case, as Architect lowercases them before the lookup.
RUNTIME_ALIASES: dict[str, RuntimeFamily] = {
    "node": "nodejs",
    "nodejs": "nodejs",
    "node.js": "nodejs",
    "python": "python",
    "py": "python",
    "ruby": "ruby",
    "rb": "ruby",
}

_RUNTIME_PATTERNS: tuple[tuple[RuntimeFamily, re.Pattern[str]], ...] = (
    ("nodejs", re.compile(r"nodejs\d+\.x")),
    ("python", re.compile(r"python3\.\d+")),
    ("ruby", re.compile(r"ruby\d+\.\d+")),
    ("deno", re.compile(r"deno")),
    ("provided", re.compile(r"provided(\.al2|\.al2023)?")),
)

VALID_RUNTIMES_TEXT = (
    "nodejsNN.x, python3.NN, rubyN.N, deno, provided, provided.al2, provided.al2023, "
    "or one of the aliases " + ", ".join(sorted(RUNTIME_ALIASES))
)


def canonical_runtime(value: str) -> str | None:
    """Return the Lambda runtime identifier that `value` names, or None if it names none.

    Identifiers are case-sensitive, as Lambda's are, but aliases are not.
    """
    family = RUNTIME_ALIASES.get(value.lower())
    if family is not None:
        return NEWEST_RUNTIMES[family]
    for _, pattern in _RUNTIME_PATTERNS:
        if pattern.fullmatch(value):
            return value
    return None


def runtime_family(runtime: str) -> RuntimeFamily:
    """Return the language family of a canonical runtime identifier.

    Raises ValueError for a string that `canonical_runtime` would reject.
    """
    for family, pattern in _RUNTIME_PATTERNS:
        if pattern.fullmatch(runtime):
            return family
    raise ValueError(f"unknown Lambda runtime {runtime!r}")
