"""Running the app under gunicorn, the production WSGI server."""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

from gunicorn import util as gunicorn_util
from gunicorn.app.base import BaseApplication

from backend.core import logs
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.schema import prepare
from backend.core.secret_files import require_secrets
from backend.web.request_log import AccessLogger

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


def metrics_hooks(settings: Settings) -> dict[str, Any]:
    """With FIELDCASE_METRICS_PORT: the workers' metrics folder emptied and named before any worker exists, this
    process (gunicorn's master) serving their sum on the metrics port, and each reaped worker's live gauges
    dropped. The gunicorn hooks that do the last part are returned (backend.web.metrics_export)."""
    if not settings.metrics_port:
        return {}
    from backend.web import metrics_export

    folder, owned = metrics_export.multiprocess_folder(settings.metrics_dir)  # before prometheus-client is imported
    from backend.bootstrap import figures

    metrics_export.serve_multiprocess(settings.metrics_host, settings.metrics_port, folder, figures(settings))
    log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)

    def child_exit(_arbiter: Any, worker: Any) -> None:
        metrics_export.mark_dead(worker.pid, folder)

    def on_exit(_arbiter: Any) -> None:
        if owned:
            metrics_export.remove_folder(folder)

    return {"child_exit": child_exit, "on_exit": on_exit}


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 2, threads: int = 4,
          timeout: int = 120) -> None:
    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)
    require_secrets(settings)  # before any worker forks: each would fail to boot, over and over
    db = Database(settings.database_url)
    try:
        prepare(db)
    finally:
        db.dispose()
    log.info("serving on http://%s:%d with %d workers", host, port, workers)
    hooks = metrics_hooks(settings)
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
        "logger_class": AccessLogger,  # its lines, access lines included, through backend.core.logs
        "loglevel": settings.log_level.lower(),
        "limit_request_field_size": 16384,
        # gunicorn's control socket has one default path per user: several servers on a host would take it
        # from each other. Processes are managed by the supervisor (systemd, k8s), not gunicornc.
        "control_socket_disable": True,
        **hooks,
    }).run()
