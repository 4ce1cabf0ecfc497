"""A handler for awslambdaric, run by `python3 -m awslambdaric app.handler`.

It answers a WebSocket message event with a body that tells the test which
client library ran, the message, the connection id, the Lambda request id
and the process id, and it raises when the message is "fail".
"""

from __future__ import annotations

import json
import os
from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event["body"] == "fail":
        raise RuntimeError("handler failed on purpose")
    reply = {
        "client": "awslambdaric",
        "body": event["body"],
        "connectionId": event["requestContext"]["connectionId"],
        "requestId": context.aws_request_id,
        "pid": os.getpid(),
    }
    return {"statusCode": 200, "body": json.dumps(reply)}
