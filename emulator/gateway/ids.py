"""Identifiers shaped like the ones API Gateway issues.

A connection id, request id and message id on AWS are 16 characters: the
base64 form of 11 random bytes, so 15 characters and one `=` of padding
(for example `BFHPhfCWIAMCKlQ=`). These use only letters and digits before
the `=`, because clients put ids into URL paths and some split the path on
`/` before escaping it, so a `/` or `+` would break them.
"""

from __future__ import annotations

import secrets
import string

_ID_ALPHABET = string.ascii_letters + string.digits
_API_ID_ALPHABET = string.ascii_lowercase + string.digits


def _translation(alphabet: str) -> tuple[bytes, bytes]:
    """Return a `bytes.translate()` table from random bytes to `alphabet`, and the bytes to drop.

    Bytes past the largest multiple of the alphabet's size are dropped, so
    every character is equally likely.
    """
    limit = 256 - 256 % len(alphabet)
    table = bytes(ord(alphabet[byte % len(alphabet)]) for byte in range(limit))
    return table + bytes(256 - limit), bytes(range(limit, 256))


_ID_TABLE = _translation(_ID_ALPHABET)
_API_ID_TABLE = _translation(_API_ID_ALPHABET)


def _random_text(table: tuple[bytes, bytes], length: int) -> str:
    # One read of random bytes, mapped to characters in C: ids are drawn
    # for every event, so this is on the hot path.
    characters = b""
    while len(characters) < length:
        characters += secrets.token_bytes(length * 2).translate(*table)
    return characters[:length].decode("ascii")


def new_connection_id() -> str:
    return _random_text(_ID_TABLE, 15) + "="


def new_request_id() -> str:
    """Return a new `requestId`, which is also the `extendedRequestId` of the event."""
    return _random_text(_ID_TABLE, 15) + "="


def new_message_id() -> str:
    return _random_text(_ID_TABLE, 15) + "="


def new_api_id() -> str:
    """Return an API id: 10 lowercase letters and digits, like `a1b2c3d4e5`."""
    return _random_text(_API_ID_TABLE, 10)
