"""The `@connections` management API: post to, describe and close a connection.

It responds like API Gateway's `ApiGatewayManagementApi`, so boto3's
`apigatewaymanagementapi` client and Architect's runtime libraries work
against it unchanged. Errors carry `x-amzn-ErrorType`, which boto3 needs to
raise its typed exceptions (`GoneException` and the rest).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import uuid
from datetime import datetime, timezone

from aiohttp import hdrs, web

from emulator.config import Options
from emulator.gateway.connections import Connection, ConnectionRegistry, SendStatus

logger = logging.getLogger(__name__)

ALLOWED_METHODS = frozenset({hdrs.METH_POST, hdrs.METH_GET, hdrs.METH_DELETE})


def format_iso8601(epoch_seconds: float) -> str:
    """Format a time as `2026-12-04T19:22:46.123Z`, the form of `connectedAt`."""
    moment = datetime.fromtimestamp(epoch_seconds, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@functools.lru_cache(maxsize=1024)
def is_loopback_peer(address: str | None) -> bool:
    """Return whether a peer address is a loopback address; None (no IP peer) counts as local."""
    if address is None:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _is_local_peer(request: web.Request) -> bool:
    """Return whether the peer is on this machine: a loopback address, or the address it called.

    With `--host` set to one of the machine's own addresses, functions
    reach the management API on that address, so their requests come from
    it. A remote peer never has the server's own address.
    """
    if is_loopback_peer(request.remote):
        return True
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if not sockname:
        return False
    return bool(request.remote == sockname[0])


def _with_request_id(response: web.Response) -> web.Response:
    # API Gateway sends one on every response; boto3 puts it in ResponseMetadata.
    response.headers["x-amzn-RequestId"] = str(uuid.uuid4())
    return response


def error_response(status: int, error_type: str, message: str) -> web.Response:
    response = web.json_response(
        {"message": message}, status=status, headers={"x-amzn-ErrorType": error_type}
    )
    return _with_request_id(response)


class ManagementApi:
    """The request handlers of the management API, for both ports."""

    def __init__(self, registry: ConnectionRegistry, options: Options) -> None:
        self._registry = registry
        self._options = options

    async def handle(self, request: web.Request) -> web.Response:
        """Serve `/@connections/{id}` and `/_arc/ws/@connections/{id}`."""
        rejection = self._check_request(request)
        if rejection is not None:
            return rejection

        # aiohttp has already decoded the percent-encoding of the path.
        connection_id = request.match_info["connection_id"]
        if request.method == hdrs.METH_POST:
            return await self._post(request, connection_id)
        if request.method == hdrs.METH_GET:
            return self._get(connection_id)
        return self._delete(connection_id)

    async def handle_staged(self, request: web.Request) -> web.Response:
        """Serve `/{stage}/@connections/{id}`, the form with the stage name in the path."""
        stage = request.match_info["stage"]
        if stage != self._options.stage:
            return error_response(
                403,
                "ForbiddenException",
                f"Forbidden: the stage is {self._options.stage!r}, not {stage!r}",
            )
        return await self.handle(request)

    def _check_request(self, request: web.Request) -> web.Response | None:
        if not self._options.allow_remote_management and not _is_local_peer(request):
            logger.warning(
                "rejected a management API request from %s: only loopback peers are allowed",
                request.remote,
            )
            return error_response(
                403,
                "ForbiddenException",
                "The management API accepts requests from loopback addresses only, "
                "unless remote management is allowed (allow_remote_management).",
            )
        if request.method not in ALLOWED_METHODS:
            return error_response(
                403,
                "ForbiddenException",
                f"Method {request.method} is not supported; use POST, GET or DELETE.",
            )
        return None

    def _find(self, connection_id: str) -> Connection | web.Response:
        """Return the open connection, or the 410 response for a missing or closing one."""
        connection = self._registry.get(connection_id)
        if connection is not None and not connection.closing:
            return connection

        if self._registry.is_pending(connection_id):
            message = f"Connection {connection_id} is not open yet: its $connect is still running."
        elif connection is not None:
            message = f"Connection {connection_id} is closing."
        else:
            message = f"No connection with id {connection_id}."
        return error_response(410, "GoneException", message)

    async def _post(self, request: web.Request, connection_id: str) -> web.Response:
        limit = self._options.max_message_bytes
        data = await _read_body(request, limit)
        if data is None:
            response = error_response(
                413,
                "PayloadTooLargeException",
                f"The request body exceeds the limit of {limit} bytes.",
            )
            # The rest of the body is left unread, so the connection cannot be reused.
            response.force_close()
            return response

        found = self._find(connection_id)
        if isinstance(found, web.Response):
            return found

        message: str | bytes
        try:
            message = data.decode("utf-8")
        except UnicodeDecodeError:
            # NOTE: sending bytes that are not UTF-8 as a binary frame is a
            # guess at API Gateway's behaviour (unverified).
            message = data

        status = await found.send(message)
        if status is SendStatus.GONE:
            return error_response(410, "GoneException", f"Connection {connection_id} is closing.")
        if status is SendStatus.BUFFER_FULL:
            # A handler that posts in a loop gets many 429s in a row: warn on
            # the first, and count the rest until a post goes through.
            found.rejected_posts += 1
            if found.rejected_posts == 1:
                logger.warning(
                    "connection %s is not reading: %d bytes wait to be sent; answering 429 "
                    "to posts until it reads",
                    connection_id,
                    found.transport.get_write_buffer_size(),
                )
            return error_response(
                429,
                "LimitExceededException",
                f"Connection {connection_id} is not reading its messages and its send "
                "buffer is full.",
            )
        if found.rejected_posts:
            logger.info(
                "connection %s is reading again; %d posts were answered 429",
                connection_id,
                found.rejected_posts,
            )
            found.rejected_posts = 0
        return _with_request_id(web.Response(status=200))

    def _get(self, connection_id: str) -> web.Response:
        found = self._find(connection_id)
        if isinstance(found, web.Response):
            return found

        info = found.info
        body = {
            "connectedAt": format_iso8601(info.connected_at / 1000),
            "identity": {"sourceIp": info.source_ip, "userAgent": info.user_agent},
            "lastActiveAt": format_iso8601(found.last_active_at),
        }
        return _with_request_id(web.json_response(body, dumps=json.dumps))

    def _delete(self, connection_id: str) -> web.Response:
        found = self._find(connection_id)
        if isinstance(found, web.Response):
            return found

        # NOTE: API Gateway's close code for DeleteConnection is unverified.
        logger.info("closing connection %s on request of the management API", connection_id)
        found.start_close(1000, "")
        return _with_request_id(web.Response(status=204))


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """Read the request body; return None when it is larger than `limit` bytes."""
    declared = request.content_length
    if declared is not None and declared > limit:
        return None

    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(limit + 1 - size)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return None
