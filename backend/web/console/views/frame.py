"""What surrounds every console page: the blueprint, the checks before a view runs, the headers, the errors.

All the console's views register on the one blueprint made here. Before any of
them runs, the page's language is chosen, a POST's fields are checked for NUL
and lone surrogates and its CSRF token is checked, and the signed-in viewer is
loaded (or the browser is sent to sign in); after it, the security headers are
set. A domain error or an unexpected one becomes the console's own error page
(or, under /console/api/, the API's JSON error body). The template globals
(the language, `t`, the reference names) are defined here too, since every
template uses them.
"""

from __future__ import annotations

import logging
import os
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, flash, g, jsonify, redirect, render_template, request, session, url_for
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from backend.casework import audit
from backend.core.errors import DomainError, NotFound
from backend.core.json_text import contains_lone_surrogate, contains_nul
from backend.core.models import Department, Region, ViolationCategory
from backend.web.api.context import now
from backend.web.api.context import session as db_session
from backend.web.api.errors import error_body
from backend.web.console import present, security
from backend.web.console.i18n import DEFAULT_LANGUAGE, HTML_LANG, LANGUAGES, code, translate

log = logging.getLogger("fieldcase.console")

# The templates and static files are the console package's (backend/web/console/templates, .../static, declared
# as its package data), one folder above this module.
CONSOLE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates", static_folder="static",
               static_url_path="/static", root_path=CONSOLE_ROOT)

PUBLIC_ENDPOINTS = {"console.login", "console.login_post", "console.static", "console.not_found"}


def t(key: str, **values: Any) -> str:
    return translate(key, g.get("lang", DEFAULT_LANGUAGE), **values)


def _language() -> str:
    wanted = request.args.get("lang")
    if wanted in LANGUAGES:
        session["lang"] = wanted
        return wanted
    stored = session.get("lang")
    return stored if stored in LANGUAGES else DEFAULT_LANGUAGE


def _is_api() -> bool:
    return request.path.startswith("/console/api/")


def error_page(status: int, message: str, detail: str | None = None) -> tuple[str, int]:
    """The console's error page, with `status` as the answer's status."""
    return render_template("console/error.html", status=status, message=message, detail=detail), status


@bp.before_request
def _frame() -> Any:
    """Language, form hygiene, CSRF, and the signed-in viewer, before any console view runs."""
    g.lang = _language()
    if request.method == "POST":
        values = [v for _k, vs in request.form.lists() for v in vs]
        if any(contains_nul(v) or contains_lone_surrogate(v) for v in values):
            return error_page(422, t("error.422"), "NUL or a lone surrogate in a form field")
        if not security.csrf_ok():
            return error_page(403, t("error.csrf"))
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    g.viewer = security.signed_in(db_session(), now=now())
    if g.viewer is None:
        if _is_api():
            return jsonify(error_body(401, "sign in to the console first")), 401
        if session.get("officer"):  # it was signed in: the sign-in ended (signed out elsewhere, expired, ...)
            security.end(db_session(), now=now())
            flash(t("login.expired"), "error")
        target = request.full_path if request.method == "GET" else url_for("console.cases")
        return redirect(url_for("console.login", next=target.rstrip("?")))
    return None


# The release's own files (style sheet, scripts), the same for everyone: cached and revalidated by their ETag.
RELEASE_FILES = frozenset({"console.static", "console.sm_crypto", "console.sm2_rule"})


@bp.after_request
def _headers(response: Response) -> Response:
    """No framing, no third-party anything, nothing cached but the release's own files: these pages hold case
    files and personal data."""
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if request.endpoint not in RELEASE_FILES:
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(DomainError)
def _domain_error(exc: DomainError) -> Any:
    if _is_api():
        response = jsonify(error_body(exc.status, exc.message, exc.errors))
        response.status_code = exc.status
        return response
    messages = {404: "error.404", 403: "error.403", 422: "error.422"}
    return error_page(exc.status, t(messages.get(exc.status, "error.generic")), exc.message)


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Any:
    """A console page never answers the API's JSON 500; the error is logged like any other."""
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        if _is_api():
            return jsonify(error_body(status, exc.description or "error")), status
        return error_page(status, t("error.404") if status == 404 else t("error.generic"), exc.description)
    log.exception("console: unhandled error")
    if _is_api():
        return jsonify(error_body(500, "internal error; it has been logged")), 500
    return error_page(500, t("error.generic"))


@bp.route("/<path:rest>")
def not_found(rest: str) -> Any:
    """Unknown console paths answer the console's own 404 page, not the API's JSON."""
    raise NotFound(f"no page {rest!r}")


class Names:
    """Reference names (regions, departments, categories) in the page's language, read once per request."""

    def __init__(self) -> None:
        s = db_session()
        self.regions = {r.code: r for r in s.scalars(select(Region).order_by(Region.sort, Region.code))}
        self.departments = {d.code: d for d in s.scalars(select(Department).order_by(Department.sort))}
        self.categories = {c.code: c for c in s.scalars(select(ViolationCategory).order_by(ViolationCategory.sort))}

    @staticmethod
    def _name(row: Any, fallback: str | None) -> str:
        if row is None:
            return fallback or ""
        return row.name_zh if g.lang == "zh" else row.name_en

    def region(self, value: str | None) -> str:
        return self._name(self.regions.get(value or ""), value)

    def department(self, value: str | None) -> str:
        return self._name(self.departments.get(value or ""), value)

    def category(self, value: str | None) -> str:
        return self._name(self.categories.get(value or ""), value)


def names() -> Names:
    if "console_names" not in g:
        g.console_names = Names()
    return g.console_names


@bp.context_processor
def _template_globals() -> dict[str, Any]:
    other = "en" if g.get("lang", DEFAULT_LANGUAGE) == "zh" else "zh"
    args = {k: v for k, v in request.args.items(multi=True) if k != "lang"}
    switch = request.path + "?" + urlencode([*args.items(), ("lang", other)])
    return {
        "t": t, "code": lambda prefix, value: code(prefix, value, g.lang), "lang": g.get("lang", DEFAULT_LANGUAGE),
        "html_lang": HTML_LANG[g.get("lang", DEFAULT_LANGUAGE)], "viewer": g.get("viewer"),
        "csrf_token": security.csrf_token, "csrf_field": security.CSRF_FIELD, "local": present.local,
        "names": names, "switch_language_url": switch, "is_reviewer": _is_reviewer, "fingerprint": security.fingerprint,
    }


def _is_reviewer() -> bool:
    viewer = g.get("viewer")
    return viewer is not None and viewer.has_role(*audit.REVIEWER_ROLES)
