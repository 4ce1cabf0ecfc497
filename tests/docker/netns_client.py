"""A client that the network tests run inside a network namespace (`ip netns exec`).

A test cannot move its own process into another namespace, so it runs this
script there and reads one JSON object per line from its stdout:

    netns_client.py request METHOD URL [BODY]
        one HTTP request: {"status", "error_type", "body"}
    netns_client.py websocket URL
        a WebSocket connection: {"event": "open"}, then each line read from
        stdin is sent as a text frame, and each frame received is printed as
        {"event": "frame", "data"}; {"event": "close", "code"} when it closes
"""

from __future__ import annotations

import json
import sys
import threading
import urllib.error
import urllib.request

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

# Seconds for each request and for the WebSocket handshake.
TIMEOUT = 10.0


def emit(record: dict[str, object]) -> None:
    print(json.dumps(record), flush=True)


def request(method: str, url: str, body: str | None) -> None:
    data = body.encode() if body is not None else None
    prepared = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(prepared, timeout=TIMEOUT) as response:
            status, headers, content = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, headers, content = error.code, error.headers, error.read()
    emit(
        {
            "status": status,
            "error_type": headers.get("x-amzn-ErrorType"),
            "body": content.decode(errors="replace"),
        }
    )


def _send_stdin_lines(websocket: ClientConnection) -> None:
    for line in sys.stdin:
        try:
            websocket.send(line.rstrip("\n"))
        except ConnectionClosed:
            return
    # The test closed stdin: it is done with this connection.
    websocket.close()


def websocket(url: str) -> None:
    with connect(url, open_timeout=TIMEOUT) as connection:
        emit({"event": "open"})
        threading.Thread(target=_send_stdin_lines, args=(connection,), daemon=True).start()
        try:
            for frame in connection:
                emit({"event": "frame", "data": frame if isinstance(frame, str) else frame.hex()})
        except ConnectionClosed:
            pass
        emit({"event": "close", "code": connection.close_code})


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "request":
        request(argv[1], argv[2], argv[3] if len(argv) > 3 else None)
        return 0
    if len(argv) == 2 and argv[0] == "websocket":
        websocket(argv[1])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
