"""The parts console pages and forms are built from, shared by every feature's views.

Every read goes through the function the API uses for the same thing (and so
through `backend.core.jurisdiction`): `scoped_page` fetches a page's object that
way first, so a case of another district is a 404 page here exactly as it is a
404 answer there. Every write is a POST with the session's CSRF token, calls the
domain function, commits, and redirects (303) back with a message
(`flash_refusal` when the domain refuses), so reloading a page never repeats an
action. Here too: reading the page number and form fields within their limits,
the paging of a list, and the settings several pages measure with.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from flask import flash, redirect, render_template, request
from sqlalchemy.orm import Session

from backend.casework import audit
from backend.core.errors import DomainError, NotFound
from backend.core.models import Officer
from backend.web.api.context import session as db_session
from backend.web.api.context import state
from backend.web.console import security
from backend.web.console.views.frame import t

T = TypeVar("T")

PAGE_SIZE = 25
MAX_PURPOSE = 500
MAX_REASON = 2000


def paging(total: int, page: int, page_size: int = PAGE_SIZE) -> dict[str, Any]:
    """What a list's pager shows: this page, how many, and whether there is one before or after."""
    pages = max(1, math.ceil(total / page_size))
    return {"page": page, "pages": pages, "total": total, "has_prev": page > 1, "has_next": page < pages}


def page_arg() -> int:
    """The `page` query argument, 1 when it is missing or not a number."""
    try:
        return max(1, min(int(request.args.get("page", "1")), 100_000))
    except ValueError:
        return 1


def form_text(name: str, limit: int) -> str:
    """A form field, stripped and cut to `limit` characters ("" when it is missing)."""
    return (request.form.get(name) or "").strip()[:limit]


def back_to(default: str) -> str:
    """Where a form goes back to: its own `next` field when that is a safe console path, else `default`."""
    return security.safe_next(request.form.get("next"), default)


def coverage_tolerance() -> timedelta:
    return timedelta(seconds=float(state().settings.coverage_tolerance_seconds))


def audit_settings() -> audit.AuditSettings:
    app = state()
    return audit.AuditSettings(upload_deadline=app.media.upload_deadline, coverage_tolerance=coverage_tolerance())


def scoped_page(template: str, fetch: Callable[[Session, Officer, str], T]) \
        -> Callable[[Callable[[Session, Officer, str, T], dict[str, Any]]], Callable[..., str]]:
    """A page about one object, fetched through the API's own scoped read before anything else is gathered.

    `fetch` raises NotFound for an object outside the viewer's jurisdiction, so
    such a page is the console's 404 (like the API's answer) and nothing about
    the object is read; the decorated function only gathers what the template
    shows, from the object the viewer may see.
    """
    def decorate(gather: Callable[[Session, Officer, str, T], dict[str, Any]]) -> Callable[..., str]:
        @functools.wraps(gather)
        def view(**url_values: str) -> str:
            (ident,) = url_values.values()
            viewer, s = security.viewer(), db_session()
            found = fetch(s, viewer, ident)
            return render_template(template, **gather(s, viewer, ident, found))
        return view
    return decorate


def flash_refusal(exc: DomainError) -> None:
    """A refused action: the domain's own reason, kept as it is (it names the rule that refused)."""
    flash(f"{t('error.generic')} ({exc.status}) {exc.message}", "error")


def act(action: Callable[[Session, Officer], Any], back: str, done: str, *, missing_is_404: bool = False) -> Any:
    """A console form's one domain action, in the request's session: committed and `done` flashed, or refused with
    the domain's reason and nothing kept; back to `back` either way (303). With `missing_is_404` a subject that is
    not there, or not the viewer's, is the page's 404 rather than a refusal (a case page's own case)."""
    s = db_session()
    try:
        action(s, security.viewer())
        s.commit()
    except DomainError as exc:
        if missing_is_404 and isinstance(exc, NotFound):
            raise
        s.rollback()
        flash_refusal(exc)
    else:
        flash(done, "ok")
    return redirect(back, code=303)
