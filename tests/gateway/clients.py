"""A WebSocket client over a plain TCP stream, for tests at the frame level.

Real client libraries refuse to send what these tests need: oversized or
split frames, binary frames to a text API, or a connection dropped without
a close frame.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


@dataclass
class HandshakeResponse:
    status: int
    headers: dict[str, str]
    body: bytes = b""


def frame_header(opcode: int, length: int, *, fin: bool = True, mask: bytes = b"") -> bytes:
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if mask else 0
    if length < 126:
        header = struct.pack("!BB", first, mask_bit | length)
    elif length < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    return header + mask


def client_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """Encode one masked frame, as clients must send them."""
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    return frame_header(opcode, len(payload), fin=fin, mask=mask) + masked


@dataclass
class RawWebSocket:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    handshake: HandshakeResponse
    _closed: bool = field(default=False)

    @classmethod
    async def open(
        cls,
        port: int,
        path: str = "/",
        headers: Iterable[tuple[str, str]] = (),
        receive_buffer: int | None = None,
        early: bytes = b"",
    ) -> RawWebSocket:
        """Send an upgrade request and read the response (any status).

        `early` is sent right behind the request, before the response.
        """
        if receive_buffer is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock)

        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        lines += [f"{name}: {value}" for name, value in headers]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + early)
        await writer.drain()

        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode().split("\r\n")
        status = int(status_line.split()[1])
        response_headers: dict[str, str] = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                response_headers[name.strip().lower()] = value.strip()
        response = HandshakeResponse(status, response_headers)
        if status != 101:
            length = int(response_headers.get("content-length", "0"))
            response.body = await reader.readexactly(length)
        return cls(reader, writer, response)

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def send(self, opcode: int, payload: bytes, *, fin: bool = True) -> None:
        self.writer.write(client_frame(opcode, payload, fin=fin))
        await self.writer.drain()

    async def send_text(self, text: str) -> None:
        await self.send(OP_TEXT, text.encode())

    async def read_frame(self) -> tuple[int, bytes]:
        """Read one frame from the server (servers never mask)."""
        first, second = await self.reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await self.reader.readexactly(length)

    async def read_close(self) -> tuple[int | None, str]:
        """Skip data frames until the server's close frame; return its code and reason."""
        while True:
            opcode, payload = await self.read_frame()
            if opcode == OP_CLOSE:
                if len(payload) < 2:
                    return None, ""
                (code,) = struct.unpack("!H", payload[:2])
                return code, payload[2:].decode()

    async def close(self, code: int | None = 1000, reason: str = "") -> None:
        """Send a close frame (no status code when `code` is None) and wait for EOF."""
        payload = b"" if code is None else struct.pack("!H", code) + reason.encode()
        await self.send(OP_CLOSE, payload)
        await self.read_close()
        await self.reader.read()
        self.drop()

    async def close_reply(self, code: int) -> None:
        """Reply to the server's close frame and wait for it to end the connection."""
        await self.send(OP_CLOSE, struct.pack("!H", code))
        await self.reader.read()
        self.drop()

    async def answer_close(self) -> tuple[int | None, str]:
        """Wait for the server's close frame and reply; return its code and reason."""
        code, reason = await self.read_close()
        await self.close_reply(code or 1000)
        return code, reason

    def drop(self) -> None:
        """End the TCP connection without a close frame."""
        if not self._closed:
            self._closed = True
            self.writer.transport.abort()
