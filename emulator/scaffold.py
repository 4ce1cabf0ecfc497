"""`python -m emulator init`: write the manifest and starter handlers of a project.

`init_project` writes `app.arc` when the project has no manifest. Then
it gives every `@ws` route whose handler directory has no handler file
the directory and a handler for the route's runtime, plus a `config.arc`
naming the runtime when it differs from the project's. It never changes
a file that exists.

Each starter handler logs its event and returns `{"statusCode": 200}`.
Handlers of message routes (`$default` and the custom routes) also return
a `body` naming the route, which API Gateway sends to the client when the
route has a route response (`--route-responses` here).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.errors import ConfigError
from emulator.manifest import canonical_runtime, resolve_handler, runtime_family
from emulator.manifest.documents import Document, find_function_config, find_manifest
from emulator.manifest.handlers import DEFAULT_HANDLER_FILES, DEFAULT_METHOD
from emulator.manifest.routes import (
    RouteDeclaration,
    locate_handler_directory,
    read_routes,
)
from emulator.manifest.runtimes import DEFAULT_RUNTIME, VALID_RUNTIMES_TEXT, RuntimeFamily
from emulator.manifest.settings import read_aws_settings

logger = logging.getLogger(__name__)

MANIFEST_NAME = "app.arc"
CONFIG_NAME = "config.arc"

# An app name made from a directory name keeps letters, digits, `.`, `_`
# and `-`, which `.arc` accepts unquoted. Other characters become `-`.
_APP_NAME_INVALID = re.compile(r"[^A-Za-z0-9._-]+")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Placeholders in the templates below.
_ROUTE = "__ROUTE_KEY__"
_METHOD = "__METHOD__"

_WRITTEN_BY = "written by `python3 -m emulator init`"

_PYTHON = f'''"""Handler of the WebSocket route {_ROUTE}, {_WRITTEN_BY}."""

import json


def {_METHOD}(event, context):
    print(json.dumps(event))
    return {{"statusCode": 200}}
'''

_PYTHON_MESSAGE = f'''"""Handler of the WebSocket route {_ROUTE}, {_WRITTEN_BY}."""

import json


def {_METHOD}(event, context):
    print(json.dumps(event))
    # API Gateway sends `body` to the client when the route has a route response.
    route = event["requestContext"]["routeKey"]
    return {{"statusCode": 200, "body": json.dumps({{"route": route}})}}
'''

_NODE_ESM = f"""// Handler of the WebSocket route {_ROUTE}, {_WRITTEN_BY}.
export async function {_METHOD}(event, context) {{
  console.log(JSON.stringify(event));
  return {{ statusCode: 200 }};
}}
"""

_NODE_ESM_MESSAGE = f"""// Handler of the WebSocket route {_ROUTE}, {_WRITTEN_BY}.
export async function {_METHOD}(event, context) {{
  console.log(JSON.stringify(event));
  // API Gateway sends `body` to the client when the route has a route response.
  const route = event.requestContext.routeKey;
  return {{ statusCode: 200, body: JSON.stringify({{ route }}) }};
}}
"""

_NODE_CJS = f"""// Handler of the WebSocket route {_ROUTE}, {_WRITTEN_BY}.
exports.{_METHOD} = async function (event, context) {{
  console.log(JSON.stringify(event));
  return {{ statusCode: 200 }};
}};
"""

_NODE_CJS_MESSAGE = f"""// Handler of the WebSocket route {_ROUTE}, {_WRITTEN_BY}.
exports.{_METHOD} = async function (event, context) {{
  console.log(JSON.stringify(event));
  // API Gateway sends `body` to the client when the route has a route response.
  const route = event.requestContext.routeKey;
  return {{ statusCode: 200, body: JSON.stringify({{ route }}) }};
}};
"""

_RUBY = f"""# Handler of the WebSocket route {_ROUTE}, {_WRITTEN_BY}.
require 'json'

def {_METHOD}(event:, context:)
  puts JSON.generate(event)
  {{ statusCode: 200 }}
end
"""

_RUBY_MESSAGE = f"""# Handler of the WebSocket route {_ROUTE}, {_WRITTEN_BY}.
require 'json'

def {_METHOD}(event:, context:)
  puts JSON.generate(event)
  # API Gateway sends `body` to the client when the route has a route response.
  route = event['requestContext']['routeKey']
  {{ statusCode: 200, body: JSON.generate({{ route: route }}) }}
end
"""

_DENO = f"""// Handler of the WebSocket route {_ROUTE}, {_WRITTEN_BY}.
interface WebSocketEvent {{
  requestContext: {{ routeKey: string; connectionId: string }};
  body?: string;
}}

export function {_METHOD}(event: WebSocketEvent): {{ statusCode: number }} {{
  console.log(JSON.stringify(event));
  return {{ statusCode: 200 }};
}}
"""

_DENO_MESSAGE = f"""// Handler of the WebSocket route {_ROUTE}, {_WRITTEN_BY}.
interface WebSocketEvent {{
  requestContext: {{ routeKey: string; connectionId: string }};
  body?: string;
}}

export function {_METHOD}(event: WebSocketEvent): {{ statusCode: number; body: string }} {{
  console.log(JSON.stringify(event));
  // API Gateway sends `body` to the client when the route has a route response.
  const route = event.requestContext.routeKey;
  return {{ statusCode: 200, body: JSON.stringify({{ route }}) }};
}}
"""

# A custom runtime in POSIX sh with curl, after the shell example in the
# AWS Lambda Developer Guide ("Building a custom runtime"). `curl -D -`
# writes the response headers, a blank line, then the event.
_BOOTSTRAP = f"""#!/bin/sh
# Handler of the WebSocket route {_ROUTE}, {_WRITTEN_BY}: a custom
# runtime that speaks the Lambda Runtime API with curl. Each turn of the
# loop takes the next event, logs it and posts the response.
set -eu

api="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/invocation"

while true; do
  response="$(curl -sS -D - "$api/next")"
  request_id="$(printf '%s\\n' "$response" | awk -F': ' '
    tolower($1) == "lambda-runtime-aws-request-id" {{ sub(/\\r$/, "", $2); print $2; exit }}')"
  printf '%s\\n' "$response" | awk '{{ sub(/\\r$/, "") }} body {{ print }} $0 == "" {{ body = 1 }}'
  curl -sS -o /dev/null -H 'Content-Type: application/json' \\
    --data-binary '__RESPONSE__' "$api/$request_id/response"
done
"""

_TEMPLATES: dict[str, tuple[str, str]] = {
    # kind: (template of connect and disconnect, template of message routes)
    "python": (_PYTHON, _PYTHON_MESSAGE),
    "nodejs-esm": (_NODE_ESM, _NODE_ESM_MESSAGE),
    "nodejs-cjs": (_NODE_CJS, _NODE_CJS_MESSAGE),
    "ruby": (_RUBY, _RUBY_MESSAGE),
    "deno": (_DENO, _DENO_MESSAGE),
}


@dataclass(frozen=True)
class PlannedHandler:
    """The starter handler that `init` writes for one route."""

    route_key: str
    directory: Path
    runtime: str
    # Relative to `directory`; may contain `/` when a `handler` setting
    # names a file in a subdirectory. None when only the config is missing.
    file_name: str | None
    method: str
    # Write a config.arc naming `runtime`, because it differs from the project's.
    write_config: bool


def init_project(root: Path, runtime: str | None = None) -> list[Path]:
    """Write what the project in `root` lacks to start; return the files written, in order.

    `runtime` (a Lambda runtime or an alias such as `python`) is the
    runtime of the handlers written for routes whose directory sets none,
    and of the project when `app.arc` is written. Creates `root` if it is
    missing. Raises ConfigError for an invalid runtime or manifest, and
    for a handler directory that is a file or lies outside the project.
    """
    if runtime is not None and canonical_runtime(runtime) is None:
        raise ConfigError(
            f"invalid runtime '{runtime}'", hint=f"Give one of: {VALID_RUNTIMES_TEXT}."
        )
    if root.exists() and not root.is_dir():
        raise ConfigError(f"project directory {root} is a file, not a directory")
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()

    written: list[Path] = []
    manifest = find_manifest(root)
    if manifest is None:
        written.append(_write_manifest(root, runtime))
        manifest = find_manifest(root)
        assert manifest is not None
    if "ws" not in manifest.pragmas:
        raise ConfigError(
            "the manifest has no @ws pragma, so there are no WebSocket routes to create",
            path=manifest.path,
            hint="Add a line `@ws` with the custom routes below it, then run init again.",
        )

    project_settings = read_aws_settings(manifest)
    # One route at a time, so that a route sharing its directory with an
    # earlier one (through `src`) finds the handler written for that one.
    for route in read_routes(manifest):
        planned = plan_handler(root, manifest, route, project_settings, runtime)
        if planned is not None:
            written.extend(_write_handler(planned))
    return written


def plan_handler(
    root: Path,
    manifest: Document,
    route: RouteDeclaration,
    project_settings: dict[str, Any],
    runtime: str | None,
) -> PlannedHandler | None:
    """Return the handler to write for `route`, or None if its directory has a handler file.

    `root` must be resolved, and `project_settings` are the manifest's
    `@aws` settings. A runtime set by the route's own config file wins
    over `runtime`.
    """
    directory = locate_handler_directory(root, manifest, route)
    config = find_function_config(directory) if directory.is_dir() else None
    own_settings = read_aws_settings(config) if config is not None else {}
    settings = {**project_settings, **own_settings}

    project_runtime = project_settings.get("runtime", DEFAULT_RUNTIME)
    route_runtime: str = settings.get("runtime", project_runtime)
    handler_setting: str | None = settings.get("handler")
    if _find_handler(directory, route_runtime, handler_setting) is not None:
        return None

    write_config = False
    differs = runtime is not None and canonical_runtime(runtime) != project_runtime
    if runtime is not None and "runtime" not in own_settings and differs and config is not None:
        # The config file is the user's and stays as it is, so the route
        # keeps the project's runtime and gets a handler for that.
        logger.warning(
            "route %s: %s sets no runtime, so its handler is for the project's %s, not %s; "
            "add `runtime %s` to its @aws to change that",
            route.route_key,
            config.path,
            project_runtime,
            runtime,
            runtime,
        )
    elif runtime is not None and "runtime" not in own_settings:
        route_runtime = runtime
        write_config = differs
        if _find_handler(directory, route_runtime, handler_setting) is not None:
            # The handler exists for the new runtime, so only the config is missing.
            if not write_config:
                return None
            return PlannedHandler(
                route.route_key, directory, route_runtime, None, DEFAULT_METHOD, write_config
            )

    canonical = _canonical(route_runtime)
    _, _, method = resolve_handler(canonical, directory, handler_setting)
    return PlannedHandler(
        route_key=route.route_key,
        directory=directory,
        runtime=route_runtime,
        file_name=_handler_file_name(root, directory, canonical, handler_setting),
        method=method,
        write_config=write_config,
    )


def _find_handler(directory: Path, runtime: str, handler_setting: str | None) -> str | None:
    return resolve_handler(_canonical(runtime), directory, handler_setting)[1]


def _canonical(runtime: str) -> str:
    canonical = canonical_runtime(runtime)
    assert canonical is not None, "read_aws_settings and init_project validate runtimes"
    return canonical


def _write_manifest(root: Path, runtime: str | None) -> Path:
    lines = ["@app", app_name_for(root), "", "@ws"]
    if runtime is not None:
        lines += ["", "@aws", f"runtime {runtime}"]
    path = root / MANIFEST_NAME
    _create(path, "\n".join(lines) + "\n")
    return path


def app_name_for(root: Path) -> str:
    """Return an app name made from a directory name: letters, digits, `.`, `_` and `-`."""
    name = _APP_NAME_INVALID.sub("-", root.name).strip("-.")
    return name or "app"


def _handler_file_name(
    root: Path, directory: Path, runtime: str, handler_setting: str | None
) -> str:
    family = runtime_family(runtime)
    if family == "provided":
        return "bootstrap"
    if family == "nodejs":
        extension = ".mjs" if _node_uses_esm(root, directory) else ".js"
    else:
        extension = Path(DEFAULT_HANDLER_FILES[family][0]).suffix
    if handler_setting is not None:
        base = handler_setting.rpartition(".")[0]
        return base + extension
    stem = Path(DEFAULT_HANDLER_FILES[family][0]).stem
    return stem + extension


def _node_uses_esm(root: Path, directory: Path) -> bool:
    """Tell whether a new Node.js handler in `directory` should be an ES module.

    Node.js reads the nearest package.json. Without one, the handler is
    written as `index.mjs`. Under one without `"type": "module"`, it is a
    CommonJS `index.js`, which matches the project's other code.
    """
    for folder in (directory, *directory.parents):
        package = folder / "package.json"
        if package.is_file():
            try:
                data = json.loads(package.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
                raise ConfigError(
                    f"failed to read {package}: {error}",
                    hint="Fix the file; init reads its `type` to choose between "
                    "an ES module and CommonJS handler.",
                ) from error
            return isinstance(data, dict) and data.get("type") == "module"
        if folder == root:
            break
    return True


def _write_handler(planned: PlannedHandler) -> list[Path]:
    family = runtime_family(_canonical(planned.runtime))
    written: list[Path] = []
    if planned.file_name is not None:
        _check_method_name(family, planned)
        path = planned.directory / planned.file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        _create(path, handler_source(family, planned, module=path.suffix))
        if family == "provided":
            path.chmod(0o755)
        written.append(path)
    if planned.write_config:
        config = planned.directory / CONFIG_NAME
        text = f"# Settings of the route {planned.route_key}, {_WRITTEN_BY}.\n"
        text += f"@aws\nruntime {planned.runtime}\n"
        _create(config, text)
        written.append(config)
    return written


def handler_source(family: RuntimeFamily, planned: PlannedHandler, *, module: str = "") -> str:
    """Return the text of a starter handler; `module` is a Node.js file's extension."""
    # Only message routes send a route response, so only their handlers return a body.
    is_message = planned.route_key not in ("$connect", "$disconnect")
    if family == "provided":
        body = json.dumps({"route": planned.route_key})
        response = {"statusCode": 200, "body": body} if is_message else {"statusCode": 200}
        return _BOOTSTRAP.replace(_ROUTE, planned.route_key).replace(
            "__RESPONSE__", json.dumps(response)
        )
    kind: str = family
    if family == "nodejs":
        kind = "nodejs-esm" if module == ".mjs" else "nodejs-cjs"
    plain, message = _TEMPLATES[kind]
    template = message if is_message else plain
    return template.replace(_ROUTE, planned.route_key).replace(_METHOD, planned.method)


def _check_method_name(family: RuntimeFamily, planned: PlannedHandler) -> None:
    # Node.js and Deno also accept `$` in names; Python and Ruby do not.
    if family in ("python", "ruby") and not _IDENTIFIER.fullmatch(planned.method):
        raise ConfigError(
            f"cannot write a {planned.runtime} handler for route {planned.route_key}: "
            f"`{planned.method}` is not a valid method name in that language",
            hint="Change the route's `handler` setting to `file.method` with a method "
            "name of letters, digits and underscores.",
        )


def _create(path: Path, text: str) -> None:
    """Write a new file; raise ConfigError instead of replacing one that exists."""
    try:
        with path.open("x", encoding="utf-8") as file:
            file.write(text)
    except FileExistsError as error:
        raise ConfigError(
            f"{path} exists, and init does not overwrite files",
            hint="Remove or rename it to have init write a new one.",
        ) from error
