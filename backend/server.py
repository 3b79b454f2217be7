"""Running the app under gunicorn, the production WSGI server."""

from __future__ import annotations

import json
import logging
import runpy
import socket
from pathlib import Path
from typing import Any

from gunicorn import util as gunicorn_util
from gunicorn.app.base import BaseApplication
from gunicorn.config import Config

from backend.core import logs
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.schema import migrates_on_start, prepare, require_current
from backend.core.secret_files import require_secrets
from backend.web.request_log import AccessLogger

log = logging.getLogger("fieldcase.server")

# gunicorn's tunable settings (bind, workers, threads, timeouts, limits) have one home: this file, shipped in the
# package and written out for operators by `fieldcase deploy-files`; `fieldcase serve --config` reads another.
GUNICORN_CONFIG = Path(__file__).with_name("deploy") / "gunicorn.conf.py"


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


def gunicorn_settings(config: Path, *, host: str | None = None, port: int | None = None,
                      workers: int | None = None, threads: int | None = None) -> dict[str, Any]:
    """The gunicorn settings a config file sets (as gunicorn reads one: every top-level name that is a setting),
    then what the command line gave, which wins."""
    known = Config().settings
    options = {name: value for name, value in runpy.run_path(str(config)).items() if name in known}
    if host is not None or port is not None:
        bind = options.get("bind", "127.0.0.1:8000")
        file_host, _, file_port = (bind[0] if isinstance(bind, list | tuple) else bind).rpartition(":")
        options["bind"] = f"{host or file_host}:{port or file_port}"
    options.update({name: value for name, value in (("workers", workers), ("threads", threads)) if value is not None})
    return options


def serve(*, config: Path = GUNICORN_CONFIG, migrate: bool | None = None, **command_line: Any) -> None:
    """Check what the process needs, bring the schema to this release's (`migrate`; by default only on SQLite) or
    refuse one that is not (backend.core.schema.SchemaNotCurrent), then run gunicorn in this process (its master)
    with `config`'s settings, the command line's over them, and the ones the app relies on over both."""
    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)
    require_secrets(settings)  # before any worker forks: each would fail to boot, over and over
    options = gunicorn_settings(config, **command_line)
    db = Database(settings.database_url)
    try:
        if migrates_on_start(settings.database_url) if migrate is None else migrate:
            prepare(db)
        else:
            require_current(db)
    finally:
        db.dispose()
    log.info("serving on http://%s with %s workers", options.get("bind"), options.get("workers"))
    hooks = metrics_hooks(settings)
    gunicorn_util.write_error = json_error_page  # looked up at call time by gunicorn's workers
    _Gunicorn({
        **options,
        # What the app relies on, whatever the file says: gthread workers (admission control counts a worker's
        # threads), every line through backend.core.logs on stderr, PROTOCOL's 16 KiB header field (`431`), no
        # control socket (gunicorn's has one default path per user, which several servers on a host would take
        # from each other; the supervisor manages the processes).
        "worker_class": "gthread",
        "accesslog": "-",
        "errorlog": "-",
        "logger_class": AccessLogger,
        "loglevel": settings.log_level.lower(),
        "limit_request_field_size": 16384,
        "control_socket_disable": True,
        **hooks,
    }).run()
