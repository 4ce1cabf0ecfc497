"""Local emulator for WebSocket apps built on API Gateway and Lambda.

`Emulator` is the Python API: `async with Emulator(path, port=0) as emulator:`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emulator.app import Emulator

__version__ = "0.1.0"

__all__ = ["Emulator", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that worker processes and `routes`, which
    # import this package, do not load the gateway's modules.
    if name == "Emulator":
        from emulator.app import Emulator

        return Emulator
    raise AttributeError(f"module 'emulator' has no attribute {name!r}")
