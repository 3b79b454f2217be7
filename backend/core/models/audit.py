"""Reviewers' marks on audit issues: append-only, so every review (and every change of mind) stays on record."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from backend.core.models.base import Base, UTCDateTime, utcnow
from backend.core.models.sync import BigId


class AuditReview(Base):
    """One reviewer's mark on one issue; the issue's latest mark is its review state."""

    __tablename__ = "audit_reviews"
    __table_args__ = (Index("ix_audit_reviews_issue_key_id", "issue_key", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    issue_key: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    region_code: Mapped[str] = mapped_column(String(6), index=True)
    reviewed_by: Mapped[str] = mapped_column(String(40))
    reviewed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    comment: Mapped[str] = mapped_column(Text)
