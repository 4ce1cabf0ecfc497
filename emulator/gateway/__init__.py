"""The gateway: WebSocket connections, route selection and the `@connections` API.

`Gateway` (in `server`) is the entry point; the other modules each hold one
part of it.
"""

from __future__ import annotations

from emulator.gateway.server import Gateway

__all__ = ["Gateway"]
