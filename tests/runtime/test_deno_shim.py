"""The Deno runtime shim, run as a real `deno` process against a real RuntimeApi.

The command, permissions included, is the one the emulator runs. These
tests fail, naming the missing program, when Deno is not installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
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

StartDeno = Callable[..., Awaitable[RuntimeProcess]]


def deno_command(task_root: Path, readable: list[Path]) -> list[str]:
    """Return the command the emulator runs for `deno`, or fail the test without Deno."""
    try:
        resolver = RuntimeResolver(os.environ.get("PATH"))
        return resolver.command("deno", task_root, readable=readable)
    except EmulatorError as error:
        pytest.fail(f"Deno is required for this test: {error}")


@pytest.fixture(scope="session")
def deno_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Deno cache shared by the tests of a session, outside every handler directory."""
    return tmp_path_factory.mktemp("deno-cache")


@pytest.fixture
async def start_deno(runtime_api: RuntimeApi, deno_dir: Path) -> AsyncIterator[StartDeno]:
    """Start the Deno shim: `await start_deno(task_root, handler, readable=[...])`."""
    processes: list[RuntimeProcess] = []

    async def start(
        task_root: Path,
        handler: str,
        *,
        readable: list[Path] | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> RuntimeProcess:
        command = deno_command(task_root, readable or [])
        extra = {"DENO_DIR": str(deno_dir), "NO_COLOR": "1", **(extra_env or {})}
        env = lambda_env(runtime_api.port, task_root, handler, runtime="deno", extra=extra)
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


ECHO_TS = """
interface Reply { event: unknown; pid: number }
export async function handler(event: unknown): Promise<Reply> {
  return { event, pid: Deno.pid };
}
"""
ECHO_JS = "export const handler = (event) => ({ event, pid: Deno.pid });\n"
ECHO_TSX = """
const tag = <T,>(value: T): T => value;
export const handler = async (event: unknown) => ({ event: tag(event), pid: Deno.pid });
"""


# -- handlers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "handler"),
    [
        ({"mod.ts": ECHO_TS}, "mod.handler"),
        ({"mod.js": ECHO_JS}, "mod.handler"),
        ({"mod.tsx": ECHO_TSX}, "mod.handler"),
        ({"index.ts": ECHO_TS}, "index.handler"),
        ({"index.js": ECHO_JS}, "index.handler"),
        ({"index.tsx": ECHO_TSX}, "index.handler"),
        ({"src/app.ts": ECHO_TS}, "src/app.handler"),
    ],
    ids=["mod-ts", "mod-js", "mod-tsx", "index-ts", "index-js", "index-tsx", "subdirectory"],
)
async def test_event_in_response_out(
    runtime_api: RuntimeApi,
    start_deno: StartDeno,
    tmp_path: Path,
    files: dict[str, str],
    handler: str,
) -> None:
    write_files(tmp_path, files)
    process = await start_deno(tmp_path, handler)
    await wait_init(runtime_api)

    event = {"text": "h\u00e9llo", "list": [1, 2, None]}
    for _ in range(2):
        outcome = await invoke(runtime_api, json.dumps(event).encode())
        assert outcome.response is not None, outcome
        reply = json.loads(outcome.response)
        assert reply["event"] == event
        # One warm process serves every invocation.
        assert reply["pid"] == process.pid


async def test_ts_preferred_over_js(
    runtime_api: RuntimeApi, start_deno: StartDeno, tmp_path: Path
) -> None:
    write_files(
        tmp_path,
        {
            "mod.ts": "export const handler = () => 'ts';\n",
            "mod.js": "export const handler = () => 'js';\n",
        },
    )
    await start_deno(tmp_path, "mod.handler")
    await wait_init(runtime_api)

    assert (await invoke(runtime_api)).response == b'"ts"'


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("return undefined;", b"null"),
        ("return new Promise((resolve) => setTimeout(() => resolve('later'), 50));", b'"later"'),
        ("return [1, 'two'];", b'[1,"two"]'),
    ],
    ids=["undefined", "promise", "array"],
)
async def test_return_values(
    runtime_api: RuntimeApi, start_deno: StartDeno, tmp_path: Path, body: str, expected: bytes
) -> None:
    write_files(tmp_path, {"mod.js": f"export function handler() {{ {body} }}\n"})
    await start_deno(tmp_path, "mod.handler")
    await wait_init(runtime_api)

    assert (await invoke(runtime_api)).response == expected


async def test_context_fields(
    runtime_api: RuntimeApi, start_deno: StartDeno, tmp_path: Path
) -> None:
    handler = """
export const handler = async (_event: unknown, context: any) => ({
  awsRequestId: context.awsRequestId,
  functionName: context.functionName,
  functionVersion: context.functionVersion,
  invokedFunctionArn: context.invokedFunctionArn,
  memoryLimitInMB: context.memoryLimitInMB,
  logGroupName: context.logGroupName,
  logStreamName: context.logStreamName,
  remaining: context.getRemainingTimeInMillis(),
  callbackWaitsForEmptyEventLoop: context.callbackWaitsForEmptyEventLoop,
  identity: context.identity === undefined,
  clientContext: context.clientContext === undefined,
  traceId: Deno.env.get('_X_AMZN_TRACE_ID'),
});
"""
    write_files(tmp_path, {"mod.ts": handler})
    await start_deno(tmp_path, "mod.handler")
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
    assert context["memoryLimitInMB"] == str(MEMORY_MB)
    assert context["logGroupName"] == f"/aws/lambda/{FUNCTION_NAME}"
    assert context["logStreamName"] == LOG_STREAM
    assert 5_000 < context["remaining"] <= 10_000
    assert context["callbackWaitsForEmptyEventLoop"] is True
    assert context["identity"] is True
    assert context["clientContext"] is True
    assert context["traceId"] == "Root=1-abc;Sampled=0"


async def test_proxy_settings_ignored(
    runtime_api: RuntimeApi, start_deno: StartDeno, tmp_path: Path
) -> None:
    handler = "export const handler = () => [Deno.env.get('NO_PROXY') ?? null];\n"
    write_files(tmp_path, {"mod.ts": handler})
    # Nothing listens on port 9 (discard), so a proxied request fails.
    proxy = {"HTTP_PROXY": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
    await start_deno(tmp_path, "mod.handler", extra_env=proxy)
    await wait_init(runtime_api)

    # The handler sees the environment as it was given.
    assert (await invoke(runtime_api)).response == b"[null]"


# -- errors --------------------------------------------------------------------------


async def test_handler_error_body(
    runtime_api: RuntimeApi, start_deno: StartDeno, tmp_path: Path
) -> None:
    handler = """
class OrderError extends Error {
  constructor(message: string) { super(message); this.name = 'OrderError'; }
}
export async function handler(event: string) {
  if (event === 'fail') throw new OrderError('no such order');
  return 'ok';
}
"""
    write_files(tmp_path, {"mod.ts": handler})
    process = await start_deno(tmp_path, "mod.handler")
    await wait_init(runtime_api)

    outcome = await invoke(runtime_api, b'"fail"', request_id="failing-request")

    assert outcome.response is None
    assert outcome.error_type == "OrderError"
    assert outcome.error_message == "no such order"
    assert outcome.error_body is not None
    body = json.loads(outcome.error_body)
    assert set(body) == {"errorType", "errorMessage", "trace"}
    assert body["trace"][0] == "OrderError: no such order"
    assert any("mod.ts:6" in line for line in body["trace"][1:])

    line = await process.wait_for_output("Invoke Error")
    assert "\tfailing-request\tERROR\tInvoke Error \t{" in line
    logged = json.loads(line.split("Invoke Error \t", 1)[1])
    assert logged["errorType"] == "OrderError"

    # The environment stays warm after a handled error.
    assert (await invoke(runtime_api, b'"again"')).response == b'"ok"'


async def test_unhandled_rejection_fails_invocation(
    runtime_api: RuntimeApi, start_deno: StartDeno, tmp_path: Path
) -> None:
    handler = """
export async function handler() {
  Promise.reject(new Error('forgotten'));
  await new Promise((resolve) => setTimeout(resolve, 1000));
  return 'too late';
}
"""
    write_files(tmp_path, {"mod.ts": handler})
    process = await start_deno(tmp_path, "mod.handler")
    await wait_init(runtime_api)

    outcome = await invoke(runtime_api)

    assert outcome.error_type == "Runtime.UnhandledPromiseRejection"
    assert outcome.error_message == "Error: forgotten"
    assert await process.wait_exit() == 128


@pytest.mark.parametrize(
    ("files", "handler", "error_type", "message"),
    [
        ({}, "mod.handler", "Runtime.ImportModuleError", "Error: Cannot find module"),
        ({"mod.ts": "export const handler = (;\n"}, "mod.handler",
         "Runtime.UserCodeSyntaxError", "SyntaxError: "),
        ({"mod.ts": "import './missing.ts';\nexport const handler = () => 1;\n"},
         "mod.handler", "Runtime.ImportModuleError", "Module not found"),
        ({"mod.ts": "export const other = () => 1;\n"}, "mod.handler",
         "Runtime.HandlerNotFound", "mod.handler is undefined or not exported"),
        ({"mod.ts": "export const handler = 42;\n"}, "mod.handler",
         "Runtime.HandlerNotFound", "mod.handler is not a function"),
        ({"mod.ts": ECHO_TS}, "mod", "Runtime.MalformedHandlerName", "Bad handler"),
    ],
    ids=["missing-file", "syntax", "missing-import", "missing-export", "not-a-function",
         "no-dot"],
)  # fmt: skip
async def test_init_error(
    runtime_api: RuntimeApi,
    start_deno: StartDeno,
    tmp_path: Path,
    files: dict[str, str],
    handler: str,
    error_type: str,
    message: str,
) -> None:
    write_files(tmp_path, files)
    process = await start_deno(tmp_path, handler)

    failure = await init_failure(runtime_api)

    assert failure.error_type == error_type
    assert failure.error_message.startswith(message), failure.error_message
    body = json.loads(failure.body)
    assert body["errorType"] == error_type
    assert isinstance(body["trace"], list)
    assert await process.wait_exit() == 129
    line = await process.wait_for_output("Uncaught Exception")
    assert error_type in line


# -- permissions ---------------------------------------------------------------------

PROBE = """
async function attempt(action: () => Promise<unknown>): Promise<string> {
  try {
    await action();
    return 'allowed';
  } catch (error) {
    return (error as Error).name;
  }
}

export async function handler(event: { outside: string }) {
  const root = Deno.env.get('LAMBDA_TASK_ROOT')!;
  return {
    writeTmp: await attempt(() => Deno.writeTextFile(`/tmp/deno-probe-${Deno.pid}`, 'x')),
    readTmp: await attempt(() => Deno.readTextFile(`/tmp/deno-probe-${Deno.pid}`)),
    removeTmp: await attempt(() => Deno.remove(`/tmp/deno-probe-${Deno.pid}`)),
    readOwnCode: await attempt(() => Deno.readTextFile(`${root}/mod.ts`)),
    writeOwnCode: await attempt(() => Deno.writeTextFile(`${root}/written.txt`, 'x')),
    readOutside: await attempt(() => Deno.readTextFile(event.outside)),
    runProgram: await attempt(() => new Deno.Command('true').output()),
    env: await attempt(async () => Deno.env.get('AWS_REGION')),
  };
}
"""


@pytest.fixture
def var_tmp_path() -> Iterator[Path]:
    """A temporary directory outside /tmp, which Deno functions may read and write."""
    path = Path(tempfile.mkdtemp(dir="/var/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def test_permissions(
    runtime_api: RuntimeApi, start_deno: StartDeno, var_tmp_path: Path
) -> None:
    outside = write_files(var_tmp_path / "outside", {"secret.txt": "not for the function"})
    function = write_files(var_tmp_path / "fn", {"mod.ts": PROBE})
    await start_deno(function, "mod.handler")
    await wait_init(runtime_api)

    event = {"outside": str(outside / "secret.txt")}
    outcome = await invoke(runtime_api, json.dumps(event).encode())

    assert outcome.response is not None, outcome
    result = json.loads(outcome.response)
    assert result["writeTmp"] == "allowed"
    assert result["readTmp"] == "allowed"
    assert result["removeTmp"] == "allowed"
    assert result["readOwnCode"] == "allowed"
    assert result["env"] == "allowed"
    # Deno 2 names a denied permission NotCapable; Deno 1 named it PermissionDenied.
    denied = {"NotCapable", "PermissionDenied"}
    assert result["writeOwnCode"] in denied
    assert result["readOutside"] in denied
    assert result["runProgram"] in denied
    assert not (function / "written.txt").exists()


async def test_readable_shared_code(
    runtime_api: RuntimeApi, start_deno: StartDeno, tmp_path: Path
) -> None:
    shared = write_files(tmp_path / "src" / "shared", {"greeting.ts": "export const hi = 'hi';\n"})
    handler = "import { hi } from '../../shared/greeting.ts';\nexport const handler = () => hi;\n"
    function = write_files(tmp_path / "src" / "ws" / "default", {"mod.ts": handler})
    await start_deno(function, "mod.handler", readable=[shared])
    await wait_init(runtime_api)

    assert (await invoke(runtime_api)).response == b'"hi"'


async def test_no_cache_in_handler_dir(
    runtime_api: RuntimeApi, start_deno: StartDeno, tmp_path: Path
) -> None:
    write_files(tmp_path, {"mod.ts": ECHO_TS})
    await start_deno(tmp_path, "mod.handler")
    await wait_init(runtime_api)
    await invoke(runtime_api)

    assert sorted(path.name for path in tmp_path.iterdir()) == ["mod.ts"]


# -- console -------------------------------------------------------------------------


async def test_console_format(
    runtime_api: RuntimeApi, start_deno: StartDeno, tmp_path: Path
) -> None:
    handler = """
console.log('loading');
export const handler = () => {
  console.log('hello %s', 'world');
  console.warn('careful');
  console.error('bad', { code: 1 });
  return null;
};
"""
    write_files(tmp_path, {"mod.ts": handler})
    process = await start_deno(tmp_path, "mod.handler")
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
