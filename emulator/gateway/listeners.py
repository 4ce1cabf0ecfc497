"""Listening sockets for the gateway's two ports."""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket

from emulator.errors import EmulatorError

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"


def is_loopback_host(host: str) -> bool:
    """Return whether binding `host` keeps the emulator unreachable from other machines."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_listeners(
    host: str, port: int, option: str, *, ipv6_loopback: bool
) -> list[socket.socket]:
    """Bind listening sockets for `host`:`port`, each address of `host` on one port number.

    Port 0 lets the first address pick a free port, and the other addresses
    bind the same number. With the default host and `ipv6_loopback`, `::1`
    is bound too, because clients that connect to `localhost` may try `::1`
    first. A failure to bind `::1` is only logged. Other failures raise
    EmulatorError naming the port and `option`, the setting that changes it.
    """
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise EmulatorError(f"cannot listen on host {host!r}: {error.strerror}") from error

    endpoints: list[tuple[socket.AddressFamily, str]] = []
    for entry in addresses:
        endpoint = (socket.AddressFamily(entry[0]), str(entry[4][0]))
        if endpoint not in endpoints:
            endpoints.append(endpoint)

    sockets: list[socket.socket] = []
    try:
        for family, address_host in endpoints:
            chosen = sockets[0].getsockname()[1] if sockets else port
            sockets.append(_bind(family, address_host, chosen, option))
        if host == DEFAULT_HOST and ipv6_loopback and socket.has_ipv6:
            chosen = sockets[0].getsockname()[1]
            try:
                sockets.append(_bind(socket.AF_INET6, "::1", chosen, option))
            except EmulatorError as error:
                logger.debug("not listening on [::1]:%d: %s", chosen, error)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _bind(family: socket.AddressFamily, host: str, port: int, option: str) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # Keep an IPv6 socket from also claiming the IPv4 port.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        shown = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        if error.errno == errno.EADDRINUSE:
            raise EmulatorError(
                f"port {port} is already in use ({shown}); choose another port with {option}"
            ) from error
        raise EmulatorError(
            f"cannot listen on {shown}: {error.strerror}; "
            f"choose another address or port with {option}"
        ) from error
    return sock
