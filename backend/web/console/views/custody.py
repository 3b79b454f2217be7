"""Evidence custody from the custodian's side: who holds what, hand-overs between custodians, package export.

A hand-over is two steps, requested by the holder and accepted or refused by
the receiver (`media.holders`); each is committed and flashed, or refused with
the domain's reason. A case's evidence package (the API's
`GET /cases/{id}/package`) is exported with a stated purpose and streamed as
it is written; the export is a custody event of every item in it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import or_, select

from backend.core.errors import Forbidden
from backend.core.jurisdiction import regions_of
from backend.core.models import Officer
from backend.core.reference import CITY
from backend.web.api.context import now
from backend.web.api.context import session as db_session
from backend.web.api.packages import ROLES as PACKAGE_ROLES
from backend.web.api.packages import package_response
from backend.web.console import present, security
from backend.web.console.views.frame import bp, t
from backend.web.console.views.pages import (
    MAX_PURPOSE,
    PAGE_SIZE,
    act,
    back_to,
    form_text,
    page_arg,
    paging,
)
from media import holders


def _custodians(viewer: Officer) -> list[Officer]:
    """Active custodians a hand-over could go to (the domain still checks the item's region on transfer)."""
    scope = regions_of(viewer)
    stmt = select(Officer).where(Officer.active.is_(True), Officer.id != viewer.id)
    if scope is not None:
        stmt = stmt.where(or_(Officer.region_code.in_(sorted(scope)), Officer.region_code == CITY))
    return [o for o in db_session().scalars(stmt.order_by(Officer.name)) if o.has_role("custodian")]


@bp.get("/custody")
def custody_page() -> Any:
    viewer, s = security.viewer(), db_session()
    page = page_arg()
    rows, total = holders.holdings(s, viewer, page=page, page_size=PAGE_SIZE)
    people = present.officer_names(s, [*(r["holder_id"] for r in rows), *(r["pending_to"] for r in rows)])
    return render_template("console/custody.html", rows=rows, paging=paging(total, page), people=people,
                           custodians=_custodians(viewer), may_export=viewer.has_role(*PACKAGE_ROLES),
                           prefill=request.args.get("case_id", "")[:40])


def _custody_action(action: Callable[[Any, Any], Any], done: str) -> Any:
    """One hand-over step from the custody page, back to that page."""
    return act(action, url_for("console.custody_page"), t(done))


@bp.post("/custody/transfer")
def custody_transfer() -> Any:
    return _custody_action(lambda s, viewer: holders.request_transfer(
        s, viewer, form_text("evidence_id", 40), form_text("to", 40), form_text("reason", MAX_PURPOSE), now=now()),
        "custody.transfer.done")


@bp.post("/custody/acknowledge")
def custody_acknowledge() -> Any:
    accept = request.form.get("answer") != "refuse"
    return _custody_action(lambda s, viewer: holders.acknowledge(
        s, viewer, form_text("evidence_id", 40), accept, form_text("note", MAX_PURPOSE) or None, now=now()),
        "custody.ack.done")


@bp.post("/package")
def export_package() -> Any:
    """The case's evidence package (the API's `GET /cases/{id}/package`), streamed as it is written: of the whole
    case, or of the items ticked on the case page (a court often asks for one clip)."""
    viewer = security.viewer()
    case_id = form_text("case_id", 40)
    purpose = form_text("purpose", MAX_PURPOSE)
    back = back_to(url_for("console.custody_page"))
    if not viewer.has_role(*PACKAGE_ROLES):
        raise Forbidden(t("custody.export.roles"))
    if not case_id or not purpose:
        flash(t("custody.export.missing"), "error")
        return redirect(back, code=303)
    items = [i[:40] for i in request.form.getlist("items") if i][:500] or None  # none chosen: the whole case
    return package_response(viewer, case_id, purpose, items)

