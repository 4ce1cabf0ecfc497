"""$connect: admit clients that give a name (`?name=ada`), reject the others."""

from shared import store


def handler(event, context):
    name = (event.get("queryStringParameters") or {}).get("name", "").strip()
    if not name:
        return {"statusCode": 400, "body": "connect with ?name=<your name>"}
    connection_id = event["requestContext"]["connectionId"]
    store.add(connection_id, name)
    print(f"{name} joined as {connection_id}")
    return {"statusCode": 200}
