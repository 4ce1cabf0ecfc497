"""Local emulator for WebSocket apps built on API Gateway and Lambda."""

from __future__ import annotations

__version__ = "0.1.0"
