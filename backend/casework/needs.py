"""What in a case still needs correction, and the corrections made: read for its view, never stored as a flag.

A record applied with a slip (a case.open whose institution could not be matched, a finding whose category the
catalogue lacks) is flagged `needs_correction` on its ledger row, whose refs hold what and why
(`{"code", "detail", "field"}`); each correction is a row of `corrections` (`backend.casework.corrections`). What
still needs correction is the first minus the second, computed when asked, so it cannot drift from either: the
flag clears by itself once every flagged field of the case or finding has been corrected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from backend.casework.audit.scan import chunks, has_flag
from backend.casework.corrections import NEEDS_CORRECTION as FLAG
from backend.casework.corrections import describe
from backend.core.models import Correction, LedgerRecord


def corrections_of(session: Session, case_id: str) -> list[dict[str, Any]]:
    """The case's corrections (of its institution and of its findings), oldest first."""
    return [describe(c) for c in session.scalars(select(Correction).where(Correction.case_id == case_id)
                                                 .order_by(Correction.id))]


def outstanding(session: Session, case_id: str, finding_ops: Sequence[str]) -> list[dict[str, Any]]:
    """What of the case (its own institution, and the findings made by `finding_ops`) still needs correction:
    `{"subject", "subject_id", "op", "code", "detail", "field"}`, oldest first."""
    wanted = [(LedgerRecord.type == "case.open") & (LedgerRecord.refs["case_id"].as_string() == case_id)]
    wanted += [LedgerRecord.op.in_(list(c)) for c in chunks(sorted(set(finding_ops)))]
    rows = session.execute(select(LedgerRecord.op, LedgerRecord.type, LedgerRecord.refs, LedgerRecord.flags)
                           .where(has_flag(LedgerRecord.flags, FLAG), or_(*wanted))
                           .order_by(LedgerRecord.at, LedgerRecord.id))
    corrected = {(c.subject, c.subject_id, name) for c in session.scalars(
        select(Correction).where(Correction.case_id == case_id)) for name in c.fields}
    out = []
    for op, rtype, refs, flags in rows:
        if FLAG not in (flags or []):
            continue
        subject = "case" if rtype == "case.open" else "finding"
        subject_id = (refs or {}).get("case_id" if subject == "case" else "finding_id")
        for need in (refs or {}).get(FLAG) or []:
            if (subject, subject_id, need.get("field")) not in corrected:
                out.append({"subject": subject, "subject_id": subject_id, "op": op, **need})
    return out
