# A small chat room: clients connect with ?name=..., then send JSON messages.
@app
chat

@ws
# connect, default and disconnect always exist; these are custom actions.
send    # {"action": "send", "text": "..."}: broadcast to everyone (Python)
whois   # {"action": "whois"}: your own connection, from the management API (Node.js)
leave   # {"action": "leave"}: the server closes your connection (Node.js)

@aws
runtime python3.11
timeout 10
