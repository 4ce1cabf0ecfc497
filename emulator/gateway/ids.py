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


def _random_text(alphabet: str, length: int) -> str:
    # One read of random bytes for the whole id: secrets.choice() per
    # character costs a system call each, on every event. Rejecting bytes
    # past the largest multiple of the alphabet's size keeps the
    # characters uniform.
    limit = 256 - 256 % len(alphabet)
    characters: list[str] = []
    while len(characters) < length:
        characters.extend(
            alphabet[byte % len(alphabet)]
            for byte in secrets.token_bytes(length * 2)
            if byte < limit
        )
    return "".join(characters[:length])


def new_connection_id() -> str:
    return _random_text(_ID_ALPHABET, 15) + "="


def new_request_id() -> str:
    """Return a new `requestId`, which is also the `extendedRequestId` of the event."""
    return _random_text(_ID_ALPHABET, 15) + "="


def new_message_id() -> str:
    return _random_text(_ID_ALPHABET, 15) + "="


def new_api_id() -> str:
    """Return an API id: 10 lowercase letters and digits, like `a1b2c3d4e5`."""
    return _random_text(_API_ID_ALPHABET, 10)
