"""The Lambda environment variables each function's environments get.

The worker adds the ones that differ per environment (`_HANDLER`,
`AWS_LAMBDA_RUNTIME_API`, `AWS_LAMBDA_LOG_STREAM_NAME`,
`LAMBDA_RUNTIME_DIR`); everything else is built here, once per function,
from the configuration and the emulator's own environment. Nothing else
of the emulator's environment passes through unless `--pass-env` names it.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from emulator.config import AppConfig, FunctionConfig, Options

ACCOUNT_ID = "012345678912"
# Placeholder credentials: SDKs refuse to sign requests without some.
PLACEHOLDER_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AWS_SESSION_TOKEN": "emulator-session-token",
}
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
# The Architect sandbox release whose environment the emulator reproduces.
# `@architect/functions` 8 compares it, part by part as strings, against
# "5.0.0" and refuses to load below it, so a single-digit major matters.
ARCHITECT_SANDBOX_VERSION = "9.0.0"


@dataclass(frozen=True)
class Endpoints:
    """The gateway addresses that functions call, known once it listens."""

    port: int
    internal_port: int
    management_url: str


def function_name(app: AppConfig, function: FunctionConfig) -> str:
    """Return the Lambda function name: letters, digits, `-` and `_`, at most 64 chars."""
    route = re.sub(r"[^A-Za-z0-9_-]+", "-", function.name).strip("-") or "route"
    return f"{app.name}-ws-{route}"[:64]


def function_arn(function: FunctionConfig, name: str) -> str:
    return f"arn:aws:lambda:{function.region}:{ACCOUNT_ID}:function:{name}"


def build_environment(
    app: AppConfig,
    function: FunctionConfig,
    options: Options,
    endpoints: Endpoints,
    environ: Mapping[str, str],
) -> dict[str, str]:
    """Return the environment shared by every execution environment of `function`."""
    name = function_name(app, function)
    env: dict[str, str] = {
        "LAMBDA_TASK_ROOT": str(function.src),
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": function.region,
        "AWS_DEFAULT_REGION": function.region,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.runtime}",
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
        "PATH": environ.get("PATH", DEFAULT_PATH),
        "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI": endpoints.management_url,
        "ARC_APP_NAME": app.name,
        "ARC_ENV": "testing",
        "ARC_ROLE": "SandboxRole",
        "ARC_SESSION_TABLE_NAME": "jwe",
        "ARC_WSS_URL": f"ws://localhost:{endpoints.port}",
        "ARC_SANDBOX": json.dumps(
            {
                "ports": {"http": endpoints.port, "_arc": endpoints.internal_port},
                "cwd": str(app.root),
                "version": ARCHITECT_SANDBOX_VERSION,
                "lambdaSrc": str(function.src),
                "lambdaTimeout": function.timeout * 1000,
                "lambdaMemory": function.memory,
            },
            separators=(",", ":"),
        ),
    }
    for key, placeholder in PLACEHOLDER_CREDENTIALS.items():
        env[key] = environ.get(key, placeholder)
    if "AWS_SESSION_TOKEN" not in environ and "AWS_ACCESS_KEY_ID" in environ:
        # Real long-term keys come without a session token.
        del env["AWS_SESSION_TOKEN"]
    if function.runtime.startswith("python"):
        env["PYTHONUNBUFFERED"] = "1"
    elif function.runtime == "deno":
        env["DENO_DIR"] = deno_dir(environ)
        # Deno colors its own messages even when its output is a pipe.
        env["NO_COLOR"] = "1"
    for key in options.pass_env:
        if key in environ:
            env[key] = environ[key]
    env.update(app.user_env)
    return env


def python_path(function: FunctionConfig, shared_dir: Path | None) -> list[str]:
    """Return the PYTHONPATH entries: the handler's `vendor` dir, then shared code."""
    paths = [str(function.src / "vendor")]
    if shared_dir is not None:
        paths.append(str(shared_dir / "vendor"))
    return paths


def node_path(shared_dir: Path | None) -> list[str]:
    return [str(shared_dir / "node_modules")] if shared_dir is not None else []


def ruby_lib(function: FunctionConfig, shared_dir: Path | None) -> list[str]:
    """Return the RUBYLIB entries, so that `require 'shared/name'` finds shared code."""
    return python_path(function, shared_dir)


def deno_dir(environ: Mapping[str, str]) -> str:
    """Return the Deno cache directory: the one the user's own `deno` uses.

    Deno's default is `$XDG_CACHE_HOME/deno`, else `~/.cache/deno`, and the
    function's environment has neither variable, so it is set explicitly.
    """
    if environ.get("DENO_DIR"):
        return environ["DENO_DIR"]
    if environ.get("XDG_CACHE_HOME"):
        return str(Path(environ["XDG_CACHE_HOME"]) / "deno")
    if environ.get("HOME"):
        return str(Path(environ["HOME"]) / ".cache" / "deno")
    return str(Path(tempfile.gettempdir()) / "arc-ws-emulator-deno")
