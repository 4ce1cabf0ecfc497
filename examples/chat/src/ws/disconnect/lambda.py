"""$disconnect: forget the connection and tell the others."""

from shared import store


def handler(event, context):
    name = store.remove(event["requestContext"]["connectionId"])
    if name is not None:
        store.broadcast({"event": "left", "name": name})
    return {"statusCode": 200}
