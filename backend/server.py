"""Running the app under gunicorn, the production WSGI server."""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

from gunicorn import util as gunicorn_util
from gunicorn.app.base import BaseApplication

from backend.core.config import Settings
from backend.core.db import Database
from backend.core.schema import prepare

log = logging.getLogger("fieldcase.server")


def json_error_page(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """What gunicorn refuses before the app sees the request (a header over its limit, a broken request line)
    it answers itself, with an HTML page; every other error of this API is PROTOCOL's JSON error object, and
    phones parse that. Same status, same reason, in that shape."""
    from backend.web.api.errors import error_body

    message = f"{reason.lower()}: {mesg}" if mesg else reason.lower()
    body = json.dumps(error_body(status_int, message)).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    gunicorn_util.write_nonblock(sock, head.encode("latin-1") + body)


class _Gunicorn(BaseApplication):
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        # Each worker builds its own app after the fork, so no engine or pool is shared.
        from backend.bootstrap import create_app

        return create_app()


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 2, threads: int = 4,
          timeout: int = 120) -> None:
    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    db = Database(settings.database_url)
    try:
        prepare(db)
    finally:
        db.dispose()
    log.info("serving on http://%s:%d with %d workers", host, port, workers)
    gunicorn_util.write_error = json_error_page  # looked up at call time by gunicorn's workers
    _Gunicorn({
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "timeout": timeout,
        "graceful_timeout": 20,
        "accesslog": "-",
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "limit_request_field_size": 16384,
        # gunicorn's control socket has one default path per user: several servers on a host would take it
        # from each other. Processes are managed by the supervisor (systemd, k8s), not gunicornc.
        "control_socket_disable": True,
    }).run()
