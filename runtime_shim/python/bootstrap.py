"""A Lambda runtime for Python handlers, modelled on awslambdaric.

Run as `python3.X bootstrap.py` with the Lambda environment: it loads the
handler named by `_HANDLER` from `LAMBDA_TASK_ROOT`, then fetches events
from the Runtime API at `AWS_LAMBDA_RUNTIME_API` and posts each result back.
The context object, the error bodies and the log format follow awslambdaric
(aws/aws-lambda-python-runtime-interface-client), the client that the
managed Python runtimes run.

Standard library only, and Python 3.8 syntax, because it runs under
whichever python3.X the function's runtime names.
"""

import decimal
import importlib
import json
import logging
import os
import socket
import sys
import time
import traceback

API_PREFIX = "/2018-06-01/runtime"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
MAX_RESPONSE_HEAD = 64 * 1024
NEXT_PATH = API_PREFIX + "/invocation/next"
# The largest body posted in the same write as the next GET /next. The
# Runtime API's limit is 6,291,556 bytes.
MAX_PIPELINED_BODY = 6 * 1024 * 1024

MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
BUILT_IN_MODULE_CONFLICT = "Runtime.BuiltInModuleConflict"
MARSHAL_ERROR = "Runtime.MarshalError"
UNMARSHAL_ERROR = "Runtime.UnmarshalError"
CONTEXT_UNMARSHAL_ERROR = "Runtime.LambdaContextUnmarshalError"

# The request id of the running invocation, for the log format.
_current_request_id = None


class FaultError(Exception):
    """A failure that Lambda reports with one of its own `Runtime.*` error types."""

    def __init__(self, error_type, message, trace=None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace


class RuntimeApiError(Exception):
    """The Runtime API returned an unexpected status."""


# -- the Runtime API client ---------------------------------------------------


class RuntimeClient:
    """A Runtime API client over one persistent HTTP/1.1 connection.

    It speaks just the HTTP that the Runtime API needs, on a plain socket:
    `http.client` parses every response's headers with the `email`
    package, which cost more than the rest of a warm invocation.
    """

    def __init__(self, address):
        host, _, port = address.rpartition(":")
        self._address = (host, int(port))
        self._host_header = f"Host: {address}\r\n"
        self._socket = None
        self._buffer = bytearray()

    def next_invocation(self):
        """Block until the next event; return (body, headers), with lowercase header names."""
        return self._next_from(self._exchange([self._encode("GET", NEXT_PATH)])[0])

    def post_response(self, request_id, body, content_type):
        """Post a result; then wait for the next event and return it, as next_invocation() does.

        Unless the body is over the size limit, the GET /next request goes
        out in the same write as the POST (HTTP/1.1 pipelining), which
        saves this process a wake-up per invocation. A body over the limit
        gets 413 and may close the connection, so it goes alone.
        """
        path = f"{API_PREFIX}/invocation/{request_id}/response"
        return self._post_then_next(path, body, {"Content-Type": content_type})

    def post_error(self, request_id, body):
        """Post an error; then return the next event, as post_response() does."""
        # Like awslambdaric, send the error type in the body only.
        path = f"{API_PREFIX}/invocation/{request_id}/error"
        return self._post_then_next(path, body, {"Content-Type": "application/json"})

    def post_init_error(self, body, error_type):
        headers = {"Content-Type": "application/json", ERROR_TYPE_HEADER: error_type}
        path = API_PREFIX + "/init/error"
        self._check_post(path, self._exchange([self._encode("POST", path, body, headers)])[0])

    def _post_then_next(self, path, body, headers):
        post = self._encode("POST", path, body, headers)
        if len(body) > MAX_PIPELINED_BODY:
            self._check_post(path, self._exchange([post])[0])
            return self.next_invocation()
        posted, following = self._exchange([post, self._encode("GET", NEXT_PATH)])
        self._check_post(path, posted)
        return self._next_from(following)

    @staticmethod
    def _next_from(response):
        status, headers, body = response
        if status != 200:
            raise RuntimeApiError(f"GET /invocation/next failed with {status}: {body!r}")
        return body, headers

    @staticmethod
    def _check_post(path, response):
        status, _, body = response
        if status != 202:
            detail = body.decode("utf-8", "replace")
            sys.stderr.write(f"Runtime API POST {path} failed with {status}: {detail}\n")

    def _encode(self, method, path, body=b"", headers=None):
        head = [f"{method} {path} HTTP/1.1\r\n", self._host_header]
        if method == "POST":
            head.append(f"Content-Length: {len(body)}\r\n")
        for name, value in (headers or {}).items():
            head.append(f"{name}: {value}\r\n")
        head.append("\r\n")
        return "".join(head).encode("utf-8") + body

    def _exchange(self, requests):
        """Send requests in one write; return their (status, headers, body) responses in order.

        A server may close a kept-alive connection after any response, or
        before the first. The requests that got no response then go again
        on a new connection, once for each request. A connection that
        closes in the middle of a response is an error.
        """
        responses = []
        failures = 0
        while len(responses) < len(requests):
            if self._socket is None:
                self._connect()
            try:
                self._socket.sendall(b"".join(requests[len(responses) :]))
                while len(responses) < len(requests):
                    responses.append(self._read_response())
                    failures = 0
                    if self._socket is None:
                        # Connection: close; the rest go on a new connection.
                        break
            except _ConnectionLost:
                self.close()
                failures += 1
                if failures == 2:
                    raise
            except BaseException:
                self.close()
                raise
        return responses

    def _connect(self):
        self._socket = socket.create_connection(self._address)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = bytearray()

    def close(self):
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _receive(self, retryable):
        try:
            chunk = self._socket.recv(65536)
        except ConnectionError as error:
            if not retryable:
                raise
            raise _ConnectionLost(str(error)) from error
        if not chunk:
            if not retryable:
                raise ConnectionResetError("the Runtime API closed the connection mid-response")
            raise _ConnectionLost("the Runtime API closed the connection")
        self._buffer += chunk

    def _read_response(self):
        """Read one response; return (status, headers, body).

        A connection that closes before the response begins raises
        _ConnectionLost, which means the request can be sent again.
        """
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        while end < 0:
            if len(buffer) > MAX_RESPONSE_HEAD:
                raise RuntimeApiError("the Runtime API sent a response head over 64 KiB")
            self._receive(retryable=not buffer)
            end = buffer.find(b"\r\n\r\n")
        lines = buffer[:end].decode("utf-8", "replace").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise RuntimeApiError(f"the Runtime API sent an invalid status line: {lines[0]!r}")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "transfer-encoding" in headers:
            raise RuntimeApiError("the Runtime API sent a chunked response, which is not supported")
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise RuntimeApiError("the Runtime API sent an invalid Content-Length") from None
        body_end = end + 4 + length
        while len(buffer) < body_end:
            self._receive(retryable=False)
        body = bytes(buffer[end + 4 : body_end])
        del buffer[:body_end]
        if headers.get("connection", "").lower() == "close":
            self.close()
        return int(parts[1]), headers, body


class _ConnectionLost(ConnectionError):
    """The connection closed before any of the response arrived: the request can be retried."""


# -- loading the handler -------------------------------------------------------


def load_handler(handler):
    """Import the handler function named `module.function`; raise FaultError on failure."""
    try:
        module_name, function_name = handler.rsplit(".", 1)
    except ValueError as error:
        raise FaultError(MALFORMED_HANDLER_NAME, f"Bad handler '{handler}': {error}") from error

    if module_name.split(".")[0] in sys.builtin_module_names:
        raise FaultError(
            BUILT_IN_MODULE_CONFLICT,
            f"Cannot use built-in module {module_name} as a handler module",
        )

    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as error:
        raise FaultError(
            IMPORT_MODULE_ERROR, f"Unable to import module '{module_name}': {error}"
        ) from error
    except SyntaxError as error:
        trace = [f'  File "{error.filename}" Line {error.lineno}\n    {error.text}']
        raise FaultError(
            USER_CODE_SYNTAX_ERROR, f"Syntax error in module '{module_name}': {error}", trace
        ) from error

    try:
        return getattr(module, function_name)
    except AttributeError as error:
        raise FaultError(
            HANDLER_NOT_FOUND, f"Handler '{function_name}' missing on module '{module_name}'"
        ) from error


# -- the context object -------------------------------------------------------


class CognitoIdentity:
    __slots__ = ["cognito_identity_id", "cognito_identity_pool_id"]

    def __repr__(self):
        return (
            f"CognitoIdentity([cognito_identity_id={self.cognito_identity_id},"
            f"cognito_identity_pool_id={self.cognito_identity_pool_id}])"
        )


class Client:
    __slots__ = [
        "app_package_name",
        "app_title",
        "app_version_code",
        "app_version_name",
        "installation_id",
    ]


class ClientContext:
    __slots__ = ["client", "custom", "env"]


def _object_from_dict(cls, values):
    if values is None:
        return None
    instance = cls()
    for name in cls.__slots__:
        setattr(instance, name, values.get(name))
    return instance


class LambdaContext:
    """The `context` argument, with the attributes of awslambdaric's LambdaContext."""

    def __init__(
        self,
        request_id,
        client_context,
        cognito_identity,
        deadline_ms,
        invoked_function_arn=None,
        tenant_id=None,
    ):
        environ = os.environ
        self.aws_request_id = request_id
        self.log_group_name = environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.function_name = environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.memory_limit_in_mb = environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.function_version = environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = invoked_function_arn
        self.tenant_id = tenant_id

        self.client_context = _object_from_dict(ClientContext, client_context)
        if self.client_context is not None:
            self.client_context.client = _object_from_dict(Client, self.client_context.client)

        self.identity = _object_from_dict(CognitoIdentity, {})
        if cognito_identity is not None:
            self.identity.cognito_identity_id = cognito_identity.get("cognitoIdentityId")
            self.identity.cognito_identity_pool_id = cognito_identity.get("cognitoIdentityPoolId")

        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        remaining = self._deadline_ms - int(time.time() * 1000)
        return remaining if remaining > 0 else 0

    def log(self, message):
        sys.stdout.write(str(message))

    def __repr__(self):
        return (
            f"LambdaContext([aws_request_id={self.aws_request_id},"
            f"log_group_name={self.log_group_name},"
            f"log_stream_name={self.log_stream_name},"
            f"function_name={self.function_name},"
            f"memory_limit_in_mb={self.memory_limit_in_mb},"
            f"function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn},"
            f"client_context={self.client_context},"
            f"identity={self.identity},"
            f"tenant_id={self.tenant_id}])"
        )


def _parse_json_header(value, name):
    try:
        return json.loads(value)
    except ValueError as error:
        message = f"Unable to parse {name} JSON: {error}"
        raise FaultError(CONTEXT_UNMARSHAL_ERROR, message) from error


# -- marshalling ----------------------------------------------------------------


def _ensure_ascii():
    # awslambdaric writes non-ASCII characters unescaped for python3.12.
    # NOTE: the later python3 runtimes are assumed to do the same.
    runtime = os.environ.get("AWS_EXECUTION_ENV", "")
    prefix = "AWS_Lambda_python3."
    if runtime.startswith(prefix):
        minor = runtime[len(prefix) :]
        if minor.isdigit():
            return int(minor) < 12
    return True


class _ResponseEncoder(json.JSONEncoder):
    def default(self, value):
        # awslambdaric (through simplejson) writes a Decimal as its exact
        # digits, which the standard json module cannot do.
        # NOTE: a fractional Decimal goes through float here, so "1.10"
        # comes out as 1.1 and long fractions lose digits.
        if isinstance(value, decimal.Decimal):
            if value.is_nan():
                return float("nan")
            if value == value.to_integral_value():
                return int(value)
            return float(value)
        return super().default(value)


_encoder = _ResponseEncoder(ensure_ascii=_ensure_ascii())


def marshal_response(response):
    """Return the response body and its content type, as awslambdaric encodes them."""
    if isinstance(response, bytes):
        return response, "application/unknown"
    try:
        return _encoder.encode(response).encode("utf-8"), "application/json"
    except Exception as error:
        raise FaultError(MARSHAL_ERROR, f"Unable to marshal response: {error}") from error


def unmarshal_event(body, content_type):
    if content_type != "application/json":
        return body
    try:
        return json.loads(body)
    except ValueError as error:
        raise FaultError(UNMARSHAL_ERROR, f"Unable to unmarshal input: {error}") from error


# -- errors and logging ---------------------------------------------------------


def make_error(message, error_type, stack_trace, request_id=None):
    return {
        "errorMessage": message if message else "",
        "errorType": error_type if error_type else "",
        "requestId": request_id if request_id is not None else "",
        "stackTrace": stack_trace if stack_trace else [],
    }


def error_from_exception(exc_info, request_id=None):
    """Build the error body of an exception that user code raised."""
    error_class, error, tb = exc_info
    frames = traceback.extract_tb(tb)
    # Drop this runtime's own frames from the top of the traceback.
    for index, frame in enumerate(frames):
        if "/bootstrap.py" not in frame.filename:
            frames = frames[index:]
            break
    return make_error(str(error), error_class.__name__, traceback.format_list(frames), request_id)


def log_error(error):
    """Print an error as awslambdaric's text log format does: `[ERROR] Type: message`."""
    description = "[ERROR]"
    if error["errorType"]:
        description += " " + error["errorType"]
    if error["errorMessage"]:
        if error["errorType"]:
            description += ":"
        description += " " + error["errorMessage"]

    lines = [description, "Traceback (most recent call last):"]
    for entry in error["stackTrace"]:
        lines.extend(entry.splitlines() if entry else [""])
    # NOTE: on a plain stdout, awslambdaric joins these lines with "\r" to
    # keep one log record on one line. Here they are separate lines, which is
    # how Lambda's log pipeline shows them.
    sys.stdout.write("\n".join(lines) + "\n")


class _RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.aws_request_id = _current_request_id or ""
        return True


class _StdoutHandler(logging.Handler):
    def emit(self, record):
        try:
            sys.stdout.write(self.format(record))
        except Exception:
            self.handleError(record)


def setup_logging():
    """Install Lambda's text log format on the root logger, as awslambdaric does."""
    logging.Formatter.converter = time.gmtime
    handler = _StdoutHandler()
    handler.setFormatter(
        logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n",
            "%Y-%m-%dT%H:%M:%S",
        )
    )
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)

    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    if level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        root.setLevel(level)


class Unbuffered:
    """A stream wrapper that flushes after every write, as awslambdaric installs.

    Output must reach the worker when it is written, not when the process
    exits, so that each line lands in the log of the right invocation.
    """

    def __init__(self, stream):
        self.stream = stream

    def __getattr__(self, name):
        return getattr(self.stream, name)

    def write(self, text):
        written = self.stream.write(text)
        self.stream.flush()
        return written

    def writelines(self, lines):
        self.stream.writelines(lines)
        self.stream.flush()


# -- the invocation loop --------------------------------------------------------


def handle_invocation(client, handler, body, headers):
    """Run one invocation and post its outcome; return the next event's (body, headers)."""
    global _current_request_id

    request_id = headers.get("lambda-runtime-aws-request-id")
    _current_request_id = request_id
    trace_id = headers.get("lambda-runtime-trace-id")
    if trace_id is not None:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)

    error = None
    try:
        client_context = headers.get("lambda-runtime-client-context")
        cognito_identity = headers.get("lambda-runtime-cognito-identity")
        context = LambdaContext(
            request_id,
            _parse_json_header(client_context, "Client Context") if client_context else None,
            _parse_json_header(cognito_identity, "Cognito Identity") if cognito_identity else None,
            int(headers.get("lambda-runtime-deadline-ms") or 0),
            headers.get("lambda-runtime-invoked-function-arn"),
            headers.get("lambda-runtime-aws-tenant-id"),
        )
        event = unmarshal_event(body, headers.get("content-type"))
        result = handler(event, context)
        response, content_type = marshal_response(result)
    except FaultError as fault:
        error = make_error(fault.message, fault.error_type, fault.trace, request_id)
    except Exception:
        error = error_from_exception(sys.exc_info(), request_id)

    if error is not None:
        log_error(error)
        return client.post_error(request_id, json.dumps(error).encode("utf-8"))
    return client.post_response(request_id, response, content_type)


def set_import_path(task_root):
    """Put the function's code first on sys.path, as in Lambda.

    Python put this runtime's own directory there. It is removed, so that a
    handler module named `bootstrap` loads the user's file and not this one.
    """
    shim_dir = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != shim_dir]
    sys.path.insert(0, task_root)


def main():
    sys.stdout = Unbuffered(sys.stdout)
    sys.stderr = Unbuffered(sys.stderr)
    setup_logging()
    set_import_path(os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd())

    client = RuntimeClient(os.environ["AWS_LAMBDA_RUNTIME_API"])
    try:
        handler = load_handler(os.environ.get("_HANDLER", ""))
    except FaultError as fault:
        error = make_error(fault.message, fault.error_type, fault.trace)
        log_error(error)
        client.post_init_error(json.dumps(error).encode("utf-8"), fault.error_type)
        sys.exit(1)
    except Exception:
        error = error_from_exception(sys.exc_info())
        log_error(error)
        client.post_init_error(json.dumps(error).encode("utf-8"), error["errorType"])
        sys.exit(1)

    try:
        body, headers = client.next_invocation()
        while True:
            body, headers = handle_invocation(client, handler, body, headers)
    except (RuntimeApiError, OSError) as error:
        # The Runtime API is gone, so nothing can be reported: stop.
        sys.stderr.write(f"Lambda runtime: the Runtime API request failed: {error}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
