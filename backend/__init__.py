"""fieldcase: the server that enforcement officers' phones sync with (start at docs/architecture.md)."""
