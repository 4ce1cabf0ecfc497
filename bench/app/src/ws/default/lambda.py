"""Echo the message back through the management API, on a kept-alive connection."""

import http.client
import os
import urllib.parse

_endpoint = urllib.parse.urlsplit(os.environ["AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"])
_connection = http.client.HTTPConnection(_endpoint.netloc)


def handler(event, context):
    connection_id = urllib.parse.quote(event["requestContext"]["connectionId"], safe="")
    _connection.request("POST", f"/@connections/{connection_id}", body=event["body"])
    _connection.getresponse().read()
    return {"statusCode": 200}
