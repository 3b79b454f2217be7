"""The reviewers' audit queue: the issues the audit finds, filtered and paged, and marking one reviewed.

Only reviewers, legal reviewers and admins see it (`audit.REVIEWER_ROLES`).
Each issue links to the console page of what it is about, where there is one.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from flask import flash, redirect, render_template, request, url_for

from backend.casework import audit
from backend.core.errors import DomainError, Forbidden
from backend.web.api.context import now
from backend.web.api.context import session as db_session
from backend.web.console import present, security
from backend.web.console.views.frame import bp, error_page, t
from backend.web.console.views.pages import (
    PAGE_SIZE,
    audit_settings,
    back_to,
    flash_refusal,
    form_text,
    page_arg,
    paging,
)


def _day(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.combine(date.fromisoformat(value), time(0), present.LOCAL_TZ)


@bp.get("/audit")
def audit_queue() -> Any:
    viewer, s = security.viewer(), db_session()
    if not viewer.has_role(*audit.REVIEWER_ROLES):
        return error_page(403, t("audit.not_for_you"))
    page = page_arg()
    kind = request.args.get("kind") or ""
    kind = kind if kind in audit.KINDS else ""
    reviewed_arg = request.args.get("reviewed") or ""
    reviewed = {"yes": True, "no": False}.get(reviewed_arg)
    since_arg, until_arg = request.args.get("from") or "", request.args.get("to") or ""
    error = None
    try:
        since, until = _day(since_arg), _day(until_arg)
    except ValueError:
        since = until = None
        since_arg = until_arg = ""
        error = t("audit.bad_date")
    filters = audit.IssueFilter(kinds=frozenset({kind}) if kind else frozenset(audit.KINDS), since=since,
                                until=until, reviewed=reviewed)
    rows, total = audit.list_issues(s, viewer, filters, audit_settings(), page=page, page_size=PAGE_SIZE, now=now())
    people = present.officer_names(s, (link["id"] for issue in rows for link in issue["links"]
                                       if link.get("rel") in ("officer", "released_by")))
    query = {k: v for k, v in (("kind", kind), ("reviewed", reviewed_arg if reviewed is not None else ""),
                               ("from", since_arg), ("to", until_arg)) if v}
    return render_template("console/audit.html", rows=rows, paging=paging(total, page), kinds=audit.KINDS,
                           filters={"kind": kind, "reviewed": reviewed_arg, "from": since_arg, "to": until_arg},
                           query=query, error=error, link=_issue_link, people=people,
                           here=request.full_path.rstrip("?"))


def _issue_link(link: dict[str, Any]) -> str | None:
    """Where a link of an audit issue leads in the console (objects with no console page stay plain ids)."""
    rel, ident = link.get("rel"), link.get("id")
    if not ident:
        return None
    if rel in ("inspection", "coverage"):
        return url_for("console.inspection", inspection_id=ident) + ("#timeline" if rel == "coverage" else "")
    if rel == "case":
        return url_for("console.case", case_id=ident)
    if rel in ("evidence", "custody"):
        return url_for("console.evidence", evidence_id=ident) + ("#custody" if rel == "custody" else "")
    return None


@bp.post("/audit/review")
def audit_review() -> Any:
    viewer, s = security.viewer(), db_session()
    key = form_text("key", audit.MAX_KEY)
    comment = form_text("comment", audit.MAX_COMMENT)
    back = back_to(url_for("console.audit_queue"))
    try:
        audit.mark_reviewed(s, viewer, key, comment, audit_settings(), now=now())
        s.commit()
    except DomainError as exc:
        s.rollback()
        if isinstance(exc, Forbidden):
            raise
        flash_refusal(exc)
        return redirect(back, code=303)
    flash(t("audit.marked"), "ok")
    return redirect(back + f"#issue-{security.fingerprint(key)}", code=303)

