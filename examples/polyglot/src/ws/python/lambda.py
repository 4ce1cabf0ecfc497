"""Reply with the runtime's name and version and the text that was sent."""

import json
import os
import platform
import urllib.parse
import urllib.request


def post_to_connection(connection_id, message):
    endpoint = os.environ["AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"]
    url = f"{endpoint}/@connections/{urllib.parse.quote(connection_id, safe='')}"
    request = urllib.request.Request(url, data=json.dumps(message).encode(), method="POST")
    urllib.request.urlopen(request, timeout=5).read()


def handler(event, context):
    text = json.loads(event["body"]).get("text")
    reply = {"runtime": "python", "version": platform.python_version(), "text": text}
    post_to_connection(event["requestContext"]["connectionId"], reply)
    return {"statusCode": 200}
