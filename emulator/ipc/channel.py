"""A typed message channel over one stream connection."""

from __future__ import annotations

import asyncio
import socket

from emulator.ipc.framing import FrameError, encode_frame, read_frame
from emulator.ipc.messages import MESSAGE_TYPES, Message


class Channel:
    """Sends and receives `Message` objects over a connected stream socket."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, sock: socket.socket) -> Channel:
        # The default 64 KiB stream limit only bounds readline(); frames are
        # read with readexactly(), so the limit does not cap a frame's size.
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        return cls(reader, writer)

    def send(self, message: Message) -> None:
        """Queue one message; raise FrameError if it cannot be framed."""
        self.writer.write(encode_frame(message.kind, message.to_body()))

    async def drain(self) -> None:
        await self.writer.drain()

    async def receive(self) -> Message | None:
        """Return the next message, or None at a clean end of stream.

        Raises FrameError (or its TruncatedFrameError) when the stream is
        broken or carries a message of the wrong shape.
        """
        frame = await read_frame(self.reader)
        if frame is None:
            return None
        kind, body = frame
        try:
            return MESSAGE_TYPES[kind].from_body(body)
        except TypeError as error:
            raise FrameError(f"invalid {kind.name} message: {error}") from None

    def close(self) -> None:
        self.writer.close()

    @property
    def closing(self) -> bool:
        return self.writer.is_closing()
