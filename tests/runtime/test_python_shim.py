"""The Python runtime shim, run as a real process against a real RuntimeApi."""

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
    wait_init,
    write_files,
)

ECHO = """
import os

def handler(event, context):
    return {"event": event, "pid": os.getpid()}
"""


async def test_event_in_response_out(runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path) -> None:
    write_files(tmp_path, {"lambda.py": ECHO})
    process = await spawn(runtime_api, "python", tmp_path, "lambda.handler")
    await wait_init(runtime_api)

    outcome = await invoke(runtime_api, b'{"text": "h\\u00e9llo", "n": [1, 2]}')

    assert outcome.error_type is None
    assert outcome.response is not None
    assert json.loads(outcome.response) == {
        "event": {"text": "h\u00e9llo", "n": [1, 2]},
        "pid": process.pid,
    }


async def test_warm_invocation_same_process(
    runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path
) -> None:
    write_files(tmp_path, {"lambda.py": ECHO})
    process = await spawn(runtime_api, "python", tmp_path, "lambda.handler")
    await wait_init(runtime_api)

    pids = []
    for number in range(3):
        outcome = await invoke(runtime_api, json.dumps(number).encode())
        assert outcome.response is not None
        document = json.loads(outcome.response)
        assert document["event"] == number
        pids.append(document["pid"])
    assert pids == [process.pid] * 3


async def test_context_fields(runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path) -> None:
    handler = """
import os

def handler(event, context):
    return {
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
        "identity_id": context.identity.cognito_identity_id,
        "identity_pool_id": context.identity.cognito_identity_pool_id,
        "client_context": context.client_context,
        "trace_id": os.environ.get("_X_AMZN_TRACE_ID"),
    }
"""
    write_files(tmp_path, {"lambda.py": handler})
    await spawn(runtime_api, "python", tmp_path, "lambda.handler")
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
    assert context["memory_limit_in_mb"] == "256"
    assert context["log_group_name"] == f"/aws/lambda/{FUNCTION_NAME}"
    assert context["log_stream_name"] == LOG_STREAM
    assert 5_000 < context["remaining"] <= 10_000
    assert context["identity_id"] is None
    assert context["identity_pool_id"] is None
    assert context["client_context"] is None
    assert context["trace_id"] == "Root=1-abc;Sampled=0"


async def test_remaining_time_never_negative(
    runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path
) -> None:
    handler = "def handler(event, context):\n    return context.get_remaining_time_in_millis()\n"
    write_files(tmp_path, {"lambda.py": handler})
    await spawn(runtime_api, "python", tmp_path, "lambda.handler")
    await wait_init(runtime_api)

    outcome = await invoke(runtime_api, timeout_ms=-1_000)
    assert outcome.response == b"0"


async def test_handler_exception(runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path) -> None:
    handler = """
def handler(event, context):
    helper()

def helper():
    raise ValueError("boom")
"""
    write_files(tmp_path, {"lambda.py": handler})
    process = await spawn(runtime_api, "python", tmp_path, "lambda.handler")
    await wait_init(runtime_api)

    outcome = await invoke(runtime_api, request_id="failing-request")

    assert outcome.response is None
    assert outcome.error_type == "ValueError"
    assert outcome.error_message == "boom"
    assert outcome.error_body is not None
    body = json.loads(outcome.error_body)
    assert set(body) == {"errorMessage", "errorType", "requestId", "stackTrace"}
    assert body["errorType"] == "ValueError"
    assert body["requestId"] == "failing-request"
    assert len(body["stackTrace"]) == 2
    assert 'lambda.py", line 3, in handler' in body["stackTrace"][0]
    assert 'lambda.py", line 6, in helper' in body["stackTrace"][1]
    assert not any("bootstrap.py" in frame for frame in body["stackTrace"])

    await process.wait_for_output("[ERROR] ValueError: boom")
    await process.wait_for_output("Traceback (most recent call last):")

    # The environment stays warm after a handled error.
    assert (await invoke(runtime_api)).error_type == "ValueError"


async def test_response_not_serializable(
    runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path
) -> None:
    write_files(tmp_path, {"lambda.py": "def handler(event, context):\n    return {1, 2}\n"})
    await spawn(runtime_api, "python", tmp_path, "lambda.handler")
    await wait_init(runtime_api)

    outcome = await invoke(runtime_api)

    assert outcome.error_type == "Runtime.MarshalError"
    assert outcome.error_message == (
        "Unable to marshal response: Object of type set is not JSON serializable"
    )


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        ("None", b"null"),
        ("b'raw bytes'", b"raw bytes"),
        ("decimal.Decimal('12')", b"12"),
        ("[True, 1.5, 'x']", b'[true, 1.5, "x"]'),
    ],
)
async def test_response_encoding(
    runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path, returned: str, expected: bytes
) -> None:
    handler = f"import decimal\n\ndef handler(event, context):\n    return {returned}\n"
    write_files(tmp_path, {"lambda.py": handler})
    await spawn(runtime_api, "python", tmp_path, "lambda.handler")
    await wait_init(runtime_api)

    assert (await invoke(runtime_api)).response == expected


async def test_response_over_6_mb(runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path) -> None:
    handler = """
import os

def handler(event, context):
    if event == "big":
        return "x" * 7_000_000
    return os.getpid()
"""
    write_files(tmp_path, {"lambda.py": handler})
    process = await spawn(runtime_api, "python", tmp_path, "lambda.handler")
    await wait_init(runtime_api)

    outcome = await invoke(runtime_api, b'"big"')
    assert outcome.error_type == ERROR_RESPONSE_TOO_LARGE

    # The runtime goes on to the next event.
    assert (await invoke(runtime_api, b'"small"')).response == str(process.pid).encode()


async def test_logging_format(runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path) -> None:
    handler = """
import logging

def handler(event, context):
    logging.warning("careful %s", 42)
    print("plain print")
"""
    write_files(tmp_path, {"lambda.py": handler})
    process = await spawn(runtime_api, "python", tmp_path, "lambda.handler")
    await wait_init(runtime_api)

    await invoke(runtime_api, request_id="log-request")

    line = await process.wait_for_output("careful")
    pattern = r"\[WARNING\]\t\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\tlog-request\tcareful 42"
    assert re.fullmatch(pattern, line), line
    await process.wait_for_output("plain print")


async def test_no_output_of_its_own(runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path) -> None:
    write_files(tmp_path, {"lambda.py": "def handler(event, context):\n    return 1\n"})
    process = await spawn(runtime_api, "python", tmp_path, "lambda.handler")
    await wait_init(runtime_api)
    assert (await invoke(runtime_api)).response == b"1"

    await process.kill()
    await process.wait_exit()
    assert process.lines == []


async def test_handler_in_subdirectory(
    runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path
) -> None:
    write_files(
        tmp_path,
        {
            "src/handlers/app.py": "from . import util\n\n"
            "def handler(event, context):\n    return util.VALUE\n",
            "src/handlers/util.py": "VALUE = 'nested'\n",
        },
    )
    await spawn(runtime_api, "python", tmp_path, "src/handlers/app.handler")
    await wait_init(runtime_api)

    assert (await invoke(runtime_api)).response == b'"nested"'


async def test_task_root_comes_first_on_path(
    runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path
) -> None:
    # A module named like the shim's own file is the user's module.
    write_files(tmp_path, {"bootstrap.py": "def handler(event, context):\n    return 'user'\n"})
    await spawn(runtime_api, "python", tmp_path, "bootstrap.handler")
    await wait_init(runtime_api)

    assert (await invoke(runtime_api)).response == b'"user"'


@pytest.mark.parametrize(
    ("files", "handler", "error_type", "message"),
    [
        ({}, "missing.handler", "Runtime.ImportModuleError",
         "Unable to import module 'missing': No module named 'missing'"),
        ({"lambda.py": "import not_installed_dependency\n"}, "lambda.handler",
         "Runtime.ImportModuleError",
         "Unable to import module 'lambda': No module named 'not_installed_dependency'"),
        ({"lambda.py": "def handler(event, context)\n    return 1\n"}, "lambda.handler",
         "Runtime.UserCodeSyntaxError", "Syntax error in module 'lambda': "),
        ({"lambda.py": "def other(event, context):\n    return 1\n"}, "lambda.handler",
         "Runtime.HandlerNotFound", "Handler 'handler' missing on module 'lambda'"),
        ({"lambda.py": ""}, "lambda", "Runtime.MalformedHandlerName",
         "Bad handler 'lambda': not enough values to unpack (expected 2, got 1)"),
        ({}, "sys.handler", "Runtime.BuiltInModuleConflict",
         "Cannot use built-in module sys as a handler module"),
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
    process = await spawn(runtime_api, "python", tmp_path, handler)

    failure = await init_failure(runtime_api)

    assert failure.error_type == error_type
    assert failure.error_message.startswith(message)
    body = json.loads(failure.body)
    assert body["errorType"] == error_type
    assert body["requestId"] == ""
    assert isinstance(body["stackTrace"], list)
    assert await process.wait_exit(STARTUP_TIMEOUT) != 0
    await process.wait_for_output(f"[ERROR] {error_type}: {message}")


async def test_init_exception_in_module(
    runtime_api: RuntimeApi, spawn: Spawn, tmp_path: Path
) -> None:
    write_files(tmp_path, {"lambda.py": "raise RuntimeError('config missing')\n"})
    process = await spawn(runtime_api, "python", tmp_path, "lambda.handler")

    failure = await init_failure(runtime_api)

    # The header carries "RuntimeError", which is no Lambda error type.
    assert failure.error_type == "Runtime.Unknown"
    assert failure.error_message == "config missing"
    body = json.loads(failure.body)
    assert body["errorType"] == "RuntimeError"
    assert any('lambda.py", line 1' in frame for frame in body["stackTrace"])
    assert await process.wait_exit(STARTUP_TIMEOUT) != 0
