"""Length-prefixed msgpack frames over a stream (a Unix domain socket).

Byte layout of one frame, all integers big-endian::

    0      2         3        4                8
    +------+---------+--------+----------------+---------------------+
    | "AW" | version | kind   | body length N  | body: N bytes of    |
    | 2 B  | 1 B = 1 | 1 B    | 4 B unsigned   | msgpack (a map)     |
    +------+---------+--------+----------------+---------------------+

`kind` is a `FrameKind` value and names the message type, so a reader can
reject a frame it does not know before decoding the body. The body is
limited to `MAX_BODY_BYTES`: Lambda's 6 MB payload limit plus room for the
other fields of the message. Version 1 is the only version; a peer that
receives another version or a wrong magic closes the stream, because
nothing after a bad header can be trusted to be a frame boundary.
"""

from __future__ import annotations

import asyncio
import enum
import struct
from typing import Any

import msgpack

MAGIC = b"AW"
VERSION = 1
HEADER = struct.Struct(">2sBBI")
MAX_BODY_BYTES = 8 * 1024 * 1024


class FrameKind(enum.IntEnum):
    HELLO = 1
    INVOKE = 2
    RESULT = 3
    LOG = 4
    SHUTDOWN = 5
    CONFIGURE = 6
    STATUS = 7


class FrameError(Exception):
    """The stream does not contain valid frames; the connection is unusable."""


class TruncatedFrameError(FrameError):
    """The stream ended in the middle of a frame (the peer died or was killed)."""


def encode_frame(kind: FrameKind, body: dict[str, Any]) -> bytes:
    """Return the bytes of one frame; raise FrameError if the body is too large."""
    payload: bytes = msgpack.packb(body, use_bin_type=True)
    if len(payload) > MAX_BODY_BYTES:
        raise FrameError(f"frame body of {len(payload)} bytes exceeds {MAX_BODY_BYTES} bytes")
    return HEADER.pack(MAGIC, VERSION, kind, len(payload)) + payload


def decode_header(header: bytes) -> tuple[FrameKind, int]:
    """Return the kind and body length of a frame header; raise FrameError if invalid."""
    magic, version, kind, length = HEADER.unpack(header)
    if magic != MAGIC:
        raise FrameError(f"bad frame magic {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise FrameError(f"unsupported frame version {version}, expected {VERSION}")
    if length > MAX_BODY_BYTES:
        raise FrameError(f"frame body of {length} bytes exceeds {MAX_BODY_BYTES} bytes")
    try:
        return FrameKind(kind), length
    except ValueError:
        raise FrameError(f"unknown frame kind {kind}") from None


async def read_frame(reader: asyncio.StreamReader) -> tuple[FrameKind, dict[str, Any]] | None:
    """Read one frame; return None at a clean end of stream between frames.

    Raises TruncatedFrameError when the stream ends inside a frame and
    FrameError for a malformed one.
    """
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as error:
        if not error.partial:
            return None
        raise TruncatedFrameError(
            f"stream ended after {len(error.partial)} of {HEADER.size} header bytes"
        ) from None
    kind, length = decode_header(header)
    try:
        payload = await reader.readexactly(length)
    except asyncio.IncompleteReadError as error:
        raise TruncatedFrameError(
            f"stream ended after {len(error.partial)} of {length} body bytes"
        ) from None
    try:
        body = msgpack.unpackb(payload, raw=False)
    except (ValueError, msgpack.UnpackException) as error:
        raise FrameError(f"invalid msgpack body in {kind.name} frame: {error}") from None
    if not isinstance(body, dict):
        raise FrameError(f"{kind.name} frame body is {type(body).__name__}, expected a map")
    return kind, body
