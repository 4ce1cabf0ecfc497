"""Reply to any message that names no route with the list of routes."""

import json
import os
import urllib.parse
import urllib.request

ROUTES = ["python", "node", "ruby", "deno", "shell"]


def post_to_connection(connection_id, message):
    endpoint = os.environ["AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"]
    url = f"{endpoint}/@connections/{urllib.parse.quote(connection_id, safe='')}"
    request = urllib.request.Request(url, data=json.dumps(message).encode(), method="POST")
    urllib.request.urlopen(request, timeout=5).read()


def handler(event, context):
    connection_id = event["requestContext"]["connectionId"]
    post_to_connection(connection_id, {"routes": ROUTES, "received": event.get("body")})
    return {"statusCode": 200}
