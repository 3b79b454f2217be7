"""The desk's step through the administrative-penalty procedure: a lifecycle move, and for `transferred` the
transfer it opens (which waits for the receiving side's answer, see casework.joint).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from backend.casework.joint import record_lifecycle_transfer
from backend.casework.lifecycle import move
from backend.core.jurisdiction import get_scoped
from backend.core.models import Case, Officer
from media.coverage import DEFAULT_TOLERANCE
from sync import feed


def transition(session: Session, actor: Officer, case_id: str, *, to: str, reason: str,
               decision: Mapping[str, Any] | None = None, transfer_to: str | None = None,
               override_reason: str | None = None, major_fine_threshold: int = 10_000,
               tolerance: timedelta = DEFAULT_TOLERANCE, now: datetime) -> dict[str, Any]:
    """Move the case one step; raises NotFound/Forbidden/Invalid/Conflict having changed nothing."""
    case = get_scoped(session, Case, case_id, actor, what="case")
    session.refresh(case, with_for_update=True)  # one transition at a time per case (PostgreSQL)
    row = move(session, actor, case, to=to, reason=reason, decision=decision, transfer_to=transfer_to,
               override_reason=override_reason, major_fine_threshold=major_fine_threshold, tolerance=tolerance,
               at=now)
    if to == "transferred":
        record_lifecycle_transfer(session, actor, case, row)
    return {"case": feed.case_data(case), "transition": feed.transition_data(row)}
