# One WebSocket API, one route per runtime. Send {"action": "<route>", "text": "..."}
# and the handler of that route replies through the management API.
@app
polyglot

@ws
python  # Python
node    # Node.js
ruby    # Ruby
deno    # Deno (TypeScript)
shell   # a provided.al2023 custom runtime: a Bash bootstrap with curl and jq
