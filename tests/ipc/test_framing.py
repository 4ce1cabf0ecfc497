from __future__ import annotations

import asyncio
import socket

import msgpack
import pytest

from emulator.ipc.channel import Channel
from emulator.ipc.framing import (
    HEADER,
    MAX_BODY_BYTES,
    FrameError,
    FrameKind,
    TruncatedFrameError,
    encode_frame,
    read_frame,
)
from emulator.ipc.messages import Invoke, Log, Result, WorkerConfig


def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_frame_round_trip() -> None:
    frame = encode_frame(FrameKind.INVOKE, {"id": 7, "event": b"{}"})
    reader = _reader(frame + frame)
    assert await read_frame(reader) == (FrameKind.INVOKE, {"id": 7, "event": b"{}"})
    assert await read_frame(reader) == (FrameKind.INVOKE, {"id": 7, "event": b"{}"})
    assert await read_frame(reader) is None


async def test_header_layout() -> None:
    frame = encode_frame(FrameKind.LOG, {"lines": []})
    assert frame[:2] == b"AW"
    assert frame[2] == 1
    assert frame[3] == FrameKind.LOG
    assert int.from_bytes(frame[4:8], "big") == len(frame) - HEADER.size


async def test_clean_end_of_stream() -> None:
    assert await read_frame(_reader(b"")) is None


@pytest.mark.parametrize("cut", [1, HEADER.size - 1, HEADER.size, HEADER.size + 3])
async def test_truncated_frame_detected(cut: int) -> None:
    frame = encode_frame(FrameKind.RESULT, {"id": 1, "payload": b"x" * 10})
    with pytest.raises(TruncatedFrameError):
        await read_frame(_reader(frame[:cut]))


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"XX" + bytes([1, 2]) + (0).to_bytes(4, "big"), "magic"),
        (b"AW" + bytes([2, 2]) + (0).to_bytes(4, "big"), "version"),
        (b"AW" + bytes([1, 99]) + (0).to_bytes(4, "big"), "kind"),
        (b"AW" + bytes([1, 2]) + (MAX_BODY_BYTES + 1).to_bytes(4, "big"), "exceeds"),
    ],
)
async def test_bad_header_rejected(header: bytes, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        await read_frame(_reader(header))


async def test_body_must_be_map() -> None:
    body = msgpack.packb([1, 2])
    frame = HEADER.pack(b"AW", 1, FrameKind.LOG, len(body)) + body
    with pytest.raises(FrameError, match="expected a map"):
        await read_frame(_reader(frame))


def test_oversized_body_rejected_on_encode() -> None:
    with pytest.raises(FrameError, match="exceeds"):
        encode_frame(FrameKind.INVOKE, {"event": b"x" * (MAX_BODY_BYTES + 1)})


async def test_channel_over_socket_pair() -> None:
    left_sock, right_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    left = await Channel.open(left_sock)
    right = await Channel.open(right_sock)
    config = WorkerConfig(
        route="default",
        function_name="app-ws-default",
        function_arn="arn:aws:lambda:us-west-2:012345678912:function:app-ws-default",
        region="us-west-2",
        src="/tmp/src",
        runtime="python3.11",
        handler_setting=None,
        command=["python3", "bootstrap.py"],
        timeout=5,
        memory=1152,
        concurrency=10,
        queue_size=100,
        idle_environment_timeout=300.0,
        prewarm=True,
        environment={"A": "b"},
    )
    messages = [
        config,
        Invoke(id=1, event=b'{"a":1}'),
        Result(id=1, request_id="r", payload=b"null", duration_ms=1.5),
        Log(lines=["START", "x"], request_id="r"),
    ]
    for message in messages:
        left.send(message)
    await left.drain()
    for message in messages:
        assert await right.receive() == message
    left.close()
    assert await right.receive() is None
    right.close()


async def test_channel_reports_peer_killed_mid_frame() -> None:
    left_sock, right_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    right = await Channel.open(right_sock)
    frame = encode_frame(FrameKind.INVOKE, {"id": 1, "event": b"x" * 1000})
    left_sock.sendall(frame[:500])
    left_sock.close()
    with pytest.raises(TruncatedFrameError):
        await right.receive()
    right.close()
