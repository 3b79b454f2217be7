"""fieldcase: the server that enforcement officers' phones sync with."""

from .app import create_app

__all__ = ["create_app"]
