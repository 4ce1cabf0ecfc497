"""Messages between the gateway and its worker processes."""
