"""Who holds each evidence item, and hand-overs between custodians (sender asks, receiver acknowledges).

Every step is a custody event, so the custody history of an item names each
holder and each hand-over with its reason.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from backend.core.errors import Conflict, Forbidden, Invalid, NotFound
from backend.core.jurisdiction import may_see_region
from backend.core.models import CustodyHolder, Evidence, Officer
from backend.core.paging import paginate
from media.custody import log as custody


def take_first_custody(session: Session, evidence: Evidence, officer_id: str, *, now: datetime) -> None:
    """On verification the declaring officer holds the item until they hand it to a custodian."""
    if session.get(CustodyHolder, evidence.id) is None:
        session.add(CustodyHolder(evidence_id=evidence.id, holder_id=officer_id, since=now))


def holdings(session: Session, officer: Officer, *, page: int, page_size: int) -> tuple[list[dict[str, Any]], int]:
    stmt = select(CustodyHolder).where(or_(CustodyHolder.holder_id == officer.id,
                                           CustodyHolder.pending_to == officer.id))
    rows, total = paginate(session, stmt, CustodyHolder.since, CustodyHolder.evidence_id, page=page,
                           page_size=page_size)
    items = {e.id: e for e in session.scalars(select(Evidence).where(Evidence.id.in_([h.evidence_id for h in rows])))}
    return [holding(h, items[h.evidence_id]) for h in rows], total


def holding(holder: CustodyHolder, evidence: Evidence) -> dict[str, Any]:
    return {"evidence_id": evidence.id, "kind": evidence.kind, "sha256": evidence.sha256, "size": evidence.size,
            "status": evidence.status, "case_id": evidence.case_id, "holder_id": holder.holder_id,
            "since": holder.since, "pending_to": holder.pending_to, "pending_reason": holder.pending_reason}


def _held(session: Session, evidence_id: str, missing: str) -> tuple[CustodyHolder, Evidence]:
    holder = session.get(CustodyHolder, evidence_id, with_for_update=True)
    evidence = session.get(Evidence, evidence_id)
    if holder is None or evidence is None:
        raise NotFound(missing)
    return holder, evidence


def request_transfer(session: Session, actor: Officer, evidence_id: str, to_officer_id: str, reason: str, *,
                     now: datetime) -> dict[str, Any]:
    # One answer for an id that does not exist and for an item held by someone else: ids are not probed here.
    missing = f"no evidence {evidence_id!r} in your custody"
    holder, evidence = _held(session, evidence_id, missing)
    if holder.holder_id != actor.id:
        raise NotFound(missing)
    target = session.get(Officer, to_officer_id)
    if (target is None or not target.active or not target.has_role("custodian")
            or not may_see_region(target, evidence.region_code)):
        raise Invalid("the receiver must be an active custodian whose jurisdiction covers the item",
                      errors={"to": ["not a custodian for this item"]})
    if target.id == actor.id:
        raise Invalid("the item is already in your custody", errors={"to": ["same holder"]})
    if holder.pending_to:
        raise Conflict("a hand-over of this item is already waiting for its receiver")
    holder.pending_to, holder.pending_reason = target.id, reason
    custody.record(session, "transfer_requested", evidence.id, actor.id, at=now, to=target.id, reason=reason)
    session.flush()
    return holding(holder, evidence)


def acknowledge(session: Session, actor: Officer, evidence_id: str, accept: bool = True,
                note: str | None = None, *, now: datetime) -> dict[str, Any]:
    missing = f"no hand-over of evidence {evidence_id!r} is waiting for you"
    holder, evidence = _held(session, evidence_id, missing)
    if holder.pending_to != actor.id:
        if holder.holder_id != actor.id and not may_see_region(actor, evidence.region_code):
            raise NotFound(missing)  # outside the caller's jurisdiction: as if it did not exist
        raise Forbidden("no hand-over of this item is waiting for you")
    previous, reason = holder.holder_id, holder.pending_reason
    if accept:
        holder.holder_id, holder.since = actor.id, now
        custody.record(session, "transferred", evidence.id, actor.id, at=now, **{"from": previous}, to=actor.id,
                       reason=reason, note=note)
    else:
        custody.record(session, "transfer_refused", evidence.id, actor.id, at=now, **{"from": previous},
                       to=actor.id, reason=reason, note=note)
    holder.pending_to = holder.pending_reason = None
    session.flush()
    return holding(holder, evidence)
