"""Errors the emulator reports to its user instead of a traceback."""

from __future__ import annotations

from pathlib import Path


class EmulatorError(Exception):
    """An error that stops the emulator with a message for the user."""


class ConfigError(EmulatorError):
    """An invalid or malformed project file, with the place and the fix.

    `str()` gives `path:line:column: message` followed by the hint on its own
    line, so editors and terminals can jump to the place.
    """

    def __init__(
        self,
        message: str,
        *,
        path: Path | None = None,
        line: int | None = None,
        column: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.column = column
        self.hint = hint

    def __str__(self) -> str:
        place = ""
        if self.path is not None:
            place = str(self.path)
            if self.line is not None:
                place += f":{self.line}"
                if self.column is not None:
                    place += f":{self.column}"
            place += ": "
        text = place + self.message
        if self.hint:
            text += f"\n  {self.hint}"
        return text
