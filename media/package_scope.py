"""What a package holds: the whole case, or chosen evidence items with just the records and proofs they need.

A court often asks for one clip. A package of chosen items carries each item, its signed declaration, the
inspection it belongs to (its signed start and end, and any recorded interruption, which its coverage verdict
rests on) and the findings that cite it; nothing else of the case. Both kinds are built, sealed and verified
the same way (`media.package`, `media.package_verify`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.errors import Invalid
from backend.core.models import Evidence, Finding, Inspection, LedgerRecord, RecordingInterruption

_IN_CHUNK = 500


@dataclass
class Scope:
    inspections: list[Inspection]
    evidence: list[Evidence]
    findings: list[Finding]
    records: list[LedgerRecord]
    items: list[str] | None  # the chosen evidence ids; None: the whole case


def chunked(values: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start:start + _IN_CHUNK]


def rows_in(session: Session, model: Any, column: Any, values: list[str], order: Any) -> list[Any]:
    rows = [r for chunk in chunked(values) for r in session.scalars(select(model).where(column.in_(chunk)))]
    return sorted(rows, key=lambda r: (getattr(r, order.key), r.id))


def case_scope(session: Session, case_id: str, items: list[str] | None = None) -> Scope:
    """The whole case, or (`items`) those of its evidence items and what they need; Invalid names an id that is
    not an item of the case."""
    inspections = list(session.scalars(select(Inspection).where(Inspection.case_id == case_id)
                                       .order_by(Inspection.started_at, Inspection.id)))
    evidence = case_evidence(session, case_id, [i.id for i in inspections])
    if items is None:
        ids = [i.id for i in inspections]
        findings = rows_in(session, Finding, Finding.inspection_id, ids, Finding.recorded_at)
        return Scope(inspections, evidence, findings, case_records(session, case_id, ids, findings, evidence), None)
    wanted = list(dict.fromkeys(items))
    known = {e.id for e in evidence}
    unknown = [i for i in wanted if i not in known]
    if unknown or not wanted:
        raise Invalid("evidence must name items of this case" + (f": not {', '.join(unknown)}" if unknown else ""),
                      errors={"evidence": [f"not an item of this case: {i}" for i in unknown] or ["empty"]})
    evidence = [e for e in evidence if e.id in set(wanted)]
    needed = {e.inspection_id for e in evidence if e.inspection_id}
    inspections = [i for i in inspections if i.id in needed]
    ids = [i.id for i in inspections]
    findings = [f for f in rows_in(session, Finding, Finding.inspection_id, ids, Finding.recorded_at)
                if set(f.evidence or []) & set(wanted)]
    return Scope(inspections, evidence, findings, item_records(session, ids, findings, evidence), wanted)


def item_records(session: Session, inspection_ids: list[str], findings: list[Finding],
                 evidence: list[Evidence]) -> list[LedgerRecord]:
    """The records chosen items need: their declarations, the findings citing them, and their inspections'
    start, end and recorded interruptions."""
    ops = [f.op for f in findings] + [e.op for e in evidence]
    found: dict[int, LedgerRecord] = {}
    for chunk in chunked(inspection_ids):
        ops += list(session.scalars(select(RecordingInterruption.op)
                                    .where(RecordingInterruption.inspection_id.in_(chunk))))
        for r in session.scalars(select(LedgerRecord).where(
                LedgerRecord.refs["inspection_id"].as_string().in_(chunk),
                LedgerRecord.type.in_(("inspection.start", "inspection.end")))):
            found[r.id] = r
    for chunk in chunked(sorted(set(ops))):
        for r in session.scalars(select(LedgerRecord).where(LedgerRecord.op.in_(chunk))):
            found[r.id] = r
    for r in corrections_of(session, [f.op for f in findings]):
        found[r.id] = r
    return sorted(found.values(), key=lambda r: (r.device_id, r.seq))


def corrections_of(session: Session, ops: list[str]) -> list[LedgerRecord]:
    """The applied record.correct records of these records (a corrected finding is held against the newest)."""
    return [r for chunk in chunked(sorted(set(ops))) for r in session.scalars(select(LedgerRecord).where(
        LedgerRecord.type == "record.correct", LedgerRecord.status == "applied",
        LedgerRecord.refs["corrects"].as_string().in_(chunk)))]


def case_evidence(session: Session, case_id: str, inspection_ids: list[str]) -> list[Evidence]:
    """Items of the case: declared with it, or with one of its inspections (even before the case was known).

    Public so that the console's case page (`backend.web.console.present.ledger_rows`)
    shows exactly the items a package of the case would hold, by this one rule.
    """
    found = {e.id: e for e in session.scalars(select(Evidence).where(Evidence.case_id == case_id))}
    for chunk in chunked(inspection_ids):
        found.update({e.id: e for e in session.scalars(select(Evidence).where(Evidence.inspection_id.in_(chunk)))})
    return sorted(found.values(), key=lambda e: (e.captured_at, e.id))


def case_records(session: Session, case_id: str, inspection_ids: list[str], findings: list[Finding],
                 evidence: list[Evidence]) -> list[LedgerRecord]:
    """Ledger rows whose refs name the case (its applied record.correct records included) or one of its
    inspections, and those that made its findings/items.

    Public so that the console's ledger of a case (`backend.web.console.present.ledger_rows`)
    lists exactly the records a package of the case would prove, by this one rule.
    """
    found: dict[int, LedgerRecord] = {}
    for r in session.scalars(select(LedgerRecord).where(LedgerRecord.refs["case_id"].as_string() == case_id)):
        found[r.id] = r
    ops = [f.op for f in findings] + [e.op for e in evidence]
    for chunk in chunked(inspection_ids):
        ops += list(session.scalars(select(RecordingInterruption.op)
                                    .where(RecordingInterruption.inspection_id.in_(chunk))))
        for r in session.scalars(select(LedgerRecord).where(
                LedgerRecord.refs["inspection_id"].as_string().in_(chunk))):
            found[r.id] = r
    for chunk in chunked(sorted(set(ops))):
        for r in session.scalars(select(LedgerRecord).where(LedgerRecord.op.in_(chunk))):
            found[r.id] = r
    return sorted(found.values(), key=lambda r: (r.device_id, r.seq))
