"""Who saw which personal data in clear, and why: the log of unmaskings (COMPLIANCE §3, PIPL)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from backend.core.models.base import Base, UTCDateTime
from backend.core.models.sync import BigId

MAX_PURPOSE = 500


class ComplainantUnmasking(Base):
    """One unmasking of a clue's complainant: the officer, the clue, the fields shown in clear, the stated purpose
    and the time. Appended, never changed or deleted: an answer shows the complainant masked, so these rows are the
    whole record of who viewed which of their data.

    `region_code` is the clue's at the time, so the log is read within jurisdiction like the clue itself; no
    foreign key, so the record outlives whatever later happens to the clue.
    """

    __tablename__ = "complainant_unmaskings"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    clue_id: Mapped[str] = mapped_column(String(36), index=True)
    region_code: Mapped[str] = mapped_column(String(6), index=True)
    fields: Mapped[list[str]] = mapped_column(JSON)
    purpose: Mapped[str] = mapped_column(String(MAX_PURPOSE))
    viewed_by: Mapped[str] = mapped_column(String(40))
    viewed_at: Mapped[datetime] = mapped_column(UTCDateTime)
