"""Cases and their inspections: the case list and its filters, a case's page and its lifecycle step, an inspection.

A case's page gathers what a reviewer weighs: its inspections and their
full-process recording coverage, its conflicts, its lifecycle transitions, and
the ledger of signed records behind it. The lifecycle form takes the plain
steps only; decisions and transfers need structured data (fine, benchmark,
target), which the API and the phone supply.
"""

from __future__ import annotations

from typing import Any

from flask import flash, g, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.casework import conflicts, corrections, lifecycle, procedure, queries
from backend.casework.institutions import search_institutions
from backend.core.jurisdiction import regions_of
from backend.core.models import CASE_STATUSES, Evidence, Officer
from backend.web.api.context import now, state
from backend.web.api.context import session as db_session
from backend.web.api.packages import ROLES as PACKAGE_ROLES
from backend.web.console import present, security
from backend.web.console.i18n import code
from backend.web.console.views.frame import bp, names, t
from backend.web.console.views.pages import (
    MAX_REASON,
    PAGE_SIZE,
    act,
    coverage_tolerance,
    form_text,
    page_arg,
    paging,
    scoped_page,
)
from media.coverage import inspection_coverage

# Decisions and transfers need structured data (fine, benchmark, target); the console offers the plain steps.
STRUCTURED_STEPS = ("decided", "transferred")


@bp.get("/cases")
def cases() -> Any:
    viewer, s = security.viewer(), db_session()
    page = page_arg()
    status = request.args.get("status") or None
    region = request.args.get("region") or None
    department = request.args.get("department") or None
    institution_id = request.args.get("institution_id") or None
    q = (request.args.get("q") or "").strip()[:100]
    status = status if status in CASE_STATUSES else None
    region = region if region and region.isdigit() and len(region) == 6 else None
    department = department if department in names().departments else None
    matches: list[Any] = []
    chosen = None
    rows: list[dict[str, Any]] = []
    total = 0
    if institution_id:
        found = present.institutions(s, [institution_id]).get(institution_id)
        chosen = found if found is not None and (regions_of(viewer) is None
                                                 or found.region_code in regions_of(viewer)) else None
        if chosen is None:
            institution_id = None
    elif q:
        matches, match_total = search_institutions(s, viewer, q=q, page=1, page_size=20)
        if match_total == 1:
            chosen, institution_id, matches = matches[0], matches[0].id, []
    if not (q and chosen is None):
        rows, total = queries.list_cases(s, viewer, status=status, region=region, department=department,
                                         institution_id=institution_id, page=page, page_size=PAGE_SIZE)
    insts = present.institutions(s, (r["institution_id"] for r in rows))
    scope = regions_of(viewer)
    region_options = [r for r in names().regions.values() if r.level != "city" and (scope is None or r.code in scope)]
    filters = {"status": status or "", "region": region or "", "department": department or "", "q": q,
               "institution_id": institution_id or ""}
    query = {k: v for k, v in filters.items() if v}
    return render_template("console/cases.html", rows=rows, insts=insts, paging=paging(total, page),
                           filters=filters, query=query, statuses=CASE_STATUSES, region_options=region_options,
                           matches=matches, chosen=chosen)


@bp.get("/cases/<case_id>")
@scoped_page("console/case.html", lambda s, viewer, case_id: queries.get_case(s, viewer, case_id, now=now()))
def case(s: Session, viewer: Officer, case_id: str, detail: dict[str, Any]) -> dict[str, Any]:
    steps = lifecycle.list_transitions(s, viewer, case_id)
    inspection_ids = [i["id"] for i in detail["inspections"]]
    coverage = {iid: inspection_coverage(s, viewer, iid, tolerance=coverage_tolerance())["status"]
                for iid in inspection_ids}
    open_rows, _ = conflicts.list_conflicts(s, viewer, case_id=case_id, status=None, page=1, page_size=200)
    case_conflicts = [conflicts.describe(c) for c in open_rows]
    ledger = present.ledger_rows(s, detail["id"], inspection_ids)
    people = present.officer_names(s, [
        detail["created_by"], *(o for i in detail["inspections"] for o in i["officers"]),
        *(f["recorded_by"] for i in detail["inspections"] for f in i["findings"]),
        *(tr["actor"] for tr in steps["transitions"])])
    next_steps = [n for n in steps["next"] if n not in STRUCTURED_STEPS]
    people.update(present.officer_names(s, [c["by"] for c in detail["corrections"]]))
    return {"case": detail, "steps": steps, "coverage": coverage, "conflicts": case_conflicts, "ledger": ledger,
            "people": people, "next_steps": next_steps, "may_export": viewer.has_role(*PACKAGE_ROLES),
            "may_correct": viewer.has_role(*corrections.DESK_ROLES)}


@bp.post("/cases/<case_id>/transitions")
def case_step(case_id: str) -> Any:
    security.viewer()  # signed in, before the form is read
    to = form_text("to", 32)
    reason = form_text("reason", MAX_REASON)
    override = form_text("override_reason", MAX_REASON) or None
    back = url_for("console.case", case_id=case_id) + "#lifecycle"
    if to in STRUCTURED_STEPS or to not in CASE_STATUSES or not reason:
        flash(t("error.422") + " " + t("case.step.reason"), "error")
        return redirect(back, code=303)
    settings = state().settings
    return act(lambda s, viewer: procedure.transition(
        s, viewer, case_id, to=to, reason=reason, override_reason=override if to == "closed" else None,
        major_fine_threshold=settings.major_fine_yuan, tolerance=coverage_tolerance(), now=now()),
        back, t("case.step.done", status=code("status", to, g.lang)), missing_is_404=True)


@bp.post("/cases/<case_id>/corrections")
def case_correction(case_id: str) -> Any:
    """A reviewer's correction of the case's institution or of a finding (docs/protocol.md, "Corrections")."""
    security.viewer()  # signed in, before the form is read
    subject = form_text("subject", 16)
    reason = form_text("reason", 500)
    back = url_for("console.case", case_id=case_id) + "#corrections"
    if subject == "case":
        ident = form_text("institution_id", 40)
        fields: dict[str, Any] = {"institution": {"id": ident} if ident else {
            k: v for k in ("name", "region", "credit_code", "address") if (v := form_text(k, 400))}}
    else:
        fields = {k: v for k in ("category", "description") if (v := form_text(k, 8000))}
    subject_id = form_text("subject_id", 40) or None
    return act(lambda s, viewer: corrections.correct_at_desk(
        s, viewer, case_id, subject=subject if subject == "case" else "finding", subject_id=subject_id, fields=fields,
        reason=reason, now=now()), back, t("correction.done"), missing_is_404=True)


@bp.get("/inspections/<inspection_id>")
@scoped_page("console/inspection.html",
             lambda s, viewer, inspection_id: queries.get_inspection(s, viewer, inspection_id, now=now()))
def inspection(s: Session, viewer: Officer, inspection_id: str, detail: dict[str, Any]) -> dict[str, Any]:
    coverage = inspection_coverage(s, viewer, inspection_id, tolerance=coverage_tolerance())
    items = list(s.scalars(select(Evidence).where(Evidence.inspection_id == inspection_id)
                           .order_by(Evidence.captured_at, Evidence.id)))
    clips = [e for e in items if e.camera_serial is not None]
    photos = [e for e in items if e.kind == "photo"]
    timeline = present.inspection_timeline(coverage, clips, photos)
    people = present.officer_names(s, [*detail["officers"], detail["started_by"],
                                       *(f["recorded_by"] for f in detail["findings"])])
    return {"inspection": detail, "coverage": coverage, "timeline": timeline, "items": items, "clips": clips,
            "photos": photos, "people": people, "palette": present.PALETTE}

