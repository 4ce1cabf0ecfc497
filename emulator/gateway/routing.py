"""Route selection by `$request.body.action`, API Gateway's usual expression."""

from __future__ import annotations

import json
from collections.abc import Set

DEFAULT_ROUTE = "default"


def select_route(body: str, custom_routes: Set[str]) -> str:
    """Return the route (its name without `$`) that handles a text message.

    The message selects a custom route when it is a JSON object whose
    `action` equals the route's name. A non-string `action` is compared in
    its JSON text form, so `{"action": 7}` selects a route named `7`.
    Anything else goes to `default`. `custom_routes` excludes `connect`,
    `disconnect` and `default`, so an action naming one of those also goes
    to `default`.
    """
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        # RecursionError: a message nested deeper than the parser's stack.
        return DEFAULT_ROUTE
    if not isinstance(document, dict) or "action" not in document:
        return DEFAULT_ROUTE

    action = document["action"]
    if not isinstance(action, str):
        # NOTE: compact JSON text is a guess at API Gateway's text form of a
        # non-string action (unverified for floats and nested values).
        action = json.dumps(action, separators=(",", ":"))
    return action if action in custom_routes else DEFAULT_ROUTE
