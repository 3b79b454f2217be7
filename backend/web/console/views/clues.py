"""Clues and their complainants: the clue list, a clue's page with its complainant masked, the unmasking form, and
the log of unmaskings (COMPLIANCE §3: mask by default, unmask with a stated purpose, on record).

The page reads the clue through the API's own `get_clue`, so the complainant is masked here exactly as in an API
answer, and shown only to those who handle the clue. Unmasking is a POST with a purpose: the record is committed
first, then the same page is answered (200, `no-store`) with the clear values, never stored in the session or
redirected to, so they are in no cookie, URL or history entry; reloading asks the browser to post again. The log
is for reviewers, legal reviewers and admins, within their jurisdiction, as in the API.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for

from backend.casework import clues, personal_data
from backend.casework.audit import REVIEWER_ROLES
from backend.core.errors import DomainError, NotFound
from backend.core.models import Clue
from backend.core.models.personal_data import MAX_PURPOSE
from backend.web.api.context import now, state
from backend.web.api.context import session as db_session
from backend.web.console import present, security
from backend.web.console.views.frame import bp, t
from backend.web.console.views.pages import PAGE_SIZE, flash_refusal, form_text, page_arg, paging


@bp.get("/clues")
def clue_list() -> Any:
    viewer, s = security.viewer(), db_session()
    page = page_arg()
    status = request.args.get("status") or None
    status = status if status in clues.CLUE_STATUSES else None
    rows, total = clues.list_clues(s, viewer, status=status, page=page, page_size=PAGE_SIZE)
    query = {"status": status} if status else {}
    return render_template("console/clues.html", rows=rows, insts=present.institutions(s, (r["institution_id"]
                                                                                            for r in rows)),
                           paging=paging(total, page), statuses=clues.CLUE_STATUSES, filters={"status": status or ""},
                           query=query, may_read_log=viewer.has_role(*REVIEWER_ROLES))


def _clue_page(clue_id: str, unmasked: dict[str, Any] | None = None) -> str:
    """A clue's page: NotFound (the console's 404) outside the viewer's jurisdiction, like the API's answer."""
    viewer, s = security.viewer(), db_session()
    detail = clues.get_clue(s, viewer, clue_id, keys=state().keys)
    clue = s.get(Clue, detail["id"])
    handles = clue is not None and clues.may_handle(s, viewer, clue)
    institution = present.institutions(s, [detail["institution_id"]]).get(detail["institution_id"])
    people = present.officer_names(s, [detail["reported_by"], *(tr["requested_by"] for tr in detail["transfers"])])
    return render_template("console/clue.html", clue=detail, institution=institution, people=people,
                           handles=handles, unmasked=unmasked, max_purpose=MAX_PURPOSE)


@bp.get("/clues/<clue_id>")
def clue(clue_id: str) -> Any:
    return _clue_page(clue_id)


@bp.post("/clues/<clue_id>/unmask")
def clue_unmask(clue_id: str) -> Any:
    """The complainant in clear for the stated purpose: recorded and committed before the page is answered."""
    viewer, s = security.viewer(), db_session()
    purpose = form_text("purpose", MAX_PURPOSE + 1)
    back = url_for("console.clue", clue_id=clue_id) + "#complainant"
    if not purpose:
        flash(t("unmask.purpose_missing"), "error")
        return redirect(back, code=303)
    try:
        unmasked = personal_data.unmask_complainant(s, viewer, clue_id, purpose=purpose, keys=state().keys,
                                                    now=now())
    except NotFound:
        raise
    except DomainError as exc:  # not a handler of the clue (403), a purpose too long (422)
        s.rollback()
        flash_refusal(exc)
        return redirect(back, code=303)
    s.commit()  # the record is kept before any clear value leaves
    return _clue_page(clue_id, unmasked)


@bp.get("/unmaskings")
def unmaskings() -> Any:
    viewer, s = security.viewer(), db_session()  # who may read the log: personal_data.list_unmaskings says
    page = page_arg()
    clue_id = (request.args.get("clue_id") or "").strip()[:40] or None
    rows, total = personal_data.list_unmaskings(s, viewer, clue_id=clue_id, page=page, page_size=PAGE_SIZE)
    query = {"clue_id": clue_id} if clue_id else {}
    return render_template("console/unmaskings.html", rows=rows, paging=paging(total, page), query=query,
                           clue_id=clue_id or "")
