"""The handlers that `init` writes, run by a real emulator and reached by a real client."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from emulator import Emulator
from emulator.errors import EmulatorError
from emulator.manifest import canonical_runtime
from emulator.records import InvocationRecord
from emulator.runtimes import RuntimeResolver
from emulator.scaffold import init_project
from emulator.testing import WebSocketClient

# Seconds to wait for a reply or a record; cold starts of Deno take the longest.
WAIT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Case:
    runtime: str
    handler_file: str
    package_json: dict[str, Any] | None = None
    # Programs the handlers need besides the runtime's interpreter.
    needs: tuple[str, ...] = ()


CASES = {
    "python": Case("python3.11", "lambda.py"),
    "node-esm": Case("nodejs20.x", "index.mjs"),
    "node-cjs": Case("nodejs20.x", "index.js", package_json={"name": "app", "private": True}),
    "ruby": Case("ruby", "lambda.rb"),
    "deno": Case("deno", "mod.ts"),
    "provided": Case("provided.al2023", "bootstrap", needs=("sh", "curl", "awk")),
}


def skip_unless_runnable(case: Case, root: Path) -> None:
    for program in case.needs:
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed")
    try:
        RuntimeResolver().command(canonical_runtime(case.runtime) or case.runtime, root)
    except EmulatorError as error:
        pytest.skip(str(error))


def logged_event(record: InvocationRecord) -> dict[str, Any]:
    """Return the event that a starter handler logged as JSON on one line of its output.

    Runtimes may put a timestamp, the request id and a level before it.
    """
    for line in record.output:
        start = line.find("{")
        if start < 0:
            continue
        try:
            event = json.loads(line[start:])
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and "requestContext" in event:
            return event
    raise AssertionError(f"no event in the output of {record.route}: {record.output}")


def descendants() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


@pytest.mark.parametrize("name", sorted(CASES))
async def test_generated_handlers_answer(tmp_path: Path, name: str) -> None:
    case = CASES[name]
    root = tmp_path / "app"
    root.mkdir()
    (root / "app.arc").write_text("@app\ngenerated\n\n@ws\nsend\n")
    if case.package_json is not None:
        (root / "package.json").write_text(json.dumps(case.package_json))
    skip_unless_runnable(case, root)
    written = init_project(root, case.runtime)
    handlers = [path.name for path in written if path.name != "config.arc"]
    assert handlers == [case.handler_file] * 4
    before = descendants()

    async with Emulator(
        root, port=0, internal_port=0, watch=False, route_responses=True, ipv6_loopback=False
    ) as emulator:
        client = WebSocketClient(emulator.url, timeout=WAIT_TIMEOUT)
        async with client.connect() as websocket:
            assert await websocket.request({"action": "send"}) == {"route": "send"}
            await websocket.send_text("hello")
            assert await websocket.receive_json() == {"route": "$default"}

        records = {
            route_key: await emulator.next_record(route_key, timeout=WAIT_TIMEOUT)
            for route_key in ("$connect", "send", "$default", "$disconnect")
        }

    for route_key, record in records.items():
        assert record.ok, f"{route_key}: {record.error_type} {record.error_message}"
        event = logged_event(record)
        assert event["requestContext"]["routeKey"] == route_key
    assert records["$connect"].response() == {"statusCode": 200}
    assert records["$disconnect"].response() == {"statusCode": 200}
    assert logged_event(records["send"])["body"] == '{"action": "send"}'
    assert logged_event(records["$default"])["body"] == "hello"
    assert "disconnectStatusCode" in logged_event(records["$disconnect"])["requestContext"]
    left = [pid for pid in descendants() - before if psutil.pid_exists(pid)]
    assert not left, f"processes left after stop: {left}"
