"""The change feed phones pull (PROTOCOL §5)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from backend.core.models.base import Base, UTCDateTime, utcnow
from backend.core.models.sync import BigId


class Change(Base):
    """One upsert or delete of an entity. Ids are handed out in commit order (see sync.feed)."""

    __tablename__ = "changes"
    __table_args__ = (
        Index("ix_changes_region_code_id", "region_code", "id"),
        Index("ix_changes_officer_id_id", "officer_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(20))
    entity_id: Mapped[str] = mapped_column(String(64))
    op: Mapped[str] = mapped_column(String(8))
    region_code: Mapped[str | None] = mapped_column(String(6))
    officer_id: Mapped[str | None] = mapped_column(String(40))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
