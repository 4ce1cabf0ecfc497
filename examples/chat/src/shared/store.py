"""The chat's connection list, in an SQLite file every handler process can open.

Handlers share no memory, so a deployed app would keep this list in
DynamoDB; here an SQLite file in the system's temporary directory plays
that part, one file per emulator port.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import urllib.error
import urllib.parse
import urllib.request


def _database_path() -> str:
    port = json.loads(os.environ["ARC_SANDBOX"])["ports"]["http"]
    return os.path.join(tempfile.gettempdir(), f"{os.environ['ARC_APP_NAME']}-{port}.sqlite3")


def connect() -> sqlite3.Connection:
    db = sqlite3.connect(_database_path(), timeout=5, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS members (id TEXT PRIMARY KEY, name TEXT NOT NULL)")
    return db


def add(connection_id: str, name: str) -> None:
    with connect() as db:
        db.execute("INSERT OR REPLACE INTO members VALUES (?, ?)", (connection_id, name))


def remove(connection_id: str) -> str | None:
    with connect() as db:
        row = db.execute("SELECT name FROM members WHERE id = ?", (connection_id,)).fetchone()
        db.execute("DELETE FROM members WHERE id = ?", (connection_id,))
    return row[0] if row else None


def name_of(connection_id: str) -> str | None:
    with connect() as db:
        row = db.execute("SELECT name FROM members WHERE id = ?", (connection_id,)).fetchone()
    return row[0] if row else None


def members() -> list[tuple[str, str]]:
    with connect() as db:
        return list(db.execute("SELECT id, name FROM members ORDER BY name"))


def post(connection_id: str, message: dict[str, object]) -> bool:
    """Send `message` to one connection through the management API; False if it is gone."""
    endpoint = os.environ["AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"]
    url = f"{endpoint}/@connections/{urllib.parse.quote(connection_id, safe='')}"
    request = urllib.request.Request(url, data=json.dumps(message).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5):
            return True
    except urllib.error.HTTPError as error:
        if error.code == 410:
            return False
        raise


def broadcast(message: dict[str, object]) -> None:
    """Send `message` to every member, forgetting the ones that are gone."""
    for connection_id, _ in members():
        if not post(connection_id, message):
            remove(connection_id)
