"""The administrative-penalty procedure as a state machine over a case's `status` (docs: "Case lifecycle, as built").

registered -> investigating -> [legal_review ->] notified -> decided -> executed -> closed, with the exits
not_penalised, transferred and dismissed. Every step is a `CaseTransition` row, a case change (version,
per-field history, feed) through `record_case_change`, and a `case_transition` change in the feed.

`transferred` is where a transfer ends the sending department's case. Taken as a step here it is a transfer
made at once: backend.casework.joint records it, and the receiver's answer opens the successor case. Asked for through
backend.casework.joint instead, the case stays open until the receiver accepts (docs: "Transfers, as built").
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from backend.casework import credit
from backend.casework.case_history import record_case_change
from backend.casework.conflicts import works_on
from backend.core.errors import Conflict, Forbidden, Invalid
from backend.core.jurisdiction import get_scoped
from backend.core.models import Case, CaseConflict, CaseTransition, Department, Evidence, Inspection, Officer
from media.coverage import DEFAULT_TOLERANCE, inspection_coverage
from sync import feed

# from -> the statuses it may go to. Closed statuses (closed, not_penalised, transferred, dismissed) go nowhere.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "clue": ("registered", "dismissed"),
    "registered": ("investigating", "dismissed", "transferred"),
    # Straight to `notified` when no major decision is in view; legal review otherwise.
    "investigating": ("legal_review", "notified", "not_penalised", "dismissed", "transferred"),
    # Only a legal reviewer leaves legal review: approve (-> notified), send back (-> investigating),
    # conclude there is nothing to penalise, or transfer (e.g. to the judiciary).
    "legal_review": ("notified", "investigating", "not_penalised", "transferred"),
    # After notice (and the party's statement or hearing): decide, drop the penalty, or transfer.
    "notified": ("decided", "not_penalised", "transferred"),
    "decided": ("executed",),
    "executed": ("closed",),
}

TRANSFER_TARGETS = ("city", "judiciary")  # besides another department's code
GOOD_COVERAGE = ("complete", "explained")


def _major_reasons(decision: Mapping[str, Any], threshold: int) -> list[str]:
    reasons = []
    if (decision.get("fine_yuan") or 0) > threshold:
        reasons.append(f"fine above {threshold} yuan")
    if decision.get("licence_revocation"):
        reasons.append("licence revocation")
    if decision.get("ordered_closure"):
        reasons.append("ordered closure")
    return reasons


def missing_for_closing(session: Session, actor: Officer, case: Case, *,
                        tolerance: timedelta = DEFAULT_TOLERANCE) -> list[dict[str, Any]]:
    """What keeps the case's file from being complete: unverified evidence, uncovered inspections, open conflicts."""
    missing: list[dict[str, Any]] = []
    inspection_ids = list(session.scalars(select(Inspection.id).where(Inspection.case_id == case.id)
                                          .order_by(Inspection.started_at, Inspection.id)))
    where = Evidence.case_id == case.id
    if inspection_ids:
        where = or_(where, Evidence.inspection_id.in_(inspection_ids))
    for e in session.scalars(select(Evidence).where(where, Evidence.status != "verified").order_by(Evidence.id)):
        missing.append({"kind": "evidence", "id": e.id, "status": e.status,
                        "message": f"evidence {e.id} is {e.status}, not verified"})
    for iid in inspection_ids:
        status = inspection_coverage(session, actor, iid, tolerance=tolerance)["status"]
        if status not in GOOD_COVERAGE:
            missing.append({"kind": "inspection", "id": iid, "status": status,
                            "message": f"inspection {iid} coverage is {status}, not complete or explained"})
    for c in session.scalars(select(CaseConflict).where(CaseConflict.case_id == case.id,
                                                        CaseConflict.status == "open").order_by(CaseConflict.id)):
        missing.append({"kind": "conflict", "id": str(c.id), "status": c.status,
                        "message": f"conflict {c.id} on {c.field} is still open"})
    return missing


def _check_role(session: Session, actor: Officer, case: Case, to: str) -> None:
    if case.status == "legal_review":
        if not actor.has_role("legal_reviewer"):
            raise Forbidden("only a legal reviewer may conclude legal review")
        return
    if actor.has_role("admin") or works_on(session, actor, case):
        return
    if to == "closed" and actor.has_role("reviewer"):
        return
    raise Forbidden("only the case's officers or an admin may move it along"
                    + (" (or a reviewer, to close it)" if to == "closed" else ""))


def _check_transfer(session: Session, case: Case, target: str | None) -> None:
    if not target:
        raise Invalid("a transfer needs transfer_to: another department's code, city or judiciary",
                      errors={"transfer_to": ["required when to is transferred"]})
    if target in TRANSFER_TARGETS:
        return
    if target == case.department_code:
        raise Invalid(f"the case already belongs to department {target!r}",
                      errors={"transfer_to": ["must differ from the case's department"]})
    if session.get(Department, target) is None:
        raise Invalid(f"no department {target!r}",
                      errors={"transfer_to": ["a department code, city or judiciary"]})


def check_step(session: Session, actor: Officer, case: Case, to: str) -> None:
    """move()'s first gates, for a step asked for now and taken later (a transfer waiting for its answer)."""
    allowed = TRANSITIONS.get(case.status, ())
    if to not in allowed:
        raise Conflict(f"a case in status {case.status!r} cannot go to {to!r}"
                       + (f"; from {case.status} it may go to: {', '.join(allowed)}" if allowed
                          else f"; {case.status} is final"),
                       errors={"to": [f"allowed from {case.status}: {list(allowed)}"]})
    _check_role(session, actor, case, to)


def move(session: Session, actor: Officer, case: Case, *, to: str, reason: str,
         decision: Mapping[str, Any] | None = None, transfer_to: str | None = None,
         override_reason: str | None = None, major_fine_threshold: int = 10_000,
         tolerance: timedelta = DEFAULT_TOLERANCE, op: str | None = None, at: datetime,
         role_checked: bool = False) -> CaseTransition:
    """The one gate every status change passes, from the desk (`at` the request's time) or from a phone's
    `case.update` (`op`, and `at` the record's time).

    `role_checked`: the caller settled who may take the step. Only an accepted transfer does: the receiver
    answers, and the request it answers passed `check_step` when it was made.
    """
    source = case.status
    if to not in TRANSITIONS.get(source, ()):
        allowed = TRANSITIONS.get(source, ())
        raise Conflict(f"a case in status {source!r} cannot go to {to!r}; "
                       + (f"from {source} it may go to: {', '.join(allowed)}" if allowed
                          else f"{source} is final"),
                       errors={"to": [f"allowed from {source}: {list(allowed)}"]})
    if not role_checked:
        _check_role(session, actor, case, to)
    if decision is not None and to != "decided":
        raise Invalid("a decision is given only when going to decided", errors={"decision": ["only for decided"]})
    if transfer_to is not None and to != "transferred":
        raise Invalid("transfer_to is given only when going to transferred",
                      errors={"transfer_to": ["only for transferred"]})
    if override_reason is not None:
        if to != "closed":
            raise Invalid("override_reason is given only when closing",
                          errors={"override_reason": ["only for closed"]})
        if not actor.has_role("reviewer"):
            raise Forbidden("only a reviewer may close a case over an incomplete file")

    stored_decision = None
    if to == "decided":
        if not decision or not any(decision.get(k) for k in ("fine_yuan", "licence_revocation", "ordered_closure")):
            raise Invalid("a decision needs a fine, a licence revocation or an ordered closure "
                          "(a case without penalty goes to not_penalised)", errors={"decision": ["required"]})
        major = _major_reasons(decision, major_fine_threshold)
        discretion = credit.check_decision(session, decision)
        review = major + ([discretion.reason()] if discretion and discretion.outside else [])
        if review and not session.scalar(select(exists().where(CaseTransition.case_id == case.id,
                                                               CaseTransition.legal_approval.is_(True)))):
            what = "a major decision" if major else "a decision outside the discretion benchmark"
            raise Conflict(f"{what} ({', '.join(review)}) needs a legal reviewer's approval first: "
                           "send the case through legal_review", errors={"decision": review})
        stored_decision = {**decision, "major": bool(major), "major_reasons": major,
                           "major_fine_threshold_yuan": major_fine_threshold,
                           **(discretion.stored() if discretion else {})}
    if to == "transferred":
        _check_transfer(session, case, transfer_to)

    missing = None
    if to == "closed":
        missing = missing_for_closing(session, actor, case, tolerance=tolerance)
        if missing and override_reason is None:
            raise Conflict("the case file is incomplete: " + "; ".join(m["message"] for m in missing)
                           + " (a reviewer may close it anyway with override_reason)",
                           errors={"missing": missing})

    record_case_change(session, case, {"status": to}, actor.id, op, at)
    row = CaseTransition(case_id=case.id, region_code=case.region_code, from_status=source, to_status=to,
                         actor=actor.id, at=at, reason=reason, decision=stored_decision, transfer_to=transfer_to,
                         legal_approval=source == "legal_review" and to == "notified",
                         override_reason=override_reason, missing=missing or None, case_version=case.version)
    session.add(row)
    session.flush()
    feed.emit(session, "case_transition", row)
    return row


def list_transitions(session: Session, viewer: Officer, case_id: str) -> dict[str, Any]:
    """The case's transitions, oldest first, with its status and where it may go next."""
    case = get_scoped(session, Case, case_id, viewer, what="case")
    rows = session.scalars(select(CaseTransition).where(CaseTransition.case_id == case.id)
                           .order_by(CaseTransition.id))
    return {"case_id": case.id, "status": case.status, "version": case.version,
            "next": list(TRANSITIONS.get(case.status, ())), "transitions": [feed.transition_data(t) for t in rows]}
