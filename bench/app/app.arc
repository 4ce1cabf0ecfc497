# The benchmark app: every route replies through the management API.
@app
bench

@ws
node   # {"action": "node"}: the Node.js handler

@aws
runtime python3.11
timeout 10
