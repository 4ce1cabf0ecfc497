"""The environment of a function: Lambda's variables, user variables and shared code.

Handlers reply with their whole environment through a route response, so
each test checks the variables a real runtime process received.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from emulator.app import Emulator
from tests.e2e.conftest import EmulatorFactory, Project
from tests.e2e.test_exec_support import capture_logs, receive_json, running_emulator

PY_ENV_HANDLER = """
import json, os

def handler(event, context):
    return {"statusCode": 200, "body": json.dumps({
        "env": dict(os.environ),
        "arn": context.invoked_function_arn,
        "logStream": context.log_stream_name,
    })}
"""

NODE_ENV_HANDLER = """
exports.handler = async (event, context) => ({
  statusCode: 200,
  body: JSON.stringify({
    env: process.env,
    arn: context.invokedFunctionArn,
    logStream: context.logStreamName,
  }),
});
"""

HANDLER_NAMES = {"python": "lambda.handler", "node": "index.handler"}
EXECUTION_ENVS = {"python": "AWS_Lambda_python3.11", "node": "AWS_Lambda_nodejs20.x"}

SENTINEL = "EMULATOR_TEST_SENTINEL"
PASSED = "EMULATOR_TEST_PASSED"

# Variables that the runtime itself adds: the trace id of the current
# invocation (Lambda sets it too), and LC_CTYPE, which Python sets when the
# locale of LANG (en_US.UTF-8) is not installed on this machine (PEP 538).
RUNTIME_ADDED = {"python": {"_X_AMZN_TRACE_ID", "LC_CTYPE"}, "node": {"_X_AMZN_TRACE_ID"}}


async def _fetch_environment(emulator: Emulator) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
        await ws.send_str("env")
        reply: dict[str, Any] = await receive_json(ws)
    return reply


def _utc_date_paths(*moments: float) -> set[str]:
    return {time.strftime("%Y/%m/%d", time.gmtime(moment)) for moment in moments}


@pytest.mark.parametrize("runtime", ["python", "node"])
async def test_function_environment_variables(project: Project, runtime: str) -> None:
    source = PY_ENV_HANDLER if runtime == "python" else NODE_ENV_HANDLER
    handler_dir = project.handler(
        "default",
        source,
        runtime=runtime,
        config={"memory": 256, "region": "eu-central-1", "timeout": 7},
    )
    project.write()
    (project.root / ".env").write_text('GREETING=hello from dotenv\nQUOTED="two words"\n')
    environ = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/"),
        SENTINEL: "must not leak",
        PASSED: "passed on request",
    }
    if runtime == "python":
        # The emulator's own credentials reach the function; without them
        # (the Node.js case) placeholders do.
        environ.update(
            AWS_ACCESS_KEY_ID="AKIAEMULATORTEST",
            AWS_SECRET_ACCESS_KEY="emulator-test-secret",
            AWS_SESSION_TOKEN="emulator-test-token",
        )

    started = time.time()
    async with running_emulator(
        project.root, environ, route_responses=True, pass_env=(PASSED,)
    ) as emulator:
        reply = await _fetch_environment(emulator)
        port, internal_port = emulator.port, emulator.internal_port
    env: dict[str, str] = reply["env"]

    name = env["AWS_LAMBDA_FUNCTION_NAME"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name)
    assert "testapp" in name
    assert "default" in name
    assert reply["arn"] == f"arn:aws:lambda:eu-central-1:012345678912:function:{name}"

    task_root = str(handler_dir.resolve())
    expected = {
        "_HANDLER": HANDLER_NAMES[runtime],
        "LAMBDA_TASK_ROOT": task_root,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": "eu-central-1",
        "AWS_DEFAULT_REGION": "eu-central-1",
        "AWS_EXECUTION_ENV": EXECUTION_ENVS[runtime],
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
        "PATH": environ["PATH"],
        "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI": f"http://127.0.0.1:{port}",
        "ARC_APP_NAME": "testapp",
        "ARC_ENV": "testing",
        "ARC_SESSION_TABLE_NAME": "jwe",
        "ARC_WSS_URL": f"ws://localhost:{port}",
        "GREETING": "hello from dotenv",
        "QUOTED": "two words",
        PASSED: "passed on request",
    }
    for key, value in expected.items():
        assert env.get(key) == value, key

    stream = env["AWS_LAMBDA_LOG_STREAM_NAME"]
    stream_match = re.fullmatch(r"(\d{4}/\d\d/\d\d)/\[\$LATEST\][0-9a-f]{32}", stream)
    assert stream_match is not None, stream
    assert stream_match.group(1) in _utc_date_paths(started, time.time())
    assert reply["logStream"] == stream

    api_match = re.fullmatch(r"127\.0\.0\.1:(\d+)", env["AWS_LAMBDA_RUNTIME_API"])
    assert api_match is not None, env["AWS_LAMBDA_RUNTIME_API"]
    assert 0 < int(api_match.group(1)) < 65536
    assert int(api_match.group(1)) not in (port, internal_port)

    assert Path(env["LAMBDA_RUNTIME_DIR"]).is_dir()
    assert env["ARC_ROLE"]

    sandbox = json.loads(env["ARC_SANDBOX"])
    assert sandbox["ports"]["http"] == port
    assert sandbox["ports"]["_arc"] == internal_port
    assert sandbox["cwd"] == str(project.root.resolve())
    # An Architect sandbox version: `@architect/functions` refuses to load below 5.0.0.
    version_match = re.fullmatch(r"(\d)\.\d+\.\d+", sandbox["version"])
    assert version_match is not None, sandbox["version"]
    assert int(version_match.group(1)) >= 5
    assert sandbox["lambdaSrc"] == task_root

    credentials = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    for key in credentials:
        if key in environ:
            assert env[key] == environ[key], key
        else:
            assert env[key], key

    if runtime == "python":
        assert env["PYTHONUNBUFFERED"] == "1"
        assert env["PYTHONPATH"].split(os.pathsep)[0] == f"{task_root}/vendor"
        import_path = {"PYTHONUNBUFFERED", "PYTHONPATH"}
    else:
        assert "PYTHONUNBUFFERED" not in env
        assert env["NODE_PATH"]
        import_path = {"NODE_PATH"}

    assert SENTINEL not in env
    assert "must not leak" not in env.values()
    assert "HOME" not in env
    allowed = (
        set(expected)
        | {
            "AWS_LAMBDA_FUNCTION_NAME",
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "AWS_LAMBDA_RUNTIME_API",
            "LAMBDA_RUNTIME_DIR",
            "ARC_ROLE",
            "ARC_SANDBOX",
        }
        | set(credentials)
        | import_path
        | RUNTIME_ADDED[runtime]
    )
    assert set(env) - allowed == set()


def _listing(directory: Path) -> list[str]:
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*"))


async def test_shared_code_is_importable(project: Project, start_emulator: EmulatorFactory) -> None:
    shared = project.root / "src" / "shared"
    shared.mkdir(parents=True)
    (shared / "greeting.py").write_text(
        "def greet(name):\n    return f'hello {name} from shared'\n"
    )
    (shared / "index.js").write_text("exports.greet = (name) => `hello ${name} from shared`;\n")
    python_dir = project.handler(
        "default",
        """
        from shared.greeting import greet

        def handler(event, context):
            return {"statusCode": 200, "body": greet("python")}
        """,
    )
    cjs_dir = project.handler(
        "cjs",
        """
        const { greet } = require('@architect/shared');
        exports.handler = async () => ({ statusCode: 200, body: greet('cjs') });
        """,
        runtime="node",
    )
    esm_dir = project.handler(
        "esm",
        """
        import { greet } from '@architect/shared';
        export const handler = async () => ({ statusCode: 200, body: greet('esm') });
        """,
        runtime="node-esm",
    )
    project.write()
    directories = [python_dir, cjs_dir, esm_dir, shared]
    before = [_listing(directory) for directory in directories]

    emulator = await start_emulator(route_responses=True)
    async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
        replies = []
        for message in ("python", json.dumps({"action": "cjs"}), json.dumps({"action": "esm"})):
            await ws.send_str(message)
            replies.append(await ws.receive_str(timeout=15))
    await emulator.stop()

    assert replies == [
        "hello python from shared",
        "hello cjs from shared",
        "hello esm from shared",
    ]
    assert [_listing(directory) for directory in directories] == before


@pytest.mark.timeout(60)
async def test_missing_python_version_falls_back(
    project: Project, start_emulator: EmulatorFactory
) -> None:
    handler = """
    import json, os, sys

    def handler(event, context):
        return {"statusCode": 200, "body": json.dumps({
            "version": list(sys.version_info[:2]),
            "env": os.environ["AWS_EXECUTION_ENV"],
        })}
    """
    project.handler("default", handler, config={"runtime": "python3.99"})
    project.handler("other", handler, config={"runtime": "python3.99"})
    with capture_logs() as logs:
        emulator = await start_emulator(route_responses=True)
        async with aiohttp.ClientSession() as session, session.ws_connect(emulator.url) as ws:
            await ws.send_str("hello")
            reply = await receive_json(ws)
            await ws.send_str(json.dumps({"action": "other"}))
            other = await receive_json(ws)

    assert reply["env"] == other["env"] == "AWS_Lambda_python3.99"
    assert reply["version"][0] == 3
    warnings = [m for m in logs.messages("emulator", logging.WARNING) if "python3.99" in m]
    assert len(warnings) == 1, warnings
    assert "python3.99 is not on PATH" in warnings[0]
    assert "python3" in warnings[0].replace("python3.99", "")
