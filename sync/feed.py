"""The change feed (PROTOCOL §5): what phones pull, in server order, never skipping a change.

Writers queue changes on their session; `before_commit` hooks snapshot them
first, then write them right before the commit. On PostgreSQL that write
takes a transaction-level advisory lock, held until the commit is visible,
so feed ids become visible in id order: a reader that has seen id N can never
later find a committed id below N. Snapshotting (and the flush it needs)
happens before any such lock, so the lock is held only for the insert and
the commit. SQLite serialises writers anyway (BEGIN IMMEDIATE).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select, text, union_all
from sqlalchemy.orm import Session

from backend.core import commit_queue
from backend.core.bulk import insert_rows
from backend.core.errors import Gone
from backend.core.jurisdiction import regions_of
from backend.core.models import (
    Case,
    CaseAlias,
    CaseConflict,
    CaseDepartment,
    CaseTransition,
    Change,
    Clue,
    Evidence,
    Institution,
    Officer,
    Task,
    Transfer,
)
from backend.core.times import utc_iso
from backend.core.uow import Services

FEED_LOCK_KEY = 0x6663_6665_6564  # "fcfeed"
PENDING = "fieldcase.pending_changes"
SNAPSHOTS = "fieldcase.change_rows"  # taken before any lock; written under the feed's lock


def case_data(c: Case) -> dict[str, Any]:
    return {"id": c.id, "institution_id": c.institution_id, "region": c.region_code,
            "department": c.department_code, "status": c.status, "summary": c.summary, "version": c.version,
            "created_by": c.created_by, "created_at": utc_iso(c.created_at), "updated_at": utc_iso(c.updated_at)}


def alias_data(a: CaseAlias) -> dict[str, Any]:
    return {"client_case_id": a.client_case_id, "case_id": a.case_id, "merged": a.merged}


def institution_data(i: Institution) -> dict[str, Any]:
    return {"id": i.id, "credit_code": i.credit_code, "name": i.name, "address": i.address,
            "region": i.region_code, "licence_status": i.licence_status, "category": i.category,
            "risk_level": i.risk_level, "provisional": i.provisional, "unmatched": bool(i.unmatched)}


def evidence_data(e: Evidence) -> dict[str, Any]:
    # Deleted under retention: the server keeps no file, so neither need the phone.
    # sha256 and sm3: as declared (null when not declared), both once verified (docs/protocol.md §6).
    return {"id": e.id, "status": e.status, "purge_allowed": e.status in ("verified", "deleted"), "sha256": e.sha256,
            "sm3": e.sm3, "size": e.size, "kind": e.kind, "inspection_id": e.inspection_id, "case_id": e.case_id}


def conflict_data(c: CaseConflict) -> dict[str, Any]:
    return {"id": str(c.id), "case_id": c.case_id, "field": c.field, "base_version": c.base_version,
            "base_value": c.base_value, "server_value": c.server_value, "phone_value": c.phone_value,
            "status": c.status, "resolved_value": c.resolved_value}


def transition_data(t: CaseTransition) -> dict[str, Any]:
    return {"id": str(t.id), "case_id": t.case_id, "from": t.from_status, "to": t.to_status, "actor": t.actor,
            "at": utc_iso(t.at), "reason": t.reason, "decision": t.decision, "transfer_to": t.transfer_to,
            "legal_approval": t.legal_approval, "override_reason": t.override_reason, "missing": t.missing,
            "case_version": t.case_version}


def task_data(t: Task) -> dict[str, Any]:
    return {"id": t.id, "draw_id": t.draw_id, "campaign_id": t.campaign_id, "institution_id": t.institution_id,
            "region": t.region_code, "departments": list(t.departments or []), "officers": list(t.officers or []),
            "planned_date": t.planned_date.isoformat(), "status": t.status, "inspection_id": t.inspection_id,
            "created_at": utc_iso(t.created_at), "done_at": utc_iso(t.done_at)}


def clue_data(c: Clue) -> dict[str, Any]:
    """Everything but the complainant: their personal data never reaches a phone."""
    return {"id": c.id, "source": c.source, "institution_id": c.institution_id, "region": c.region_code,
            "description": c.description, "status": c.status, "category": c.category, "department": c.department_code,
            "tracking_code": c.tracking_code, "duplicate_of": c.duplicate_of, "case_id": c.case_id,
            "attachments": list(c.attachments or []), "outcome": c.outcome, "closed_reason": c.closed_reason,
            "reported_by": c.reported_by, "reported_at": utc_iso(c.reported_at), "updated_at": utc_iso(c.updated_at),
            "closed_at": utc_iso(c.closed_at)}


def transfer_data(t: Transfer) -> dict[str, Any]:
    """The transfer without what was handed over (`sent` can be a whole case file; the API serves it)."""
    return {"id": t.id, "subject_kind": t.subject_kind, "subject_id": t.subject_id, "region": t.region_code,
            "from_department": t.from_department, "to": t.to_kind, "to_department": t.to_department,
            "reason": t.reason, "status": t.status, "requested_by": t.requested_by,
            "requested_at": utc_iso(t.requested_at), "decided_by": t.decided_by, "decided_at": utc_iso(t.decided_at),
            "decision_reason": t.decision_reason, "successor_case_id": (t.sent or {}).get("successor_case_id")}


def participant_data(d: CaseDepartment) -> dict[str, Any]:
    return {"case_id": d.case_id, "department": d.department_code, "added_by": d.added_by,
            "added_at": utc_iso(d.added_at), "reason": d.reason}


# kind -> (snapshot, region of the row, officer who owns it)
KINDS: dict[str, tuple[Callable[[Any], dict[str, Any]], Callable[[Any], str | None], Callable[[Any], str | None]]] = {
    "case": (case_data, lambda c: c.region_code, lambda c: c.created_by),
    "institution": (institution_data, lambda i: i.region_code, lambda i: None),
    "evidence": (evidence_data, lambda e: e.region_code, lambda e: e.officer_id),
    "conflict": (conflict_data, lambda c: None, lambda c: c.officer_id),
    "case_transition": (transition_data, lambda t: t.region_code, lambda t: t.actor),
    # A drawn task is for its team only (backend.casework.draws emits one change per assigned officer): no region.
    "task": (task_data, lambda t: None, lambda t: None),
    "clue": (clue_data, lambda c: c.region_code, lambda c: c.reported_by),
    "transfer": (transfer_data, lambda t: t.region_code, lambda t: t.requested_by),
    # Emitted with the case's region (backend.casework.joint).
    "case_department": (participant_data, lambda d: None, lambda d: d.added_by),
}


def emit(session: Session, kind: str, obj: Any, *, op: str = "upsert", region: str | None = None,
         officer: str | None = None) -> None:
    """Queue a change; the row is snapshotted at commit, so later edits in the same transaction count."""
    commit_queue.enqueue(session, PENDING, (kind, obj, op, region, officer))


def _key(kind: str, obj: Any) -> str:
    if kind == "case_alias":
        return obj.client_case_id
    if kind == "case_department":
        return f"{obj.case_id}:{obj.department_code}"
    return str(obj.id)


def _rows(session: Session) -> list[dict[str, Any]]:
    latest: dict[tuple[str, str, str | None], tuple] = {}
    for entry in commit_queue.take(session, PENDING):
        # One change per entity and audience: its state at commit.
        latest[(entry[0], _key(entry[0], entry[1]), entry[4])] = entry
    if not latest:
        return []
    session.flush()
    rows = []
    for (kind, key, _audience), (_k, obj, op, region, officer) in latest.items():
        if kind == "case_alias":
            data, region_of, owner_of = alias_data(obj), None, None
        else:
            snapshot, region_fn, owner_fn = KINDS[kind]
            data, region_of, owner_of = snapshot(obj), region_fn(obj), owner_fn(obj)
        rows.append({"kind": kind, "entity_id": key, "op": op, "data": data,
                     "region_code": region or region_of, "officer_id": officer or owner_of})
    return rows


@commit_queue.on_commit(order=5)  # before the custody log's lock (10): that work needs no lock
def _snapshot(session: Session, _services: Services) -> None:
    for row in _rows(session):
        commit_queue.enqueue(session, SNAPSHOTS, row)


@commit_queue.on_commit(order=20)
def _publish(session: Session, _services: Services) -> None:
    rows = commit_queue.take(session, SNAPSHOTS) + _rows(session)
    if not rows:
        return
    _sequence_lock(session)
    insert_rows(session, Change, rows)


def _sequence_lock(session: Session) -> None:
    """Held from here to the commit: feed ids become visible in the order they were handed out."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": FEED_LOCK_KEY})


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"p": position}).encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw)["p"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise Gone("cursor not recognised; pull again from the beginning") from None
    if type(position) is not int or position < 0:
        raise Gone("cursor not recognised; pull again from the beginning")
    return position


def pull(session: Session, officer: Officer, cursor: str | None, limit: int = 100) -> dict[str, Any]:
    """One page of changes after `cursor`, within the officer's jurisdiction plus their own.

    Each source is read by keyset on an (audience, id) index, so a page costs
    the same however long the feed is.
    """
    after = decode_cursor(cursor) if cursor else 0
    if after:
        newest = session.scalar(select(func.max(Change.id))) or 0
        if after > newest:
            raise Gone("cursor is ahead of this server's feed; pull again from the beginning")
    base = select(Change).where(Change.id > after).order_by(Change.id).limit(limit + 1)
    regions = regions_of(officer)
    if regions is None:
        rows = list(session.scalars(base))
    else:
        # Both audiences in ONE statement, so in one snapshot. Two statements read two snapshots (PostgreSQL's
        # READ COMMITTED takes one per statement): a jurisdiction change committed between them would be missed
        # by the first while the second returned a later own change, and the cursor would pass it for good.
        keys = [select(Change.id).where(Change.id > after, audience).order_by(Change.id).limit(limit + 1).subquery()
                for audience in (Change.region_code.in_(sorted(regions)), Change.officer_id == officer.id)]
        ids = union_all(*(select(k.c.id) for k in keys))
        rows = list(session.scalars(select(Change).where(Change.id.in_(ids)).order_by(Change.id).limit(limit + 1)))
    has_more = len(rows) > limit
    rows = rows[:limit]
    position = rows[-1].id if rows else after
    return {
        "changes": [{"kind": r.kind, "id": r.entity_id, "op": r.op, "data": r.data} for r in rows],
        "cursor": encode_cursor(position),
        "has_more": has_more,
    }
