"""The chat example app (examples/chat), run whole with real clients.

Its handlers keep the member list in an SQLite file named after the port
in the system's temporary directory; the test removes that file when done.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedOK, InvalidStatus

from emulator.app import Emulator
from emulator.config import Options
from tests.e2e.conftest import REPO_ROOT, node_available

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not node_available(), reason="node is not installed"),
]

CHAT = REPO_ROOT / "examples" / "chat"
USER_AGENT = "chat-test/1.0"
HELP_ACTIONS = ["send {text}", "whois", "leave"]


def _descendants() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


@pytest.fixture
async def chat() -> AsyncIterator[Emulator]:
    before = _descendants()
    emulator = Emulator(CHAT, Options(port=0, internal_port=0))
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()
        database = Path(tempfile.gettempdir()) / f"chat-{emulator.port}.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
    alive = [pid for pid in _descendants() - before if psutil.pid_exists(pid)]
    assert not alive, f"processes left behind after stop: {alive}"


def join(emulator: Emulator, query: str) -> Any:
    return connect(f"{emulator.url}/{query}", user_agent_header=USER_AGENT, open_timeout=10)


async def receive_json(ws: ClientConnection, timeout: float = 15) -> Any:
    frame = await asyncio.wait_for(ws.recv(), timeout)
    return json.loads(frame)


def parse_time(text: str) -> datetime:
    # Python 3.10's fromisoformat does not accept the `Z` suffix.
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_chat_session(chat: Emulator) -> None:
    async with join(chat, "?name=ada") as ada, join(chat, "?name=bob") as bob:
        # send: everyone hears it, the sender too.
        await ada.send(json.dumps({"action": "send", "text": "hello, bob ✓"}))
        message = {"event": "message", "from": "ada", "text": "hello, bob ✓"}
        assert await receive_json(ada) == message
        assert await receive_json(bob) == message

        # whois: what the management API knows of the asking connection.
        await bob.send(json.dumps({"action": "whois"}))
        whois = await receive_json(bob)
        assert whois["event"] == "whois"
        assert re.fullmatch(r"[A-Za-z0-9]{15}=", whois["connectionId"])
        assert whois["identity"] == {"sourceIp": "127.0.0.1", "userAgent": USER_AGENT}
        assert parse_time(whois["connectedAt"]) <= parse_time(whois["lastActiveAt"])

        # Anything that is not a known action gets the help from `$default`.
        for text in ("hello?", json.dumps({"action": "dance"}), "[1, 2]"):
            await ada.send(text)
            help_reply = await receive_json(ada)
            assert help_reply == {"event": "help", "actions": HELP_ACTIONS, "received": text}

        # leave: bye, a server-side close with 1000, and the others hear it.
        await bob.send(json.dumps({"action": "leave"}))
        assert await receive_json(bob) == {"event": "bye"}
        with pytest.raises(ConnectionClosedOK) as closed:
            await asyncio.wait_for(bob.recv(), 15)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1000
        assert await receive_json(ada) == {"event": "left", "name": "bob"}


async def test_chat_rejects_nameless_connection(chat: Emulator) -> None:
    for query in ("", "?name=", "?name=%20%20", "?nick=ada"):
        with pytest.raises(InvalidStatus) as rejected:
            async with join(chat, query):
                pass
        assert rejected.value.response.status_code == 400, f"query {query!r}"
