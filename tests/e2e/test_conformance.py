"""Runtime conformance: every runtime behaves the same through the whole emulator.

Each test runs once per runtime (Python, Node.js as CommonJS and as an ES
module, Ruby, Deno, and a `provided` bootstrap written in Python that
speaks the Runtime API itself). The handler at `$default` reads a command
from the message body and replies through a route response:

    context   the fields of its `context` object
    raise     raises ConformanceError("conformance failure")
    sleep     sleeps past its 1-second timeout
    exit      ends its process with exit status 3
    (other)   echoes the body, its route and its pid

A runtime whose interpreter is not installed fails its tests with the
emulator's message naming the missing program.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from emulator.app import Emulator
from emulator.errors import EmulatorError
from emulator.logs import function_lines
from tests.e2e.conftest import EmulatorFactory, Project

pytestmark = pytest.mark.timeout(90)

# Seconds to wait for a reply or a log line; generous for a loaded CI machine.
WAIT_TIMEOUT = 20.0
MEMORY_MB = 256
TIMEOUT_SECONDS = 1

PYTHON_HANDLER = """
import json, os, time


class ConformanceError(Exception):
    pass


def handler(event, context):
    body = event.get("body")
    if body == "raise":
        raise ConformanceError("conformance failure")
    if body == "sleep":
        time.sleep(30)
    if body == "exit":
        os._exit(3)
    if body == "context":
        reply = {
            "requestId": context.aws_request_id,
            "functionName": context.function_name,
            "memoryLimitInMB": context.memory_limit_in_mb,
            "logGroupName": context.log_group_name,
            "logStreamName": context.log_stream_name,
            "invokedFunctionArn": context.invoked_function_arn,
            "remainingMs": context.get_remaining_time_in_millis(),
        }
    else:
        reply = {"body": body, "route": event["requestContext"]["routeKey"], "pid": os.getpid()}
    return {"statusCode": 200, "body": json.dumps(reply)}
"""

# The body of a Node.js or Deno handler; `exit` and `pid` differ between them.
JS_HANDLER_BODY = """
  const body = event.body;
  if (body === 'raise') throw new ConformanceError('conformance failure');
  if (body === 'sleep') await new Promise((resolve) => setTimeout(resolve, 30000));
  if (body === 'exit') EXIT(3);
  const reply = body === 'context'
    ? {
        requestId: context.awsRequestId,
        functionName: context.functionName,
        memoryLimitInMB: context.memoryLimitInMB,
        logGroupName: context.logGroupName,
        logStreamName: context.logStreamName,
        invokedFunctionArn: context.invokedFunctionArn,
        remainingMs: context.getRemainingTimeInMillis(),
      }
    : { body, route: event.requestContext.routeKey, pid: PID };
  return { statusCode: 200, body: JSON.stringify(reply) };
"""

JS_ERROR_CLASS = """
class ConformanceError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ConformanceError';
  }
}
"""

NODE_BODY = JS_HANDLER_BODY.replace("EXIT", "process.exit").replace("PID", "process.pid")
NODE_CJS_HANDLER = (
    JS_ERROR_CLASS + f"exports.handler = async (event, context) => {{{NODE_BODY}}};\n"
)
NODE_ESM_HANDLER = (
    JS_ERROR_CLASS + f"export const handler = async (event, context) => {{{NODE_BODY}}};\n"
)

DENO_BODY = JS_HANDLER_BODY.replace("EXIT", "Deno.exit").replace("PID", "Deno.pid")
DENO_HANDLER = JS_ERROR_CLASS.replace("constructor(message)", "constructor(message: string)") + (
    "// deno-lint-ignore no-explicit-any\n"
    f"export async function handler(event: any, context: any) {{{DENO_BODY}}}\n"
)

RUBY_HANDLER = """
require 'json'

class ConformanceError < StandardError; end

def handler(event:, context:)
  body = event['body']
  raise ConformanceError, 'conformance failure' if body == 'raise'
  sleep 30 if body == 'sleep'
  exit!(3) if body == 'exit'
  reply =
    if body == 'context'
      {
        requestId: context.aws_request_id,
        functionName: context.function_name,
        memoryLimitInMB: context.memory_limit_in_mb,
        logGroupName: context.log_group_name,
        logStreamName: context.log_stream_name,
        invokedFunctionArn: context.invoked_function_arn,
        remainingMs: context.get_remaining_time_in_millis
      }
    else
      { body: body, route: event['requestContext']['routeKey'], pid: Process.pid }
    end
  { statusCode: 200, body: reply.to_json }
end
"""

# A custom runtime: the Runtime API loop written by hand, standard library only.
PROVIDED_BOOTSTRAP = """#!/usr/bin/env python3
import http.client, json, os, sys, time

host, _, port = os.environ["AWS_LAMBDA_RUNTIME_API"].rpartition(":")
connection = http.client.HTTPConnection(host, int(port))
PREFIX = "/2018-06-01/runtime/invocation/"


def call(method, path, body=None, headers=None):
    connection.request(method, path, body, headers or {})
    response = connection.getresponse()
    return response, response.read()


while True:
    response, raw = call("GET", PREFIX + "next")
    request_id = response.getheader("Lambda-Runtime-Aws-Request-Id")
    deadline_ms = int(response.getheader("Lambda-Runtime-Deadline-Ms"))
    event = json.loads(raw)
    body = event.get("body")
    if body == "raise":
        error = {"errorMessage": "conformance failure", "errorType": "ConformanceError"}
        print(json.dumps(error), flush=True)
        headers = {"Lambda-Runtime-Function-Error-Type": "Function.ConformanceError"}
        call("POST", PREFIX + request_id + "/error", json.dumps(error), headers)
        continue
    if body == "sleep":
        time.sleep(30)
    if body == "exit":
        sys.exit(3)
    if body == "context":
        reply = {
            "requestId": request_id,
            "functionName": os.environ["AWS_LAMBDA_FUNCTION_NAME"],
            "memoryLimitInMB": os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"],
            "logGroupName": os.environ["AWS_LAMBDA_LOG_GROUP_NAME"],
            "logStreamName": os.environ["AWS_LAMBDA_LOG_STREAM_NAME"],
            "invokedFunctionArn": response.getheader("Lambda-Runtime-Invoked-Function-Arn"),
            "remainingMs": deadline_ms - int(time.time() * 1000),
        }
    else:
        reply = {"body": body, "route": event["requestContext"]["routeKey"], "pid": os.getpid()}
    result = json.dumps({"statusCode": 200, "body": json.dumps(reply)})
    call("POST", PREFIX + request_id + "/response", result)
"""


@dataclass(frozen=True)
class RuntimeCase:
    """One runtime under test: its handler file and the log lines its errors produce."""

    runtime: str
    filename: str
    source: str
    # Regular expressions that the function's log must match after `raise`.
    error_log: tuple[str, ...]


NODE_ERROR_LOG = (
    r"\tERROR\tInvoke Error \t\{\"errorType\":\"ConformanceError\","
    r"\"errorMessage\":\"conformance failure\"",
)

CASES = {
    "python": RuntimeCase(
        "python3.11",
        "lambda.py",
        PYTHON_HANDLER,
        (r"^\[ERROR\] ConformanceError: conformance failure$", r"^Traceback"),
    ),
    "node-cjs": RuntimeCase("nodejs20.x", "index.js", NODE_CJS_HANDLER, NODE_ERROR_LOG),
    "node-esm": RuntimeCase("nodejs20.x", "index.mjs", NODE_ESM_HANDLER, NODE_ERROR_LOG),
    "ruby": RuntimeCase(
        "ruby3.3",
        "lambda.rb",
        RUBY_HANDLER,
        (
            r"^Error raised from handler method$",
            r'^  "errorMessage": "conformance failure",$',
            r'^  "errorType": "Function<ConformanceError>",$',
            r'^  "stackTrace": \[$',
        ),
    ),
    "deno": RuntimeCase("deno", "mod.ts", DENO_HANDLER, NODE_ERROR_LOG),
    "provided": RuntimeCase(
        "provided.al2023",
        "bootstrap",
        PROVIDED_BOOTSTRAP,
        (r'^\{"errorMessage": "conformance failure", "errorType": "ConformanceError"\}$',),
    ),
}

runtimes = pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))


# -- the function log ----------------------------------------------------------------


class FunctionLog(logging.Handler):
    """The lines that the emulator attributes to functions, with a way to await one."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self._loop = loop
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "route", None) == "default":
            self.lines.extend(function_lines(record))
            self._loop.call_soon_threadsafe(self._changed.set)

    async def wait_for(self, pattern: str, after: int = 0) -> str:
        """Return the first line from index `after` on that matches the regular expression."""
        compiled = re.compile(pattern)

        async def find() -> str:
            while True:
                self._changed.clear()
                for line in self.lines[after:]:
                    if compiled.search(line):
                        return line
                await self._changed.wait()

        try:
            return await asyncio.wait_for(find(), WAIT_TIMEOUT)
        except asyncio.TimeoutError:
            shown = "\n".join(self.lines[after:])
            raise AssertionError(f"no function log line matches {pattern!r}:\n{shown}") from None


@contextlib.contextmanager
def function_log() -> Iterator[FunctionLog]:
    """Collect function log lines; the level is set before the emulator starts its workers."""
    capture = FunctionLog(asyncio.get_running_loop())
    logger = logging.getLogger("emulator")
    previous = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(capture)
    try:
        yield capture
    finally:
        logger.removeHandler(capture)
        logger.setLevel(previous)


# -- fixtures ------------------------------------------------------------------------


class Conversation:
    """A WebSocket client that sends a command and awaits the one reply it gets."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse[bool]) -> None:
        self.ws = ws

    async def ask(self, command: str) -> dict[str, Any]:
        await self.ws.send_str(command)
        message = await self.ws.receive(timeout=WAIT_TIMEOUT)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        reply = json.loads(message.data)
        assert isinstance(reply, dict)
        return reply


@dataclass
class Running:
    """A started emulator, its function log and a connected client."""

    emulator: Emulator
    log: FunctionLog
    client: Conversation

    @property
    def function_name(self) -> str:
        return f"{self.emulator.app.name}-ws-default"


@pytest.fixture
async def running(
    project: Project, start_emulator: EmulatorFactory, case: RuntimeCase
) -> AsyncIterator[Running]:
    """The emulator with the runtime case's handler at `$default`, and a connected client."""
    directory = project.handler(
        "default",
        case.source,
        runtime=case.runtime,
        filename=case.filename,
        config={"timeout": TIMEOUT_SECONDS, "memory": MEMORY_MB},
    )
    if case.filename == "bootstrap":
        (directory / "bootstrap").chmod(0o755)

    with function_log() as log:
        try:
            emulator = await start_emulator(route_responses=True)
        except EmulatorError as error:
            pytest.fail(f"runtime {case.runtime} cannot run on this machine: {error}")
        async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
            yield Running(emulator, log, Conversation(ws))


def assert_error_frame(reply: dict[str, Any]) -> None:
    assert reply["message"] == "Internal server error"
    assert re.fullmatch(r"[A-Za-z0-9]{15}=", reply["connectionId"])
    assert reply["requestId"]


# -- the suite -----------------------------------------------------------------------


@runtimes
async def test_event_in_response_out(case: RuntimeCase, running: Running) -> None:
    first = await running.client.ask("h\u00e9llo, runtime")
    second = await running.client.ask('{"action": "no-such-route"}')

    assert first["body"] == "h\u00e9llo, runtime"
    assert first["route"] == "$default"
    assert second["body"] == '{"action": "no-such-route"}'
    # One warm environment served both.
    assert first["pid"] == second["pid"]


@runtimes
async def test_context_fields(case: RuntimeCase, running: Running) -> None:
    context = await running.client.ask("context")

    request_id = context["requestId"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", request_id)
    await running.log.wait_for(rf"^START RequestId: {request_id} Version: \$LATEST$")
    name = running.function_name
    assert context["functionName"] == name
    assert str(context["memoryLimitInMB"]) == str(MEMORY_MB)
    assert context["logGroupName"] == f"/aws/lambda/{name}"
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}", context["logStreamName"])
    assert context["invokedFunctionArn"] == f"arn:aws:lambda:us-west-2:012345678912:function:{name}"
    assert 0 < context["remainingMs"] <= TIMEOUT_SECONDS * 1000


@runtimes
async def test_handler_error(case: RuntimeCase, running: Running) -> None:
    assert_error_frame(await running.client.ask("raise"))

    for pattern in case.error_log:
        await running.log.wait_for(pattern)
    # The environment that reported the error serves the next message.
    assert (await running.client.ask("after the error"))["body"] == "after the error"


@runtimes
async def test_timeout_then_recovery(case: RuntimeCase, running: Running) -> None:
    before = await running.client.ask("before")

    assert_error_frame(await running.client.ask("sleep"))
    await running.log.wait_for(r"Task timed out after 1\.00 seconds$")
    await running.log.wait_for(r"\tStatus: timeout")

    after = await running.client.ask("after")
    assert after["body"] == "after"
    # The timed-out environment was killed, so a new one served this.
    assert after["pid"] != before["pid"]


@runtimes
async def test_crash_then_recovery(case: RuntimeCase, running: Running) -> None:
    before = await running.client.ask("before")
    start = len(running.log.lines)

    assert_error_frame(await running.client.ask("exit"))
    await running.log.wait_for(r"Error: Runtime exited with error: exit status 3$", start)
    await running.log.wait_for(r"^Runtime\.ExitError$", start)

    after = await running.client.ask("after")
    assert after["body"] == "after"
    assert after["pid"] != before["pid"]


# -- provided runtimes without a usable bootstrap ------------------------------------


@pytest.mark.parametrize(
    ("state", "advice"),
    [
        ("missing", r"Couldn't find valid bootstrap\(s\): \[.*/bootstrap\]\. .*create it"),
        ("not-executable", r"/bootstrap is not executable"),
    ],
)
async def test_provided_bootstrap_unusable(
    project: Project, start_emulator: EmulatorFactory, state: str, advice: str
) -> None:
    directory = project.handler(
        "default", PROVIDED_BOOTSTRAP, runtime="provided.al2", filename="bootstrap"
    )
    bootstrap = directory / "bootstrap"
    if state == "missing":
        bootstrap.unlink()
    else:
        bootstrap.chmod(0o644)

    with function_log() as log:
        emulator = await start_emulator(route_responses=True)
        async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
            client = Conversation(ws)
            assert_error_frame(await client.ask("hello"))

            line = await log.wait_for(r" Runtime\.InvalidEntrypoint: ")
            assert re.search(advice, line), line
            assert f"chmod +x {bootstrap}" in line

            # Every invocation fails the same way until the file is fixed.
            assert_error_frame(await client.ask("again"))
