"""A WebSocket client that checks an emulator from another container or the host.

It requests the health endpoint, opens a WebSocket connection, sends each
MESSAGE as a text frame and prints the first frame that arrives after it.
It exits with 1 when the health check fails, the handshake is rejected or
a reply does not arrive within the timeout, so a Compose service or a CI
step can run it as a smoke test:

    python3 ws_client.py --url 'ws://emulator:3333/?name=tests' '{"action": "send", "text": "hi"}'

It uses aiohttp, which the emulator's image already contains.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import aiohttp
from yarl import URL

DEFAULT_URL = "ws://emulator:3333/"
DEFAULT_TIMEOUT = 10.0


class CheckError(Exception):
    """A failed step, with a message that names the URL and what went wrong."""


def health_url(websocket_url: URL) -> URL:
    """Return the health endpoint on the same host and port as `websocket_url`."""
    scheme = "https" if websocket_url.scheme == "wss" else "http"
    return websocket_url.with_scheme(scheme).with_path("/_emulator/health").with_query(None)


async def check_health(session: aiohttp.ClientSession, url: URL) -> None:
    try:
        async with session.get(url) as response:
            if response.status != 200:
                raise CheckError(f"{url} returned HTTP {response.status}")
            body = await response.json()
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
        raise CheckError(f"request to {url} failed: {error!r}") from error
    if not isinstance(body, dict) or body.get("status") != "ok":
        raise CheckError(f"{url} returned {body!r} instead of a status of 'ok'")
    print(f"health: {body}")


async def exchange(
    session: aiohttp.ClientSession, url: URL, messages: Sequence[str], timeout: float
) -> None:
    """Connect to `url`, then send each message and print the next frame received."""
    try:
        websocket = await session.ws_connect(url)
    except (aiohttp.ClientError, asyncio.TimeoutError) as error:
        raise CheckError(f"WebSocket handshake with {url} failed: {error!r}") from error
    print(f"connected to {url}")

    async with websocket:
        for message in messages:
            await websocket.send_str(message)
            print(f"> {message}")
            try:
                frame = await websocket.receive(timeout=timeout)
            except asyncio.TimeoutError as error:
                raise CheckError(f"no reply from {url} within {timeout:g} s") from error
            if frame.type == aiohttp.WSMsgType.TEXT:
                print(f"< {frame.data}")
            elif frame.type == aiohttp.WSMsgType.BINARY:
                print(f"< {len(frame.data)} bytes (binary)")
            else:
                raise CheckError(
                    f"{url} closed the connection (code {websocket.close_code}) instead of replying"
                )


async def run(url: URL, messages: Sequence[str], timeout: float) -> None:
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        await check_health(session, health_url(url))
        await exchange(session, url, messages, timeout)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Check an emulator: its health endpoint, a WebSocket handshake, "
        "and one reply to each message sent."
    )
    parser.add_argument(
        "--url",
        default=DEFAULT_URL,
        help=f"WebSocket URL, with any query string $connect needs (default: {DEFAULT_URL})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="time for each request and each reply (default: %(default)g)",
    )
    parser.add_argument("messages", nargs="*", metavar="MESSAGE", help="a text frame to send")
    args = parser.parse_args(argv)

    url = URL(args.url)
    if url.scheme not in ("ws", "wss"):
        parser.error(f"invalid URL {args.url!r}: expected a ws:// or wss:// URL")
    try:
        asyncio.run(run(url, args.messages, args.timeout))
    except CheckError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
