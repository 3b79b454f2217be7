"""The administrative-penalty procedure: every status change of a case, with who, why and what was decided."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from backend.core.models.base import Base, UTCDateTime, utcnow
from backend.core.models.sync import BigId


class CaseTransition(Base):
    """One step of `backend.casework.lifecycle`'s state machine; append-only."""

    __tablename__ = "case_transitions"
    __table_args__ = (Index("ix_case_transitions_case_id_id", "case_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"))
    region_code: Mapped[str] = mapped_column(String(6))
    from_status: Mapped[str] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reason: Mapped[str] = mapped_column(Text)
    # For `decided`: {"fine_yuan"?, "licence_revocation"?, "ordered_closure"?} and whether it counted as major.
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # For `transferred`: a department code, "city" or "judiciary".
    transfer_to: Mapped[str | None] = mapped_column(String(16))
    # True on the legal reviewer's approval (legal_review -> notified).
    legal_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    # For `closed` by a reviewer despite an incomplete file: the reason and what was missing then.
    override_reason: Mapped[str | None] = mapped_column(Text)
    missing: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    case_version: Mapped[int] = mapped_column(Integer)
