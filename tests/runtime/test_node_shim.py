"""The Node.js runtime shim, run as a real process against a real RuntimeApi."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from emulator.invocation import ERROR_RESPONSE_TOO_LARGE
from emulator.worker.runtime_api import RuntimeApi

from .conftest import Spawn
from .helpers import (
    FUNCTION_ARN,
    FUNCTION_NAME,
    LOG_STREAM,
    STARTUP_TIMEOUT,
    init_failure,
    invoke,
    requires_node,
    wait_init,
    write_files,
)

pytestmark = requires_node

ECHO_CJS = "exports.handler = async (event) => ({ event, pid: process.pid });\n"
ECHO_ESM = "export const handler = async (event) => ({ event, pid: process.pid });\n"


async def echo_pid(api: RuntimeApi, event: object) -> int:
    outcome = await invoke(api, json.dumps(event).encode())
    assert outcome.error_type is None, outcome
    assert outcome.response is not None
    document = json.loads(outcome.response)
    assert document["event"] == event
    pid = document["pid"]
    assert isinstance(pid, int)
    return pid


# -- module formats ------------------------------------------------------------------


@pytest.mark.parametrize(
    "files",
    [
        {"index.js": ECHO_CJS},
        {"index.cjs": ECHO_CJS},
        {"index.mjs": ECHO_ESM},
        {"index.js": ECHO_ESM, "package.json": '{"type": "module"}'},
        {"index.js": ECHO_CJS, "package.json": '{"type": "commonjs"}'},
    ],
    ids=["cjs-js", "cjs-cjs", "esm-mjs", "esm-type-module", "cjs-type-commonjs"],
)
async def test_event_in_response_out(
    runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path, files: dict[str, str]
) -> None:
    write_files(tmp_path, files)
    process = await spawn(runtime_api, "node", tmp_path, "index.handler")
    await wait_init(runtime_api)

    event = {"text": "h\u00e9llo", "list": [1, 2, None]}
    assert await echo_pid(runtime_api, event) == process.pid


async def test_package_type_module_in_parent(
    runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path
) -> None:
    write_files(tmp_path, {"package.json": '{"type": "module"}', "src/app.js": ECHO_ESM})
    await spawn(runtime_api, "node", tmp_path / "src", "app.handler")
    await wait_init(runtime_api)

    assert await echo_pid(runtime_api, "x") > 0


async def test_warm_invocation_same_process(
    runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path
) -> None:
    write_files(tmp_path, {"index.js": ECHO_CJS})
    process = await spawn(runtime_api, "node", tmp_path, "index.handler")
    await wait_init(runtime_api)

    pids = [await echo_pid(runtime_api, number) for number in range(3)]
    assert pids == [process.pid] * 3


@pytest.mark.parametrize(
    ("files", "handler"),
    [
        ({"src/app.js": ECHO_CJS}, "src/app.handler"),
        ({"index.js": "exports.nested = { handler: async (event) => ({ event }) };\n"},
         "index.nested.handler"),
    ],
    ids=["subdirectory", "nested-property"],
)  # fmt: skip
async def test_handler_paths(
    runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path, files: dict[str, str], handler: str
) -> None:
    write_files(tmp_path, files)
    await spawn(runtime_api, "node", tmp_path, handler)
    await wait_init(runtime_api)

    outcome = await invoke(runtime_api, b'"value"')
    assert outcome.response is not None
    assert json.loads(outcome.response)["event"] == "value"


# -- handler styles --------------------------------------------------------------------


async def test_callback_handler(runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path) -> None:
    handler = "exports.handler = (event, context, callback) => callback(null, { got: event });\n"
    write_files(tmp_path, {"index.js": handler})
    await spawn(runtime_api, "node", tmp_path, "index.handler")
    await wait_init(runtime_api)

    assert (await invoke(runtime_api, b"7")).response == b'{"got":7}'


# The timer changes the result object after the callback: the response shows
# whether it was serialized before or after the event loop emptied.
WAITS_FOR_EMPTY_LOOP = """
exports.handler = (event, context, callback) => {
  context.callbackWaitsForEmptyEventLoop = event.wait;
  const result = { timerFired: false, defaultWait: null };
  setTimeout(() => { result.timerFired = true; }, 200);
  callback(null, result);
};
"""


@pytest.mark.parametrize("wait", [True, False])
async def test_callback_waits_for_empty_loop(
    runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path, wait: bool
) -> None:
    write_files(tmp_path, {"index.js": WAITS_FOR_EMPTY_LOOP})
    await spawn(runtime_api, "node", tmp_path, "index.handler")
    await wait_init(runtime_api)

    outcome = await invoke(runtime_api, json.dumps({"wait": wait}).encode())

    assert outcome.response is not None
    assert json.loads(outcome.response)["timerFired"] is wait


async def test_callback_wait_default_is_true(
    runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path
) -> None:
    handler = (
        "exports.handler = async (event, context) => context.callbackWaitsForEmptyEventLoop;\n"
    )
    write_files(tmp_path, {"index.js": handler})
    await spawn(runtime_api, "node", tmp_path, "index.handler")
    await wait_init(runtime_api)

    assert (await invoke(runtime_api)).response == b"true"


async def test_async_handler_does_not_wait(
    runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path
) -> None:
    handler = """
exports.handler = async () => {
  const result = { timerFired: false };
  setTimeout(() => { result.timerFired = true; }, 200);
  return result;
};
"""
    write_files(tmp_path, {"index.js": handler})
    await spawn(runtime_api, "node", tmp_path, "index.handler")
    await wait_init(runtime_api)

    assert (await invoke(runtime_api)).response == b'{"timerFired":false}'


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("context.succeed({ via: 'succeed' });", b'{"via":"succeed"}'),
        ("context.done(null, 'done');", b'"done"'),
        ("callback(); callback(null, 'second call ignored');", b"null"),
        ("return 'sync return is ignored';", b"null"),
    ],
    ids=["succeed", "done", "first-call-only", "never-called-back"],
)
async def test_callback_context_methods(
    runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path, body: str, expected: bytes
) -> None:
    handler = f"exports.handler = (event, context, callback) => {{ {body} }};\n"
    write_files(tmp_path, {"index.js": handler})
    await spawn(runtime_api, "node", tmp_path, "index.handler")
    await wait_init(runtime_api)

    assert (await invoke(runtime_api)).response == expected


async def test_async_handler_never_settles(
    runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path
) -> None:
    handler = """
exports.handler = async (event) => {
  if (event === 'hang') {
    await new Promise(() => {});
  }
  return 'settled';
};
"""
    write_files(tmp_path, {"index.js": handler})
    await spawn(runtime_api, "node", tmp_path, "index.handler")
    await wait_init(runtime_api)

    outcome = await invoke(runtime_api, b'"hang"')
    assert outcome.error_type == "Runtime.NodeJsExit"

    # The runtime goes on to the next event.
    assert (await invoke(runtime_api, b'"ok"')).response == b'"settled"'


# -- context -------------------------------------------------------------------------------


async def test_context_fields(runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path) -> None:
    handler = """
exports.handler = async (event, context) => ({
  awsRequestId: context.awsRequestId,
  functionName: context.functionName,
  functionVersion: context.functionVersion,
  invokedFunctionArn: context.invokedFunctionArn,
  memoryLimitInMB: context.memoryLimitInMB,
  logGroupName: context.logGroupName,
  logStreamName: context.logStreamName,
  remaining: context.getRemainingTimeInMillis(),
  callbackWaitsForEmptyEventLoop: context.callbackWaitsForEmptyEventLoop,
  methods: [typeof context.done, typeof context.succeed, typeof context.fail],
  identity: context.identity === undefined,
  clientContext: context.clientContext === undefined,
  traceId: process.env._X_AMZN_TRACE_ID,
});
"""
    write_files(tmp_path, {"index.js": handler})
    await spawn(runtime_api, "node", tmp_path, "index.handler")
    await wait_init(runtime_api)

    outcome = await invoke(
        runtime_api, request_id="ctx-request", timeout_ms=10_000, trace_id="Root=1-abc;Sampled=0"
    )

    assert outcome.response is not None
    context = json.loads(outcome.response)
    assert context["awsRequestId"] == "ctx-request"
    assert context["functionName"] == FUNCTION_NAME
    assert context["functionVersion"] == "$LATEST"
    assert context["invokedFunctionArn"] == FUNCTION_ARN
    assert context["memoryLimitInMB"] == "256"
    assert context["logGroupName"] == f"/aws/lambda/{FUNCTION_NAME}"
    assert context["logStreamName"] == LOG_STREAM
    assert 5_000 < context["remaining"] <= 10_000
    assert context["callbackWaitsForEmptyEventLoop"] is True
    assert context["methods"] == ["function", "function", "function"]
    assert context["identity"] is True
    assert context["clientContext"] is True
    assert context["traceId"] == "Root=1-abc;Sampled=0"


# -- errors --------------------------------------------------------------------------------


async def test_async_handler_throws(runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path) -> None:
    handler = """
class CustomError extends Error {
  constructor(message) { super(message); this.name = 'CustomError'; }
}
exports.handler = async () => { throw new CustomError('boom'); };
"""
    write_files(tmp_path, {"index.js": handler})
    process = await spawn(runtime_api, "node", tmp_path, "index.handler")
    await wait_init(runtime_api)

    outcome = await invoke(runtime_api, request_id="failing-request")

    assert outcome.response is None
    assert outcome.error_type == "CustomError"
    assert outcome.error_message == "boom"
    assert outcome.error_body is not None
    body = json.loads(outcome.error_body)
    assert set(body) == {"errorType", "errorMessage", "trace"}
    assert body["trace"][0] == "CustomError: boom"
    assert any("index.js:5" in line for line in body["trace"][1:])

    line = await process.wait_for_output("Invoke Error")
    assert "\tfailing-request\tERROR\tInvoke Error \t{" in line
    logged = json.loads(line.split("Invoke Error \t", 1)[1])
    assert logged["errorType"] == "CustomError"
    assert logged["errorMessage"] == "boom"

    # The environment stays warm after a handled error.
    assert (await invoke(runtime_api)).error_type == "CustomError"


@pytest.mark.parametrize(
    ("body", "error_type", "message"),
    [
        ("callback(new TypeError('bad type'));", "TypeError", "bad type"),
        ("callback('plain string');", "string", "plain string"),
        ("context.fail();", "string", "handled"),
        ("throw new RangeError('sync throw');", "RangeError", "sync throw"),
        ("callback(null, { big: 10n });", "Error", "Unable to stringify response body"),
    ],
    ids=["callback-error", "callback-string", "fail-without-error", "sync-throw", "bigint"],
)
async def test_callback_errors(
    runtime_api: RuntimeApi,
    spawn: Spawn,
    tmp_path: Path,
    body: str,
    error_type: str,
    message: str,
) -> None:
    handler = f"exports.handler = (event, context, callback) => {{ {body} }};\n"
    write_files(tmp_path, {"index.js": handler})
    await spawn(runtime_api, "node", tmp_path, "index.handler")
    await wait_init(runtime_api)

    outcome = await invoke(runtime_api)

    assert outcome.error_type == error_type
    assert outcome.error_message == message


async def test_unhandled_rejection_fails_invocation(
    runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path
) -> None:
    handler = """
exports.handler = (event, context, callback) => {
  Promise.reject(new Error('nobody catches this'));
};
"""
    write_files(tmp_path, {"index.js": handler})
    process = await spawn(runtime_api, "node", tmp_path, "index.handler")
    await wait_init(runtime_api)

    outcome = await invoke(runtime_api)

    assert outcome.error_type == "Runtime.UnhandledPromiseRejection"
    assert outcome.error_message == "Error: nobody catches this"
    assert await process.wait_exit() == 128


async def test_uncaught_exception_fails_invocation(
    runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path
) -> None:
    handler = """
exports.handler = (event, context, callback) => {
  setTimeout(() => { throw new Error('thrown from a timer'); }, 10);
};
"""
    write_files(tmp_path, {"index.js": handler})
    process = await spawn(runtime_api, "node", tmp_path, "index.handler")
    await wait_init(runtime_api)

    outcome = await invoke(runtime_api)

    assert outcome.error_type == "Error"
    assert outcome.error_message == "thrown from a timer"
    assert await process.wait_exit() == 129
    await process.wait_for_output("Uncaught Exception")


async def test_response_over_6_mb(runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path) -> None:
    handler = "exports.handler = async (e) => e === 'big' ? 'x'.repeat(7000000) : 'small';\n"
    write_files(tmp_path, {"index.js": handler})
    await spawn(runtime_api, "node", tmp_path, "index.handler")
    await wait_init(runtime_api)

    assert (await invoke(runtime_api, b'"big"')).error_type == ERROR_RESPONSE_TOO_LARGE
    assert (await invoke(runtime_api, b'"next"')).response == b'"small"'


# -- init errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "handler", "error_type", "message"),
    [
        ({}, "index.handler", "Runtime.ImportModuleError", "Error: Cannot find module 'index'"),
        ({"index.js": "require('not-installed-package');\n"}, "index.handler",
         "Runtime.ImportModuleError", "Error: Cannot find module 'not-installed-package'"),
        ({"index.mjs": "import 'not-installed-package';\n"}, "index.handler",
         "Runtime.ImportModuleError", "Error [ERR_MODULE_NOT_FOUND]: Cannot find package"),
        ({"index.js": "exports.handler = async () => {;\n"}, "index.handler",
         "Runtime.UserCodeSyntaxError", "SyntaxError: "),
        ({"index.mjs": "export const handler = async () => {;\n"}, "index.handler",
         "Runtime.UserCodeSyntaxError", "SyntaxError: "),
        ({"index.js": "exports.other = async () => 1;\n"}, "index.handler",
         "Runtime.HandlerNotFound", "index.handler is undefined or not exported"),
        ({"index.js": "exports.handler = 42;\n"}, "index.handler",
         "Runtime.HandlerNotFound", "index.handler is not a function"),
        ({"index.js": ECHO_CJS}, "index", "Runtime.MalformedHandlerName", "Bad handler"),
        ({"index.js": ECHO_CJS}, "../index.handler", "Runtime.MalformedHandlerName",
         "'../index.handler' is not a valid handler name."),
    ],
    ids=[
        "missing-file", "missing-require", "missing-import", "cjs-syntax", "esm-syntax",
        "missing-export", "not-a-function", "no-dot", "parent-path",
    ],
)  # fmt: skip
async def test_init_error(
    runtime_api: RuntimeApi,
    spawn: Spawn,
    tmp_path: Path,
    files: dict[str, str],
    handler: str,
    error_type: str,
    message: str,
) -> None:
    write_files(tmp_path, files)
    process = await spawn(runtime_api, "node", tmp_path, handler)

    failure = await init_failure(runtime_api)

    assert failure.error_type == error_type
    assert failure.error_message.startswith(message)
    body = json.loads(failure.body)
    assert body["errorType"] == error_type
    assert isinstance(body["trace"], list)
    assert await process.wait_exit(STARTUP_TIMEOUT) == 129
    line = await process.wait_for_output("Uncaught Exception")
    assert error_type in line


async def test_init_exception_in_module(
    runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path
) -> None:
    write_files(tmp_path, {"index.js": "throw new TypeError('config missing');\n"})
    await spawn(runtime_api, "node", tmp_path, "index.handler")

    failure = await init_failure(runtime_api)

    # The header carries "TypeError", which is no Lambda error type.
    assert failure.error_type == "Runtime.Unknown"
    assert failure.error_message == "config missing"
    assert json.loads(failure.body)["errorType"] == "TypeError"


# -- console ---------------------------------------------------------------------------------


async def test_console_format(runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path) -> None:
    handler = """
console.log('loading');
exports.handler = async () => {
  console.log('hello %s', 'world');
  console.warn('careful');
  console.error('bad', { code: 1 });
  return null;
};
"""
    write_files(tmp_path, {"index.js": handler})
    process = await spawn(runtime_api, "node", tmp_path, "index.handler")
    await wait_init(runtime_api)

    await invoke(runtime_api, request_id="log-request")

    time_pattern = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    expected = {
        "loading": rf"{time_pattern}\tundefined\tINFO\tloading",
        "hello": rf"{time_pattern}\tlog-request\tINFO\thello world",
        "careful": rf"{time_pattern}\tlog-request\tWARN\tcareful",
        "bad": rf"{time_pattern}\tlog-request\tERROR\tbad {{ code: 1 }}",
    }
    for text, pattern in expected.items():
        line = await process.wait_for_output(text)
        assert re.fullmatch(pattern, line), line


async def test_no_output_of_its_own(runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path) -> None:
    write_files(tmp_path, {"index.js": "exports.handler = async () => 1;\n"})
    process = await spawn(runtime_api, "node", tmp_path, "index.handler")
    await wait_init(runtime_api)
    assert (await invoke(runtime_api)).response == b"1"

    await process.kill()
    await process.wait_exit()
    assert process.lines == []


# -- shared code through NODE_PATH -----------------------------------------------------------


def write_shared_code(root: Path) -> Path:
    """Write @architect/shared and @architect/views under `root/node_modules`; return that path."""
    write_files(
        root,
        {
            "node_modules/@architect/shared/index.js": "module.exports = { name: 'shared' };\n",
            "node_modules/@architect/shared/util.mjs": "export const util = 'shared-esm';\n",
            "node_modules/@architect/views/layout.js": "module.exports = () => 'layout';\n",
        },
    )
    return root / "node_modules"


async def test_node_path_commonjs(runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path) -> None:
    node_path = write_shared_code(tmp_path / "shared")
    handler = """
const shared = require('@architect/shared');
const layout = require('@architect/views/layout');
exports.handler = async () => [shared.name, layout()];
"""
    write_files(tmp_path / "fn", {"index.js": handler})
    env = {"NODE_PATH": str(node_path)}
    await spawn(runtime_api, "node", tmp_path / "fn", "index.handler", extra_env=env)
    await wait_init(runtime_api)

    assert (await invoke(runtime_api)).response == b'["shared","layout"]'


async def test_node_path_esm(runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path) -> None:
    node_path = write_shared_code(tmp_path / "shared")
    handler = """
import shared from '@architect/shared';
import { util } from '@architect/shared/util.mjs';
import layout from '@architect/views/layout.js';
export const handler = async () => [shared.name, util, layout()];
"""
    write_files(tmp_path / "fn", {"index.mjs": handler})
    env = {"NODE_PATH": str(node_path)}
    await spawn(runtime_api, "node", tmp_path / "fn", "index.handler", extra_env=env)
    await wait_init(runtime_api)

    assert (await invoke(runtime_api)).response == b'["shared","shared-esm","layout"]'


async def test_node_path_other_directory_name(
    runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path
) -> None:
    write_files(tmp_path / "libs", {"@architect/shared/util.mjs": "export const util = 'found';\n"})
    handler = "import { util } from '@architect/shared/util.mjs';\n"
    handler += "export const handler = async () => util;\n"
    write_files(tmp_path / "fn", {"index.mjs": handler})
    await spawn(
        runtime_api,
        "node",
        tmp_path / "fn",
        "index.handler",
        extra_env={"NODE_PATH": str(tmp_path / "libs")},
    )
    await wait_init(runtime_api)

    assert (await invoke(runtime_api)).response == b'"found"'


async def test_esm_without_node_path_fails(
    runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path
) -> None:
    write_shared_code(tmp_path / "shared")
    handler = "import shared from '@architect/shared';\nexport const handler = async () => 1;\n"
    write_files(tmp_path / "fn", {"index.mjs": handler})
    await spawn(runtime_api, "node", tmp_path / "fn", "index.handler")

    failure = await init_failure(runtime_api)
    assert failure.error_type == "Runtime.ImportModuleError"
