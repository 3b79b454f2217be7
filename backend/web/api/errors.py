"""The one place domain errors and stray exceptions become PROTOCOL's JSON error shape.

A database error is logged by its SQLSTATE and constraint, never its text: on PostgreSQL that quotes the row
(`Key (cert_number)=(…) already exists`); see backend.core.db_errors. A stray exception is one log event
(backend.core.logs: its class and a one-field trace).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, current_app, jsonify
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from backend.core import db_errors
from backend.core.errors import DomainError
from backend.web.metrics import note_unavailable

log = logging.getLogger("fieldcase.api")


def error_body(code: int, message: str, errors: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "status": HTTPStatus(code).phrase, "message": message}
    if errors:
        body["errors"] = errors
    return body


def _json_error(status: int, message: str, errors: dict[str, Any] | None = None, *,
                headers: Mapping[str, str] | None = None, retry_after: int | None = None) -> Response:
    """Every handler answers through here, so no error can drift from PROTOCOL's shape or forget its status."""
    resp = jsonify(error_body(status, message, errors))
    resp.status_code = status
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    if retry_after is not None:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


_MESSAGES = {
    400: "bad request",
    401: "authentication required",
    404: "no such resource",
    405: "method not allowed on this resource",
    413: "request body too large",
    415: "unsupported media type",
    431: "request header fields too large",
}


def register(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain(exc: DomainError):
        return _json_error(exc.status, exc.message, exc.errors, headers=exc.headers)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        data = getattr(exc, "data", None) or {}
        code = exc.code or 500
        errors = data.get("messages") or data.get("errors")
        message = data.get("message") or _MESSAGES.get(code) or HTTPStatus(code).phrase
        if errors and not data.get("message"):
            if code == 400 and "json" in errors:
                message = "the request body is not valid JSON"
            else:
                message = "invalid request " + " and ".join(sorted(errors)) + "; see errors"
        headers = dict(data.get("headers") or {})
        if code == 405 and exc.get_response().headers.get("Allow"):
            headers["Allow"] = exc.get_response().headers["Allow"]
        return _json_error(code, message, errors, headers=headers)

    @app.errorhandler(IntegrityError)
    def _raced(exc: IntegrityError):
        # A concurrent request wrote the same key first; nothing of this request was kept. Retrying
        # sees the other write and answers properly (a duplicate, an invalid id, a merge).
        log.warning("integrity conflict with a concurrent write", extra=db_errors.describe(exc))
        return _json_error(409, "a concurrent request wrote the same data first; retry", retry_after=1)

    @app.errorhandler(DataError)
    def _unstorable(exc: DataError):
        # A value the database refuses (out of range, bad encoding) that validation let through; nothing was kept.
        log.warning("value refused by the database", extra=db_errors.describe(exc))
        return _json_error(422, "a value in the request cannot be stored (out of range or not valid text)")

    @app.errorhandler(OperationalError)
    def _db_unavailable(exc: OperationalError):
        log.warning("database unavailable", extra=db_errors.describe(exc))
        note_unavailable("database")
        return _json_error(503, "the database is busy or unavailable; retry shortly", retry_after=2)

    @app.errorhandler(PoolTimeout)
    def _pool_exhausted(exc: PoolTimeout):
        # Every connection of this process's pool stayed busy for FIELDCASE_DB_POOL_TIMEOUT: the server is
        # saturated. A request's work runs on its one session, so it did nothing yet. Say when to come back.
        log.warning("database pool exhausted")
        note_unavailable("pool")
        return _json_error(503, "the server is busy (no database connection free); retry shortly",
                           retry_after=current_app.extensions["fieldcase"].settings.busy_retry_after)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return _json_error(500, "internal error; it has been logged")
