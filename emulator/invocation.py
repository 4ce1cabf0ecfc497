"""What the gateway asks of the functions, and what it gets back.

The gateway depends only on `Invoker`; the supervisor that runs worker
processes implements it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# Error types of Lambda's own failures, as Lambda names them in
# `x-amz-function-error` responses and in logs.
ERROR_TIMEOUT = "Sandbox.Timedout"
ERROR_EXIT = "Runtime.ExitError"
ERROR_OUT_OF_MEMORY = "Runtime.OutOfMemory"
ERROR_RESPONSE_TOO_LARGE = "Function.ResponseSizeTooLarge"
ERROR_REQUEST_TOO_LARGE = "RequestEntityTooLargeException"
ERROR_THROTTLED = "TooManyRequestsException"
ERROR_UNKNOWN_FUNCTION = "ResourceNotFoundException"

# Lambda's maximum synchronous event and response size: 6 MB, counted as
# the Runtime API counts it.
MAX_PAYLOAD_BYTES = 6_291_556


@dataclass(frozen=True, slots=True)
class InvocationResult:
    """The outcome of one invocation.

    On success `payload` is the function's response exactly as the runtime
    posted it (JSON text, possibly `null`). On failure `error_type` is set:
    a Lambda failure from the constants above, or the error type the
    runtime reported for an error the handler raised.
    """

    request_id: str
    payload: bytes | None = None
    error_type: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_type is None


class Invoker(Protocol):
    async def invoke(self, route: str, event: bytes) -> InvocationResult:
        """Run the function of `route` (its name without `$`) on a JSON event.

        Cancelling the call stops the wait, not the function: the
        invocation runs to its own end and its result is dropped.
        """
        ...
