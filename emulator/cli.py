"""The command line: `python -m emulator [start|routes|init|invoke] [PROJECT_DIR] [options]`.

`start` is the default command, so `python -m emulator DIR` starts the
emulator. The environment variables that set options are read here and
handed to `build_options` as a mapping, so that the mapping of arguments
to `Options` can be tested without a process.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from emulator import __version__
from emulator.config import AppConfig, Options
from emulator.errors import ConfigError, EmulatorError
from emulator.logs import FUNCTION_LOGGER, LOG_FORMATS, LogFormat, configure_logging
from emulator.manifest import canonical_runtime, format_route_table, load_project
from emulator.manifest.runtimes import VALID_RUNTIMES_TEXT

logger = logging.getLogger(__name__)

PROG = "python3 -m emulator"
COMMANDS = ("start", "routes", "init", "invoke")
DEFAULT_COMMAND = "start"

# Exit status for configuration errors, the status argparse uses for usage errors.
EXIT_CONFIG_ERROR = 2
# Exit status of `invoke` when the invocation failed.
EXIT_INVOCATION_FAILED = 1

# Environment variables that set ports, in order of precedence. Architect's
# sandbox reads the same names.
HTTP_PORT_VARIABLES = ("ARC_HTTP_PORT", "PORT")
INTERNAL_PORT_VARIABLE = "ARC_INTERNAL_PORT"

# watchfiles' own switch for polling; like watchfiles, any value other than
# these (compared without case) turns polling on.
FORCE_POLLING_VARIABLE = "WATCHFILES_FORCE_POLLING"
FORCE_POLLING_OFF_VALUES = frozenset({"false", "disable", "disabled"})

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

_DEFAULTS = Options()
_STAGE_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return the exit status."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(_with_default_command(arguments))
    log_format: LogFormat = getattr(args, "log_format", "text")
    level = getattr(logging, getattr(args, "log_level", "INFO"))
    configure_logging(logging.DEBUG if getattr(args, "verbose", False) else level, None, log_format)

    try:
        if args.command == "routes":
            return _run_routes(args)
        if args.command == "init":
            return _run_init(args)
        if args.command == "invoke":
            return _run_invoke(args, os.environ)
        return _run_start(args, os.environ)
    except EmulatorError as error:
        if log_format == "json":
            logger.error("%s", error)
        else:
            print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG_ERROR


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with its `start`, `routes`, `init` and `invoke` subcommands."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage=f"{PROG} [COMMAND] [PROJECT_DIR] [options]",
        description="Run the WebSocket API (@ws) of an Architect project locally, "
        "with API Gateway's behaviour and Lambda-like execution environments.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    start = subparsers.add_parser(
        "start",
        prog=f"{PROG} start",
        help="run the emulator (the default command)",
        description="Run the emulator until Ctrl+C or SIGTERM.",
    )
    _add_project_argument(start)
    _add_start_options(start)
    _add_logging_options(start, log_format=True)

    routes = subparsers.add_parser(
        "routes",
        prog=f"{PROG} routes",
        help="print the app name and its routes with their settings, then exit",
        description="Print the app name and a table of its @ws routes: route key, "
        "handler directory, runtime, timeout and memory.",
    )
    _add_project_argument(routes)
    _add_logging_options(routes)
    _add_init_parser(subparsers)
    _add_invoke_parser(subparsers)

    # The top-level help shows the arguments of `start` too, because running
    # without a command runs `start`. The first two paragraphs of its help
    # are the usage line and the description.
    start_arguments = start.format_help().split("\n\n", 2)[-1]
    parser.epilog = (
        f"Without a command, {DEFAULT_COMMAND} runs. Options go after the command "
        f"and the project directory.\n\nArguments of {DEFAULT_COMMAND}:\n\n{start_arguments}"
    )
    return parser


def build_options(args: argparse.Namespace, environ: Mapping[str, str]) -> Options:
    """Build `Options` from parsed `start` arguments and the emulator's environment.

    Raises ConfigError for an invalid port in an environment variable.
    """
    given: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "internal_port": args.internal_port,
        "stage": args.stage,
        "max_message_bytes": args.max_message_bytes,
        "max_frame_bytes": args.max_frame_bytes,
        "idle_timeout": args.idle_timeout,
        "max_connection_duration": args.max_connection_duration,
        "integration_timeout": args.integration_timeout,
        "shutdown_timeout": args.shutdown_timeout,
        "default_concurrency": args.concurrency,
        "queue_size": args.queue_size,
        "idle_environment_timeout": args.idle_environment_timeout,
    }
    changes = {name: value for name, value in given.items() if value is not None}

    if args.port is None:
        changes["port"] = _port_from_environ(environ, HTTP_PORT_VARIABLES, _DEFAULTS.port)
    if args.internal_port is None:
        changes["internal_port"] = _port_from_environ(
            environ, (INTERNAL_PORT_VARIABLE,), _DEFAULTS.internal_port
        )

    changes["route_responses"] = args.route_responses
    changes["prewarm"] = not args.no_prewarm
    changes["watch"] = not args.no_watch
    changes["watch_polling"] = args.watch_polling or _force_polling_from_environ(environ)
    changes["allow_remote_management"] = args.allow_remote_management
    # Keep the first occurrence of each name, in the order given.
    changes["pass_env"] = tuple(dict.fromkeys(args.pass_env))
    return dataclasses.replace(_DEFAULTS, **changes)


def _run_routes(args: argparse.Namespace) -> int:
    app = load_project(Path(args.project_dir))
    manifest = (
        app.manifest.relative_to(app.root)
        if app.manifest.is_relative_to(app.root)
        else app.manifest
    )
    print(f"App: {app.name} ({manifest})")
    print(format_route_table(app))
    if app.other_pragmas:
        names = ", ".join(f"@{pragma}" for pragma in app.other_pragmas)
        print(f"Not emulated: {names}")
    _warn_missing_handler_files(app)
    return 0


def _run_init(args: argparse.Namespace) -> int:
    # Imported here, like the server's modules, only for the command that needs it.
    from emulator.scaffold import init_project

    root = Path(args.project_dir)
    written = init_project(root, args.runtime)
    for path in written:
        print(f"created {path.relative_to(root.resolve())}")
    if not written:
        print("nothing to create: the manifest and every route's handler exist")
    where = "" if args.project_dir == "." else f" {args.project_dir}"
    # The starter handlers return a body, which clients see only as route responses.
    print(f"start the emulator with: {PROG}{where} --route-responses")
    return 0


def _run_invoke(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    import asyncio

    from emulator.oneoff import (
        check_body,
        failure_body,
        find_route,
        invoke_once,
        read_event_file,
    )

    # The function's lines print whatever the level of the emulator's own messages.
    logging.getLogger(FUNCTION_LOGGER).setLevel(logging.INFO)
    app = load_project(Path(args.project_dir))
    route = find_route(app, args.route)
    check_body(app, route, args.body)
    event = read_event_file(args.event) if args.event is not None else None
    options = dataclasses.replace(
        _DEFAULTS,
        port=0,
        internal_port=0,
        watch=False,
        prewarm=False,
        pass_env=tuple(dict.fromkeys(args.pass_env)),
    )
    result = asyncio.run(
        invoke_once(app, options, route, body=args.body, event=event, environ=environ)
    )
    if not result.ok:
        print(failure_body(result), flush=True)
        return EXIT_INVOCATION_FAILED
    print((result.payload or b"null").decode("utf-8", "replace"), flush=True)
    return 0


def _run_start(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    options = build_options(args, environ)
    app = load_project(Path(args.project_dir))
    _warn_missing_handler_files(app)

    # Imported here so that `routes` works without the server's modules.
    from emulator.app import serve

    return serve(app, options)


def _warn_missing_handler_files(app: AppConfig) -> None:
    for function in app.functions:
        if function.handler_file is None:
            logger.warning(
                "route %s: no handler file for %s (%s) in %s, so invocations fail until one "
                "exists; `python3 -m emulator init` writes a starter handler",
                function.route_key,
                function.handler,
                function.runtime,
                function.src,
            )


def _with_default_command(arguments: Sequence[str]) -> list[str]:
    """Insert the default command unless the arguments start with a command or a top-level flag."""
    if arguments and arguments[0] in (*COMMANDS, "-h", "--help", "--version"):
        return list(arguments)
    return [DEFAULT_COMMAND, *arguments]


def _port_from_environ(environ: Mapping[str, str], names: Sequence[str], default: int) -> int:
    for name in names:
        value = environ.get(name, "").strip()
        if not value:
            continue
        try:
            return _port(value)
        except argparse.ArgumentTypeError as error:
            raise ConfigError(
                f"invalid {name} value '{value}': {error}",
                hint=f"Set {name} to a port number, unset it, or pass the port as an option.",
            ) from error
    return default


def _force_polling_from_environ(environ: Mapping[str, str]) -> bool:
    value = environ.get(FORCE_POLLING_VARIABLE, "")
    return bool(value) and value.lower() not in FORCE_POLLING_OFF_VALUES


def _add_project_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "project_dir",
        nargs="?",
        default=".",
        metavar="PROJECT_DIR",
        help="the Architect project: the directory that contains app.arc, arc.json, "
        "arc.yaml or a package.json with an `arc` key (default: the current directory)",
    )


def _add_start_options(parser: argparse.ArgumentParser) -> None:
    network = parser.add_argument_group("network")
    network.add_argument(
        "--host",
        help=f"address to listen on (default: {_DEFAULTS.host})",
    )
    network.add_argument(
        "--port",
        type=_port,
        metavar="PORT",
        help="port of the WebSocket API and the @connections management API; "
        "0 picks a free port and prints it "
        f"(default: $ARC_HTTP_PORT, else $PORT, else {_DEFAULTS.port})",
    )
    network.add_argument(
        "--internal-port",
        type=_port,
        metavar="PORT",
        help="port of Architect's internal service, where @architect/functions "
        "sends ws.send, ws.info and ws.close; 0 picks a free port "
        f"(default: ${INTERNAL_PORT_VARIABLE}, else {_DEFAULTS.internal_port})",
    )
    network.add_argument(
        "--allow-remote-management",
        action="store_true",
        help="accept @connections management API requests from addresses other than "
        "loopback (default: loopback clients only)",
    )

    gateway = parser.add_argument_group("API Gateway")
    gateway.add_argument(
        "--stage",
        type=_stage,
        metavar="NAME",
        help=f"stage name in events and management API paths (default: {_DEFAULTS.stage})",
    )
    gateway.add_argument(
        "--route-responses",
        action="store_true",
        help="send the `body` that a message handler returns to the client as a text frame, "
        "as API Gateway does for routes with a route response (default: off)",
    )
    gateway.add_argument(
        "--max-message-bytes",
        type=_positive_int,
        metavar="BYTES",
        help="largest message a client may send, in bytes; a larger one closes the "
        f"connection with 1009 (default: {_DEFAULTS.max_message_bytes})",
    )
    gateway.add_argument(
        "--max-frame-bytes",
        type=_positive_int,
        metavar="BYTES",
        help="largest single WebSocket frame a client may send, in bytes; a larger one "
        f"closes the connection with 1009 (default: {_DEFAULTS.max_frame_bytes})",
    )
    gateway.add_argument(
        "--idle-timeout",
        type=_positive_seconds,
        metavar="SECONDS",
        help="close a connection after this many seconds without a frame in either "
        f"direction (default: {_format_number(_DEFAULTS.idle_timeout)})",
    )
    gateway.add_argument(
        "--max-connection-duration",
        type=_positive_seconds,
        metavar="SECONDS",
        help="close a connection this many seconds after it opened "
        f"(default: {_format_number(_DEFAULTS.max_connection_duration)})",
    )
    gateway.add_argument(
        "--integration-timeout",
        type=_positive_seconds,
        metavar="SECONDS",
        help="stop waiting for a handler after this many seconds, even if its own timeout "
        f"is longer (default: {_format_number(_DEFAULTS.integration_timeout)})",
    )

    functions = parser.add_argument_group("functions")
    functions.add_argument(
        "--concurrency",
        type=_positive_int,
        metavar="N",
        help="max execution environments per function whose @aws sets no concurrency "
        f"(default: {_DEFAULTS.default_concurrency})",
    )
    functions.add_argument(
        "--queue-size",
        type=_non_negative_int,
        metavar="N",
        help="invocations per function that may wait for a free execution environment; "
        f"more fail as throttled (default: {_DEFAULTS.queue_size})",
    )
    functions.add_argument(
        "--idle-environment-timeout",
        type=_positive_seconds,
        metavar="SECONDS",
        help="stop an idle execution environment, other than a function's first, after "
        f"this many seconds (default: {_format_number(_DEFAULTS.idle_environment_timeout)})",
    )
    functions.add_argument(
        "--no-prewarm",
        action="store_true",
        help="start each function's first execution environment at its first invocation "
        "instead of at startup (default: started at startup)",
    )
    functions.add_argument(
        "--pass-env",
        action="append",
        default=[],
        type=_env_name,
        metavar="NAME",
        help="pass the emulator's environment variable NAME to every function; repeat the "
        "option for more variables (default: none)",
    )

    lifecycle = parser.add_argument_group("lifecycle")
    lifecycle.add_argument(
        "--shutdown-timeout",
        type=_non_negative_seconds,
        metavar="SECONDS",
        help="time that $disconnect handlers get when the emulator stops, in seconds "
        f"(default: {_format_number(_DEFAULTS.shutdown_timeout)})",
    )
    lifecycle.add_argument(
        "--no-watch",
        action="store_true",
        help="do not restart functions when project files change (default: watch)",
    )
    lifecycle.add_argument(
        "--watch-polling",
        action="store_true",
        help="find project changes by scanning the files every 300 ms instead of through "
        "file system events, for mounts that deliver no events, such as some Docker bind "
        f"mounts; also on when ${FORCE_POLLING_VARIABLE} is set to a value other than "
        "false, disable or disabled (default: file system events)",
    )


def _add_init_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = subparsers.add_parser(
        "init",
        prog=f"{PROG} init",
        help="write app.arc and a starter handler for every route that has none",
        description="Write what a project needs to start: app.arc (with @app named after "
        "the directory, and @ws) when there is no manifest, and for every @ws route whose "
        "handler directory has no handler file, the directory and a handler that logs its "
        "event and returns status 200. Existing files are never changed. Prints each file "
        "it writes.",
    )
    init.add_argument(
        "project_dir",
        nargs="?",
        default=".",
        metavar="PROJECT_DIR",
        help="the project directory, created if missing (default: the current directory)",
    )
    init.add_argument(
        "--runtime",
        type=_runtime,
        metavar="RUNTIME",
        help="runtime of the handlers written for routes whose directory sets none, such as "
        "python3.12, nodejs22.x, ruby3.3, deno or provided.al2023 (a config.arc names it "
        "when it differs from the project's), and the @aws runtime of a new app.arc "
        "(default: the project's runtime, else nodejs22.x)",
    )


def _add_invoke_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    invoke = subparsers.add_parser(
        "invoke",
        prog=f"{PROG} invoke",
        help="run one route's function once on a sample event, print its response, then exit",
        description="Run the function of ROUTE once on the event API Gateway would send, "
        "print its logs (START, its output, END, REPORT) to stderr and its response to "
        f"stdout, then exit: status 0 on success, {EXIT_INVOCATION_FAILED} when the "
        f"invocation failed, {EXIT_CONFIG_ERROR} for an invalid project or arguments.",
    )
    invoke.add_argument(
        "route",
        metavar="ROUTE",
        help="the route: connect, default, disconnect (with or without `$`) or a custom name",
    )
    _add_project_argument(invoke)
    event = invoke.add_mutually_exclusive_group()
    event.add_argument(
        "--body",
        metavar="TEXT",
        help="the message body of a message route's event (default: a body that selects "
        'ROUTE, such as {"action": "ROUTE"}, or {} for default)',
    )
    event.add_argument(
        "--event",
        metavar="FILE",
        help="send the whole event from a JSON file, or from standard input for `-`, "
        "instead of building one",
    )
    invoke.add_argument(
        "--pass-env",
        action="append",
        default=[],
        type=_env_name,
        metavar="NAME",
        help="pass the emulator's environment variable NAME to the function; repeat the "
        "option for more variables (default: none)",
    )
    _add_logging_options(invoke, log_format=True, default_level="WARNING")


def _add_logging_options(
    parser: argparse.ArgumentParser, *, log_format: bool = False, default_level: str = "INFO"
) -> None:
    group = parser.add_argument_group("logging")
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log debug messages too; the same as --log-level DEBUG",
    )
    group.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=default_level,
        metavar="LEVEL",
        help=f"minimum level of the messages logged: {', '.join(LOG_LEVELS)} "
        f"(default: {default_level})",
    )
    if log_format:
        group.add_argument(
            "--log-format",
            choices=LOG_FORMATS,
            default="text",
            help="text: function lines as `[route] line` and the emulator's messages with "
            "time, level and logger; json: one JSON object per line, with START, END and "
            "REPORT fields as keys (default: text)",
        )


def _runtime(text: str) -> str:
    if canonical_runtime(text) is None:
        raise argparse.ArgumentTypeError(
            f"invalid runtime '{text}': expected {VALID_RUNTIMES_TEXT}"
        )
    return text


def _port(text: str) -> int:
    value = _parse_int(text)
    if value is None or not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"invalid port '{text}': expected an integer from 0 to 65535"
        )
    return value


def _positive_int(text: str) -> int:
    value = _parse_int(text)
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(
            f"invalid value '{text}': expected an integer of 1 or more"
        )
    return value


def _non_negative_int(text: str) -> int:
    value = _parse_int(text)
    if value is None or value < 0:
        raise argparse.ArgumentTypeError(
            f"invalid value '{text}': expected an integer of 0 or more"
        )
    return value


def _positive_seconds(text: str) -> float:
    return _seconds(text, lambda value: value > 0, "a number of seconds greater than 0")


def _non_negative_seconds(text: str) -> float:
    return _seconds(text, lambda value: value >= 0, "a number of seconds, 0 or more")


def _seconds(text: str, is_valid: Callable[[float], bool], expected: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not is_valid(value):
        raise argparse.ArgumentTypeError(f"invalid value '{text}': expected {expected}")
    return value


def _stage(text: str) -> str:
    if not _STAGE_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"invalid stage name '{text}': expected 1 to 128 letters, digits, `-` or `_`"
        )
    return text


def _env_name(text: str) -> str:
    if not _ENV_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"invalid environment variable name '{text}': expected letters, digits and "
            "underscores, not starting with a digit"
        )
    return text


def _parse_int(text: str) -> int | None:
    try:
        return int(text, 10)
    except ValueError:
        return None


def _format_number(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)
