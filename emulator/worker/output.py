"""Line-oriented reading of a runtime's combined stdout and stderr pipe.

The pipe is read with non-blocking `os.read` from a loop reader callback,
not through an asyncio transport, so that `drain()` can take everything
the runtime wrote before it posted its response, at that exact moment.
That keeps a function's output between its START and END lines.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

# CloudWatch Logs takes events of up to 256 KB; longer lines are split.
MAX_LINE_BYTES = 256 * 1024
_READ_SIZE = 65536
# The maximum bytes one read pass takes from the pipe, and the maximum size
# of one batch of lines, so that one LOG frame stays far below the IPC
# frame limit.
MAX_READ_BYTES = 1024 * 1024


class OutputReader:
    """Splits the bytes of one pipe into lines and hands them to `on_lines`."""

    def __init__(
        self,
        fd: int,
        on_lines: Callable[[list[str]], None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._fd = fd
        self._on_lines = on_lines
        self._loop = loop
        self._partial = b""
        self.closed = loop.create_future()
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._read_available)

    def _read_available(self) -> None:
        chunks: list[bytes] = []
        eof = False
        # A runtime that writes without pause would keep the pipe readable
        # forever: stop after MAX_READ_BYTES, and the loop calls back later.
        for _ in range(MAX_READ_BYTES // _READ_SIZE):
            try:
                chunk = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                break
            except OSError:
                eof = True
                break
            if not chunk:
                eof = True
                break
            chunks.append(chunk)
        if chunks:
            self._split(b"".join(chunks))
        if eof:
            self.flush()
            self._close()

    def _split(self, data: bytes) -> None:
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        while len(self._partial) > MAX_LINE_BYTES:
            complete.append(self._partial[:MAX_LINE_BYTES])
            self._partial = self._partial[MAX_LINE_BYTES:]
        if complete:
            self._emit(complete)

    def _emit(self, raw_lines: list[bytes]) -> None:
        batch: list[bytes] = []
        size = 0
        for line in raw_lines:
            if batch and size + len(line) > MAX_READ_BYTES:
                self._emit_batch(batch)
                batch, size = [], 0
            batch.append(line)
            size += len(line)
        if batch:
            self._emit_batch(batch)

    def _emit_batch(self, raw_lines: list[bytes]) -> None:
        # Lambda's runtime clients join a multi-line record (a traceback)
        # with "\r" to keep it one CloudWatch event; a terminal would print
        # its lines over each other, so each becomes a line of its own.
        lines = [
            part.decode("utf-8", "replace")
            for line in raw_lines
            for part in line.rstrip(b"\r").split(b"\r")
        ]
        self._on_lines(lines)

    def drain(self) -> None:
        """Read what the pipe contains now and emit it, including a final partial line."""
        if self._fd >= 0:
            self._read_available()
        self.flush()

    def flush(self) -> None:
        if self._partial:
            partial, self._partial = self._partial, b""
            self._emit([partial])

    def _close(self) -> None:
        if self._fd < 0:
            return
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        self.drain()
        self._close()
