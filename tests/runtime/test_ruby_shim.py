"""The Ruby runtime shim, run as a real `ruby` process against a real RuntimeApi.

These tests fail, naming the missing program, when Ruby is not installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

import pytest

from emulator.errors import EmulatorError
from emulator.runtimes import RuntimeResolver
from emulator.worker.runtime_api import RuntimeApi

from .helpers import (
    FUNCTION_ARN,
    FUNCTION_NAME,
    LOG_STREAM,
    MEMORY_MB,
    RuntimeProcess,
    init_failure,
    invoke,
    lambda_env,
    wait_init,
    write_files,
)

RUNTIME = "ruby3.3"

StartRuby = Callable[..., Awaitable[RuntimeProcess]]


def ruby_command(task_root: Path) -> list[str]:
    """Return the command the emulator runs for `ruby3.3`, or fail the test without Ruby."""
    try:
        return RuntimeResolver(os.environ.get("PATH")).command(RUNTIME, task_root)
    except EmulatorError as error:
        pytest.fail(f"Ruby is required for this test: {error}")


@pytest.fixture
async def start_ruby(runtime_api: RuntimeApi) -> AsyncIterator[StartRuby]:
    """Start the Ruby shim: `await start_ruby(task_root, handler, extra_env=...)`."""
    processes: list[RuntimeProcess] = []

    async def start(
        task_root: Path, handler: str, *, extra_env: Mapping[str, str] | None = None
    ) -> RuntimeProcess:
        command = ruby_command(task_root)
        env = lambda_env(runtime_api.port, task_root, handler, runtime=RUNTIME, extra=extra_env)
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=task_root,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        processes.append(RuntimeProcess(process))
        return processes[-1]

    try:
        yield start
    finally:
        for process in processes:
            await process.kill()


ECHO = """
def handler(event:, context:)
  { 'event' => event, 'pid' => Process.pid }
end
"""


async def echo(api: RuntimeApi, event: object) -> dict[str, object]:
    outcome = await invoke(api, json.dumps(event).encode())
    assert outcome.error_type is None, outcome
    assert outcome.response is not None
    document = json.loads(outcome.response)
    assert isinstance(document, dict)
    return document


# -- handlers ------------------------------------------------------------------------


async def test_event_in_response_out(
    runtime_api: RuntimeApi, start_ruby: StartRuby, tmp_path: Path
) -> None:
    write_files(tmp_path, {"lambda.rb": ECHO})
    process = await start_ruby(tmp_path, "lambda.handler")
    await wait_init(runtime_api)

    event = {"text": "h\u00e9llo", "list": [1, 2, None], "nested": {"flag": True}}
    replies = [await echo(runtime_api, event) for _ in range(3)]

    assert [reply["event"] for reply in replies] == [event] * 3
    # One warm process serves every invocation.
    assert [reply["pid"] for reply in replies] == [process.pid] * 3


@pytest.mark.parametrize(
    ("files", "handler"),
    [
        ({"handler.rb": ECHO}, "handler.handler"),
        ({"lib/app.rb": ECHO}, "lib/app.handler"),
        ({"index.rb": "class Greeter\n  def self.greet(event:, context:)\n"
                      "    { 'event' => event }\n  end\nend\n"},
         "index.Greeter.greet"),
        ({"index.rb": "module Outer\n  class Inner\n    def self.call(event:, context:)\n"
                      "      { 'event' => event }\n    end\n  end\nend\n"},
         "index.Outer::Inner.call"),
        ({"lambda.rb": "def run(event)\n  { 'event' => event[:event] }\nend\n"},
         "lambda.run"),
    ],
    ids=["file-method", "subdirectory", "class-method", "namespaced-class", "positional-hash"],
)  # fmt: skip
async def test_handler_forms(
    runtime_api: RuntimeApi,
    start_ruby: StartRuby,
    tmp_path: Path,
    files: dict[str, str],
    handler: str,
) -> None:
    write_files(tmp_path, files)
    await start_ruby(tmp_path, handler)
    await wait_init(runtime_api)

    assert (await echo(runtime_api, "value"))["event"] == "value"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("nil", b"null"),
        ("'text'", b'"text"'),
        ("[1, 'two', { three: 3 }]", b'[1,"two",{"three":3}]'),
        ("StringIO.new('raw bytes')", b"raw bytes"),
    ],
    ids=["nil", "string", "array", "io"],
)
async def test_response_marshalling(
    runtime_api: RuntimeApi, start_ruby: StartRuby, tmp_path: Path, body: str, expected: bytes
) -> None:
    write_files(tmp_path, {"lambda.rb": f"def handler(event:, context:)\n  {body}\nend\n"})
    await start_ruby(tmp_path, "lambda.handler")
    await wait_init(runtime_api)

    assert (await invoke(runtime_api)).response == expected


async def test_context_fields(
    runtime_api: RuntimeApi, start_ruby: StartRuby, tmp_path: Path
) -> None:
    handler = """
def handler(event:, context:)
  {
    'aws_request_id' => context.aws_request_id,
    'function_name' => context.function_name,
    'function_version' => context.function_version,
    'invoked_function_arn' => context.invoked_function_arn,
    'memory_limit_in_mb' => context.memory_limit_in_mb,
    'log_group_name' => context.log_group_name,
    'log_stream_name' => context.log_stream_name,
    'remaining' => context.get_remaining_time_in_millis,
    'deadline_ms' => context.deadline_ms,
    'identity' => context.identity,
    'client_context' => context.client_context,
    'trace_id' => ENV['_X_AMZN_TRACE_ID'],
  }
end
"""
    write_files(tmp_path, {"lambda.rb": handler})
    await start_ruby(tmp_path, "lambda.handler")
    await wait_init(runtime_api)

    outcome = await invoke(
        runtime_api, request_id="ctx-request", timeout_ms=10_000, trace_id="Root=1-abc;Sampled=0"
    )

    assert outcome.response is not None
    context = json.loads(outcome.response)
    assert context["aws_request_id"] == "ctx-request"
    assert context["function_name"] == FUNCTION_NAME
    assert context["function_version"] == "$LATEST"
    assert context["invoked_function_arn"] == FUNCTION_ARN
    assert context["memory_limit_in_mb"] == str(MEMORY_MB)
    assert context["log_group_name"] == f"/aws/lambda/{FUNCTION_NAME}"
    assert context["log_stream_name"] == LOG_STREAM
    assert 5_000 < context["remaining"] <= 10_000
    assert isinstance(context["deadline_ms"], int)
    assert context["identity"] is None
    assert context["client_context"] is None
    assert context["trace_id"] == "Root=1-abc;Sampled=0"


async def test_proxy_settings_ignored(
    runtime_api: RuntimeApi, start_ruby: StartRuby, tmp_path: Path
) -> None:
    write_files(tmp_path, {"lambda.rb": ECHO})
    # Nothing listens on port 9 (discard), so a proxied request fails.
    proxy = {"HTTP_PROXY": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
    await start_ruby(tmp_path, "lambda.handler", extra_env=proxy)
    await wait_init(runtime_api)

    assert (await echo(runtime_api, "through"))["event"] == "through"


# -- errors --------------------------------------------------------------------------


async def test_handler_error_body(
    runtime_api: RuntimeApi, start_ruby: StartRuby, tmp_path: Path
) -> None:
    handler = """
class OrderError < StandardError; end

def handler(event:, context:)
  raise OrderError, 'no such order' if event == 'fail'
  'ok'
end
"""
    write_files(tmp_path, {"lambda.rb": handler})
    process = await start_ruby(tmp_path, "lambda.handler")
    await wait_init(runtime_api)

    outcome = await invoke(runtime_api, b'"fail"')

    assert outcome.response is None
    assert outcome.error_type == "Function<OrderError>"
    assert outcome.error_message == "no such order"
    assert outcome.error_body is not None
    body = json.loads(outcome.error_body)
    assert list(body) == ["errorMessage", "errorType", "stackTrace"]
    assert re.fullmatch(r".*/lambda\.rb:5:in .handler'", body["stackTrace"][0])
    assert not any("bootstrap.rb" in frame for frame in body["stackTrace"])

    # The official client logs a title line and the body as indented JSON.
    await process.wait_for_output("Error raised from handler method")
    await process.wait_for_output('"errorType": "Function<OrderError>"')

    # A StandardError leaves the environment warm.
    assert (await invoke(runtime_api, b'"again"')).response == b'"ok"'
    assert process.process.returncode is None


async def test_missing_method_ends_runtime(
    runtime_api: RuntimeApi, start_ruby: StartRuby, tmp_path: Path
) -> None:
    write_files(tmp_path, {"lambda.rb": ECHO})
    process = await start_ruby(tmp_path, "lambda.missing")
    # The method is looked up at each call, so init succeeds.
    await wait_init(runtime_api)

    outcome = await invoke(runtime_api)

    assert outcome.error_type == "Function<NoMethodError>"
    assert outcome.error_message is not None
    assert "missing" in outcome.error_message
    await process.wait_for_output("Critical exception from handler")
    # Ruby's exit(-1): a critical exception ends the runtime after reporting.
    assert await process.wait_exit() == 255


@pytest.mark.parametrize(
    ("files", "handler", "error_type", "message"),
    [
        ({}, "lambda.handler", "Init<LoadError>", "cannot load such file -- "),
        ({"lambda.rb": "def handler(event:, context:\n"}, "lambda.handler",
         "Init<SyntaxError>", ""),
        ({"lambda.rb": "raise 'DATABASE_URL is not set'\n"}, "lambda.handler",
         "Init<RuntimeError>", "DATABASE_URL is not set"),
        ({"lambda.rb": "require 'not_installed_gem'\n"}, "lambda.handler",
         "Init<LoadError>", "cannot load such file -- not_installed_gem"),
        ({"lambda.rb": ECHO}, "lambda", "Init<ArgumentError>", "Invalid handler"),
    ],
    ids=["missing-file", "syntax", "raise-at-load", "missing-require", "malformed-handler"],
)  # fmt: skip
async def test_init_error(
    runtime_api: RuntimeApi,
    start_ruby: StartRuby,
    tmp_path: Path,
    files: dict[str, str],
    handler: str,
    error_type: str,
    message: str,
) -> None:
    write_files(tmp_path, files)
    process = await start_ruby(tmp_path, handler)

    failure = await init_failure(runtime_api)

    body = json.loads(failure.body)
    assert body["errorType"] == error_type
    assert body["errorMessage"].startswith(message)
    assert isinstance(body["stackTrace"], list)
    # `Init<...>` is no Lambda error type, so the Runtime API does not keep the header.
    assert failure.error_type == "Runtime.Unknown"
    await process.wait_for_output(f"Init error when loading handler {handler}")
    # Ruby's exit(-4).
    assert await process.wait_exit() == 252


# -- output --------------------------------------------------------------------------


async def test_output_is_not_buffered(
    runtime_api: RuntimeApi, start_ruby: StartRuby, tmp_path: Path
) -> None:
    handler = """
def handler(event:, context:)
  puts 'working'
  print 'partial line'
  $stdout.write("\\n")
  sleep 3
  'done'
end
"""
    write_files(tmp_path, {"lambda.rb": handler})
    process = await start_ruby(tmp_path, "lambda.handler")
    await wait_init(runtime_api)

    call = asyncio.ensure_future(invoke(runtime_api))
    try:
        # Both lines arrive while the handler still sleeps.
        await process.wait_for_output("working", timeout=2.5)
        await process.wait_for_output("partial line", timeout=2.5)
        assert not call.done()
    finally:
        outcome = await call
    assert outcome.response == b'"done"'


async def test_logger_format(
    runtime_api: RuntimeApi, start_ruby: StartRuby, tmp_path: Path
) -> None:
    handler = """
require 'logger'
LOGGER = Logger.new($stdout)

def handler(event:, context:)
  LOGGER.info('processing order')
  LOGGER.debug('details')
  Logger.new($stderr, progname: 'billing').warn('card declined')
  nil
end
"""
    write_files(tmp_path, {"lambda.rb": handler})
    process = await start_ruby(tmp_path, "lambda.handler")
    await wait_init(runtime_api)

    await invoke(runtime_api, request_id="log-request")

    prefix = r"\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6} #\d+\]"
    expected = {
        "processing order": rf"I, {prefix}  INFO log-request -- : processing order",
        "details": rf"D, {prefix} DEBUG log-request -- : details",
        "card declined": rf"W, {prefix}  WARN log-request -- billing: card declined",
    }
    for text, pattern in expected.items():
        line = await process.wait_for_output(text)
        assert re.fullmatch(pattern, line), line


async def test_log_level_setting(
    runtime_api: RuntimeApi, start_ruby: StartRuby, tmp_path: Path
) -> None:
    handler = """
require 'logger'

def handler(event:, context:)
  logger = Logger.new($stdout)
  logger.info('hidden')
  logger.error('shown')
  nil
end
"""
    write_files(tmp_path, {"lambda.rb": handler})
    process = await start_ruby(
        tmp_path, "lambda.handler", extra_env={"AWS_LAMBDA_LOG_LEVEL": "ERROR"}
    )
    await wait_init(runtime_api)

    await invoke(runtime_api)

    await process.wait_for_output("shown")
    assert not any("hidden" in line for line in process.lines)


async def test_shared_code_through_rubylib(
    runtime_api: RuntimeApi, start_ruby: StartRuby, tmp_path: Path
) -> None:
    write_files(tmp_path / "vendor", {"shared/greeting.rb": "GREETING = 'hello'\n"})
    handler = "require 'shared/greeting'\n\ndef handler(event:, context:)\n  GREETING\nend\n"
    write_files(tmp_path / "fn", {"lambda.rb": handler})
    rubylib = {"RUBYLIB": str(tmp_path / "vendor")}
    await start_ruby(tmp_path / "fn", "lambda.handler", extra_env=rubylib)
    await wait_init(runtime_api)

    assert (await invoke(runtime_api)).response == b'"hello"'
