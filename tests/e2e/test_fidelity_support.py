"""Misbehaving handlers and checks shared by the fidelity tests.

This module contains no tests. Its name starts with `test_fidelity_` so
that it sits beside the test files that import it.

`PY_MISBEHAVING` and `NODE_MISBEHAVING` read a JSON body such as
`{"do": "exit", "status": 3, "tag": "t1"}` and misbehave as asked. Before
they misbehave they print a line `tree tag=<tag> request=<id> pids=<pids>`
with the Lambda request id and the pids of the runtime and of every child
they started, so that a test can check that the whole tree is gone
afterwards. A body without `do` gets a normal reply: a route response with
the runtime's pid, the Lambda request id, the connection id, and the epoch
times at which the handler started and ended.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

import aiohttp
import psutil

from tests.e2e.test_exec_support import LogCapture, receive_json, wait_gone

# The actions of the handlers below (`do`):
#   alloc        allocate `mb` MiB, hold them for `hold` seconds, then reply
#   child-alloc  start a child that allocates `mb` MiB and sleeps (Python only)
#   exit         exit the runtime with status `status`
#   sigkill      send SIGKILL to the runtime
#   big-response reply with a body of `mb` MiB
#   sleep        sleep `seconds`, then reply
#   stubborn     start `children` children that ignore SIGTERM, then sleep
#                `seconds` (0: reply at once, leaving them running)
#   post         post `count` messages of `kib` KiB each to the connection
#                through the management API; print and reply with the statuses
PY_MISBEHAVING = """
import json, os, signal, subprocess, sys, time, urllib.error, urllib.parse, urllib.request

# Ignores SIGTERM, waits until its parent reads "ready", then sleeps.
STUBBORN_CHILD = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(120)"
)
ALLOCATING_CHILD = "import sys, time; block = b'x' * (int(sys.argv[1]) << 20); time.sleep(60)"


def print_tree(request, context, children):
    pids = ",".join(str(pid) for pid in [os.getpid(), *(child.pid for child in children)])
    print(f"tree tag={request.get('tag')} request={context.aws_request_id} pids={pids}")


def start_stubborn_child():
    child = subprocess.Popen([sys.executable, "-c", STUBBORN_CHILD], stdout=subprocess.PIPE)
    # Once it printed "ready", its SIGTERM handler is in place.
    child.stdout.readline()
    return child


def post_to_connection(event, request):
    endpoint = os.environ["AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"]
    connection_id = urllib.parse.quote(event["requestContext"]["connectionId"], safe="")
    url = f"{endpoint}/@connections/{connection_id}"
    data = b"x" * (request["kib"] * 1024)
    statuses, error_types = [], []
    for _ in range(request["count"]):
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=data)) as response:
                statuses.append(response.status)
        except urllib.error.HTTPError as error:
            statuses.append(error.code)
            error_types.append(error.headers.get("x-amzn-ErrorType"))
    return {"statuses": statuses, "errorTypes": sorted(set(error_types))}


def handler(event, context):
    try:
        request = json.loads(event.get("body") or "")
    except ValueError:
        request = {}
    if not isinstance(request, dict):
        request = {}
    action = request.get("do")
    reply = {
        "pid": os.getpid(),
        "requestId": context.aws_request_id,
        "connectionId": event["requestContext"]["connectionId"],
        "started": time.time(),
    }
    if action == "alloc":
        print_tree(request, context, [])
        block = b"x" * (request["mb"] << 20)
        time.sleep(request.get("hold", 0))
        reply["allocated"] = len(block)
    elif action == "child-alloc":
        child = subprocess.Popen([sys.executable, "-c", ALLOCATING_CHILD, str(request["mb"])])
        print_tree(request, context, [child])
        time.sleep(60)
    elif action == "exit":
        print_tree(request, context, [])
        os._exit(request["status"])
    elif action == "sigkill":
        print_tree(request, context, [])
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "big-response":
        print_tree(request, context, [])
        return {"statusCode": 200, "body": "x" * (request["mb"] << 20)}
    elif action == "sleep":
        print_tree(request, context, [])
        time.sleep(request["seconds"])
    elif action == "stubborn":
        children = [start_stubborn_child() for _ in range(request.get("children", 1))]
        print_tree(request, context, children)
        if request.get("then") == "alloc":
            block = b"x" * (request["mb"] << 20)
        time.sleep(request.get("seconds", 0))
    elif action == "post":
        reply.update(post_to_connection(event, request))
        # The client of this test does not read, so the log carries the result.
        print(f"posted {json.dumps(reply)}")
    reply["ended"] = time.time()
    return {"statusCode": 200, "body": json.dumps(reply)}
"""

# Put before PY_MISBEHAVING: the runtime process itself then ignores SIGTERM.
PY_IGNORES_SIGTERM = """
import signal
signal.signal(signal.SIGTERM, signal.SIG_IGN)
"""

NODE_MISBEHAVING = """
exports.handler = async (event, context) => {
  let request = {};
  try {
    request = JSON.parse(event.body || '') || {};
  } catch (error) {
    request = {};
  }
  const reply = {
    pid: process.pid,
    requestId: context.awsRequestId,
    connectionId: event.requestContext.connectionId,
  };
  if (request.do === 'alloc') {
    console.log(`tree tag=${request.tag} request=${context.awsRequestId} pids=${process.pid}`);
    // Filled, so that every page is touched and resident.
    const blocks = [];
    for (let allocated = 0; allocated < request.mb; allocated += 10) {
      blocks.push(Buffer.alloc(10 * 1024 * 1024, 1));
    }
    await new Promise((resolve) => setTimeout(resolve, (request.hold || 0) * 1000));
    reply.allocated = blocks.reduce((total, block) => total + block.length, 0);
  }
  return { statusCode: 200, body: JSON.stringify(reply) };
};
"""

TREE_PATTERN = r"tree tag={tag} request=(?P<request_id>\S+) pids=(?P<pids>[\d,]+)"


@dataclass(frozen=True)
class Tree:
    """The pids a misbehaving invocation printed (the runtime's first), and its request id.

    `processes` contains those still running when the line was read: a
    runtime that exits on purpose may be gone by then.
    """

    request_id: str
    runtime_pid: int
    pids: frozenset[int]
    processes: list[psutil.Process]


async def wait_for_tree(logs: LogCapture, route: str, tag: str) -> Tree:
    """Wait for the `tree` line of the invocation tagged `tag` and look its processes up."""
    pattern = TREE_PATTERN.format(tag=re.escape(tag))
    match = re.search(pattern, await logs.wait_for_line(route, pattern))
    assert match is not None
    pids = [int(pid) for pid in match["pids"].split(",")]
    processes = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            processes.append(psutil.Process(pid))
    return Tree(match["request_id"], pids[0], frozenset(pids), processes)


async def send_and_receive(ws: aiohttp.ClientWebSocketResponse[bool], text: str) -> dict[str, Any]:
    await ws.send_str(text)
    reply: dict[str, Any] = await receive_json(ws)
    return reply


def misbehave(do: str, tag: str, *, route: str | None = None, **arguments: Any) -> str:
    """Return the message body that requests the action `do` from the handler.

    `route` selects a custom route (`{"action": route}`); without it the
    message goes to `default`.
    """
    body: dict[str, Any] = {"do": do, "tag": tag, **arguments}
    if route is not None:
        body["action"] = route
    return json.dumps(body)


async def assert_recovered(
    ws: aiohttp.ClientWebSocketResponse[bool],
    connection_id: str,
    tree: Tree,
    *,
    route: str | None = None,
) -> dict[str, Any]:
    """Check that the tree is gone and that the same connection is served again.

    `route` is the custom route that the next message goes to (the
    default route when None). Returns the reply to that message.
    """
    await wait_gone(tree.processes)
    body = json.dumps({"action": route}) if route else "next"
    reply = await send_and_receive(ws, body)
    assert not ws.closed
    assert reply["connectionId"] == connection_id
    assert reply["pid"] not in tree.pids
    return reply


def emulator_lines(logs: LogCapture, text: str, level: int = logging.DEBUG) -> list[str]:
    """Return the emulator's own messages (not function output) that contain `text`."""
    return [
        record.getMessage()
        for record in logs.records
        if getattr(record, "route", None) is None
        and record.levelno >= level
        and text in record.getMessage()
    ]


def function_lines_with(logs: LogCapture, route: str, *texts: str) -> list[str]:
    """Return the function lines of `route` that contain every one of `texts`."""
    return [line for line in logs.function_lines(route) if all(text in line for text in texts)]


def assert_logged_once(
    logs: LogCapture, route: str, lambda_request_id: str, frame: dict[str, Any], cause: str
) -> None:
    """Check that the emulator logged the failure in one line naming route, ids and cause."""
    lines = emulator_lines(logs, lambda_request_id)
    assert len(lines) == 1, lines
    route_key = f"${route}" if route == "default" else route
    assert f"route {route_key} " in lines[0]
    assert frame["requestId"] in lines[0]
    assert cause in lines[0]
    errors = emulator_lines(logs, frame["requestId"], logging.ERROR)
    assert errors == lines
