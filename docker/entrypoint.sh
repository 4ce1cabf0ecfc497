#!/bin/sh
# The container's command: serve the Architect project mounted at /app.
#
# It listens on every interface (0.0.0.0), because Docker forwards a
# published port to the container's own network interface, never to its
# loopback address. The management API still accepts loopback clients only,
# unless --allow-remote-management is among the arguments.
#
# Arguments are added to the emulator's options, after these. Variables:
#   EMULATOR_PROJECT_DIR  the project directory (default: /app)
#   EMULATOR_HOST         the address to listen on (default: 0.0.0.0)
#   EMULATOR_PORT         the WebSocket and management API port (default: 3333)
# tests/docker runs this script outside Docker with its own values of these.
set -eu

exec python3 -m emulator start "${EMULATOR_PROJECT_DIR:-/app}" \
    --host "${EMULATOR_HOST:-0.0.0.0}" \
    --port "${EMULATOR_PORT:-3333}" \
    "$@"
