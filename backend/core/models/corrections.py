"""Corrections of what a record said: a phone's signed `record.correct`, or a reviewer's at the desk.

The ledger is never edited: a record that named an unknown institution or a misspelt category stays as it was
signed. What changes is the row the record made (the case's institution, the finding's category), and each such
change is kept here, with its reason and who made it, so that the case's history shows it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from backend.core.models.base import Base, UTCDateTime, utcnow

CORRECTION_SUBJECTS = ("case", "finding")
CORRECTION_SOURCES = ("phone", "reviewer")


class Correction(Base):
    __tablename__ = "corrections"
    __table_args__ = (Index("ix_corrections_subject", "subject", "subject_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    subject: Mapped[str] = mapped_column(String(16))  # "case" (its institution) or "finding"
    subject_id: Mapped[str] = mapped_column(String(40))
    # The op of the record whose content is corrected (the case.open, the inspection.finding); NULL for a case
    # opened at the desk, which no record opened.
    corrects: Mapped[str | None] = mapped_column(String(36))
    fields: Mapped[dict[str, Any]] = mapped_column(JSON)  # the corrected fields as given
    # What the rows said before and say now: {column: [old, new]} (institution_id, region_code; category, ...).
    changed: Mapped[dict[str, Any]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(String(500))
    source: Mapped[str] = mapped_column(String(16))  # "phone" (a signed record.correct) or "reviewer"
    op: Mapped[str | None] = mapped_column(String(36), unique=True)  # the record.correct's op, for a phone's
    device_id: Mapped[str | None] = mapped_column(String(40))
    by: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(UTCDateTime)  # the record's signed time, or the reviewer's
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
