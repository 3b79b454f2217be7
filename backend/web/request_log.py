"""Each request's id: on every line logged while it runs, on its access line, and given back in `X-Request-Id`.

A phone, or a load balancer in front, may send `X-Request-Id` so that one id follows the request across hops; it is
kept when it is 1 to 128 characters of letters, digits and `-_.:=+/@` (what trace ids use), and replaced by a new
one otherwise: a header is the client's text, and a log line must not carry whatever a client wrote into it.

The access line is gunicorn's (`AccessLogger`, set as its `logger_class` by `backend.server`): it alone sees the
whole response, its bytes and its time. It is written through the same root handler as every other line
(`backend.core.logs`), with the path but never the query string (a search can hold a name), and with the
complainant's tracking code in a public status page's path masked: that code is what lets its holder read the
clue's status.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from flask import Flask, Response, g, request
from gunicorn import glogging

from backend.core import logs

HEADER = "X-Request-Id"
_VALID = re.compile(r"[A-Za-z0-9._:=+/@-]{1,128}")
# View arguments that are secrets of whoever holds them: shown as `<name>` in the logged path.
PRIVATE_ARGS = frozenset({"code"})
_ARG = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
_QUERY = re.compile(r"\?[^\s'\"]*")  # a query string in gunicorn's own messages ("Invalid request line: '…'")
PATH_KEY = "fieldcase.log_path"  # in the WSGI environ: the path as the access line may show it


def request_id_from(header: str | None) -> str:
    return header if header and _VALID.fullmatch(header) else uuid.uuid4().hex


def loggable_path() -> str:
    """The request's path, with the private view arguments masked (the route's own `<name>` put back)."""
    rule, args = request.url_rule, request.view_args or {}
    if rule is None or not PRIVATE_ARGS & args.keys():
        return request.path
    return _ARG.sub(lambda m: f"<{m[1]}>" if m[1] in PRIVATE_ARGS else str(args.get(m[1], m[0])), rule.rule)


def init(app: Flask) -> None:
    """Bind the request's id before anything else runs (so even a refused request's lines carry it), answer it,
    and unbind it when the request ends."""

    def begin() -> None:
        g.request_id = request_id_from(request.headers.get(HEADER))
        g.log_context = logs.bind(request_id=g.request_id)

    app.before_request_funcs.setdefault(None, []).insert(0, begin)

    @app.after_request
    def answer(response: Response) -> Response:
        if "request_id" in g:
            response.headers[HEADER] = g.request_id
        request.environ[PATH_KEY] = loggable_path()
        return response

    @app.teardown_request
    def end(_exc: BaseException | None = None) -> None:
        token = g.pop("log_context", None)
        if token is not None:
            logs.reset(token)


def _no_query(record: logging.LogRecord) -> bool:
    """gunicorn quotes a request line it refuses, query string and all: the query is cut (a search can hold a
    name)."""
    if isinstance(record.msg, str) and "?" in record.msg:
        record.msg = _QUERY.sub("?…", record.msg)
    return True


class AccessLogger(glogging.Logger):
    """gunicorn's logger, writing through the root handler like everything else: its own lines (worker boots,
    timeouts) as ours, and one `access` line per request carrying the id the app answered with."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in list(log.handlers):
                if getattr(handler, "_gunicorn", False):
                    log.removeHandler(handler)
            log.propagate = True
        if _no_query not in self.error_log.filters:
            self.error_log.addFilter(_no_query)

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        request_id = next((value for name, value in resp.headers if name.lower() == HEADER.lower()), None)
        self.access_log.info("access", extra={
            "request_id": request_id,
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get(PATH_KEY) or environ.get("PATH_INFO"),
            "status": resp.status_code,
            "bytes": getattr(resp, "sent", 0),
            "duration_ms": round(request_time.total_seconds() * 1000, 1),
        })
