"""The records an officer signed over the phone's own checks, read back from the ledger for a case or inspection.

A phone that checks before it signs (PROTOCOL "Overrides") lets the officer sign anyway, and the record then
carries `override: {"codes", "reason"}`. Applying it flags the ledger row (and the inspection it belongs to)
`override`; what was overridden and why is only in the signed record, so it is read from there, never from a
copy that could say otherwise. Only flagged rows are read, so a case with many records costs one small query.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from backend.casework.audit.scan import chunks, has_flag
from backend.core.models import LedgerRecord
from backend.core.times import utc_iso
from sync.jws import canonical_b64decode


def _signed_override(jws: str) -> dict[str, Any] | None:
    """The `override` a ledgered record's payload carries (the ledger holds only records that parsed)."""
    body = json.loads(canonical_b64decode(jws.split(".")[1])).get("body") or {}
    override = body.get("override")
    return override if isinstance(override, dict) else None


def _describe(row: LedgerRecord) -> dict[str, Any] | None:
    override = _signed_override(row.jws)
    if override is None:
        return None
    return {"op": row.op, "type": row.type, "device_id": row.device_id, "seq": row.seq, "by": row.officer_id,
            "at": utc_iso(row.at), "codes": list(override.get("codes") or []), "reason": override.get("reason")}


def overrides(session: Session, *, case_id: str | None = None, inspection_ids: Sequence[str] = (),
              ops: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Overridden applied records naming the case or one of the inspections, or being one of `ops` (the findings
    of those inspections, which name neither), oldest first: `{"op", "type", "device_id", "seq", "by", "at",
    "codes", "reason"}`."""
    wanted = []
    if case_id is not None:
        wanted.append(LedgerRecord.refs["case_id"].as_string() == case_id)
    wanted += [LedgerRecord.refs["inspection_id"].as_string().in_(list(c)) for c in chunks(list(inspection_ids))]
    wanted += [LedgerRecord.op.in_(list(c)) for c in chunks(sorted(set(ops)))]
    if not wanted:
        return []
    rows = session.scalars(select(LedgerRecord).where(has_flag(LedgerRecord.flags, "override"), or_(*wanted))
                           .order_by(LedgerRecord.at, LedgerRecord.id))
    return [d for row in rows if "override" in (row.flags or []) and (d := _describe(row)) is not None]
