"""`python -m emulator invoke ROUTE`: events per route, response, logs and exit status."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.api.conftest import ECHO_HANDLER, ProjectFactory, run_cli

RAISING_HANDLER = """
def handler(event, context):
    print("checking the room")
    raise ValueError("no such room")
"""

SLOW_HANDLER = """
import time

def handler(event, context):
    print("sleeping")
    time.sleep(10)
    return {"statusCode": 200}
"""

LOG_LINE = re.compile(r"\[(?P<route>[^\]]+)\] (?P<line>.*)")


def function_lines(stderr: str, route: str) -> list[str]:
    """Return the lines the CLI logged for `route`, without the `[route] ` prefix."""
    lines = []
    for text in stderr.splitlines():
        match = LOG_LINE.fullmatch(text)
        if match and match["route"] == route:
            lines.append(match["line"])
    return lines


def echoed_event(stdout: str) -> dict[str, object]:
    response = json.loads(stdout)
    assert response["statusCode"] == 200
    event: dict[str, object] = json.loads(response["body"])
    return event


def test_message_route_success(make_project: ProjectFactory) -> None:
    root = make_project({"send": ECHO_HANDLER})

    completed = run_cli("invoke", "send", root)

    assert completed.returncode == 0, completed.stderr
    event = echoed_event(completed.stdout)
    assert event["body"] == '{"action": "send"}'
    context = event["requestContext"]
    assert isinstance(context, dict)
    assert context["routeKey"] == "send"
    assert context["eventType"] == "MESSAGE"
    assert context["messageId"]
    lines = function_lines(completed.stderr, "send")
    assert len(lines) == 4
    start = re.fullmatch(r"START RequestId: (\S+) Version: \$LATEST", lines[0])
    assert start is not None
    assert lines[1] == "got send"
    assert lines[2] == f"END RequestId: {start[1]}"
    assert lines[3].startswith(f"REPORT RequestId: {start[1]}\tDuration: ")
    assert "\tInit Duration: " in lines[3]


def test_body_option(make_project: ProjectFactory) -> None:
    root = make_project({"default": ECHO_HANDLER})

    completed = run_cli("invoke", "$default", root, "--body", "not json")

    assert completed.returncode == 0, completed.stderr
    event = echoed_event(completed.stdout)
    assert event["body"] == "not json"
    context = event["requestContext"]
    assert isinstance(context, dict)
    assert context["routeKey"] == "$default"


def test_connect_event_has_headers(make_project: ProjectFactory) -> None:
    root = make_project({"connect": ECHO_HANDLER})

    completed = run_cli("invoke", "connect", root)

    assert completed.returncode == 0, completed.stderr
    event = echoed_event(completed.stdout)
    headers = event["headers"]
    assert isinstance(headers, dict)
    assert headers["Upgrade"] == "websocket"
    assert headers["Sec-WebSocket-Version"] == "13"
    assert headers["Sec-WebSocket-Key"]
    assert headers["Host"].startswith("127.0.0.1:")
    assert event["multiValueHeaders"] == {name: [value] for name, value in headers.items()}
    assert "body" not in event
    context = event["requestContext"]
    assert isinstance(context, dict)
    assert context["routeKey"] == "$connect"
    assert context["eventType"] == "CONNECT"
    assert context["connectionId"]


def test_disconnect_event_has_close_code(make_project: ProjectFactory) -> None:
    root = make_project({"disconnect": ECHO_HANDLER})

    completed = run_cli("invoke", "$disconnect", root)

    assert completed.returncode == 0, completed.stderr
    event = echoed_event(completed.stdout)
    context = event["requestContext"]
    assert isinstance(context, dict)
    assert context["eventType"] == "DISCONNECT"
    assert context["disconnectStatusCode"] == 1000
    assert "disconnectReason" in context
    assert "body" not in event


def test_event_file(make_project: ProjectFactory, tmp_path: Path) -> None:
    root = make_project({"send": ECHO_HANDLER})
    given = {"requestContext": {"routeKey": "send", "connectionId": "given="}, "body": "x"}
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(given))

    from_file = run_cli("invoke", "send", root, "--event", event_file)
    from_stdin = run_cli("invoke", "send", root, "--event", "-", stdin=json.dumps(given))

    assert from_file.returncode == 0, from_file.stderr
    assert echoed_event(from_file.stdout) == given
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert echoed_event(from_stdin.stdout) == given


def test_raised_error_fails(make_project: ProjectFactory) -> None:
    root = make_project({"send": RAISING_HANDLER})

    completed = run_cli("invoke", "send", root)

    assert completed.returncode == 1
    assert json.loads(completed.stdout) == {
        "errorType": "ValueError",
        "errorMessage": "no such room",
    }
    lines = function_lines(completed.stderr, "send")
    assert lines[0].startswith("START RequestId: ")
    assert "checking the room" in lines
    assert any("no such room" in line for line in lines[1:-2])
    assert lines[-2].startswith("END RequestId: ")
    assert lines[-1].startswith("REPORT RequestId: ")


def test_timeout_fails(make_project: ProjectFactory) -> None:
    root = make_project({"send": SLOW_HANDLER}, config={"send": {"timeout": 1}})

    completed = run_cli("invoke", "send", root)

    assert completed.returncode == 1
    assert json.loads(completed.stdout)["errorType"] == "Sandbox.Timedout"
    lines = function_lines(completed.stderr, "send")
    assert "sleeping" in lines
    assert any(line.endswith("Task timed out after 1.00 seconds") for line in lines)
    assert lines[-1].startswith("REPORT RequestId: ")
    assert "\tStatus: timeout" in lines[-1]


def test_unknown_route(make_project: ProjectFactory) -> None:
    root = make_project({"send": ECHO_HANDLER})

    completed = run_cli("invoke", "sned", root)

    assert completed.returncode == 2
    assert "route sned not found" in completed.stderr
    assert "$connect, $default, $disconnect, send" in completed.stderr
    assert completed.stdout == ""


@pytest.mark.parametrize("route", ["connect", "$disconnect"])
def test_body_rejected_for_connect_and_disconnect(make_project: ProjectFactory, route: str) -> None:
    root = make_project({})

    completed = run_cli("invoke", route, root, "--body", "hi")

    assert completed.returncode == 2
    assert "--body applies to message routes" in completed.stderr


def test_body_and_event_exclusive(make_project: ProjectFactory, tmp_path: Path) -> None:
    root = make_project({"send": ECHO_HANDLER})

    completed = run_cli("invoke", "send", root, "--body", "x", "--event", tmp_path / "e.json")

    assert completed.returncode == 2
    assert "not allowed with argument" in completed.stderr


def test_invalid_event_file(make_project: ProjectFactory, tmp_path: Path) -> None:
    root = make_project({"send": ECHO_HANDLER})
    event_file = tmp_path / "event.json"
    event_file.write_text("[1, 2]")

    completed = run_cli("invoke", "send", root, "--event", event_file)

    assert completed.returncode == 2
    assert "is not a JSON object" in completed.stderr
