"""send: broadcast `text` to every member of the room."""

import json

from shared import store


def handler(event, context):
    connection_id = event["requestContext"]["connectionId"]
    text = json.loads(event["body"]).get("text", "")
    store.broadcast({"event": "message", "from": store.name_of(connection_id), "text": text})
    return {"statusCode": 200}
