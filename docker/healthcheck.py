"""The image's health check: exit 0 when the emulator's health endpoint reports `ok`.

Docker runs it inside the container, so it requests 127.0.0.1, which the
entrypoint's default address (0.0.0.0) includes. The port is
`$EMULATOR_PORT`, as in the entrypoint, else 3333. It uses only the
standard library, so it needs nothing beyond the emulator's own Python.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request

DEFAULT_PORT = "3333"
# Seconds for the whole request; Docker's own --timeout should be longer.
TIMEOUT = 2.0


def check(url: str) -> str | None:
    """Request the health endpoint at `url`; return why it is unhealthy, or None."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as error:
        return f"{url} returned HTTP {error.code}"
    except (OSError, ValueError) as error:
        return f"request to {url} failed: {error}"
    if not isinstance(body, dict) or body.get("status") != "ok":
        return f"{url} returned {body!r} instead of a status of 'ok'"
    return None


def main() -> int:
    port = os.environ.get("EMULATOR_PORT") or DEFAULT_PORT
    url = f"http://127.0.0.1:{port}/_emulator/health"
    failure = check(url)
    if failure is not None:
        print(f"unhealthy: {failure}", file=sys.stderr)
        return 1
    print(f"healthy: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
