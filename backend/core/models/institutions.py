"""The registry of off-campus tutoring institutions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from backend.core.models.base import Base, UTCDateTime, utcnow

CATEGORIES = ("academic", "sports", "arts", "science", "other")
LICENCE_STATUSES = ("licensed", "unlicensed", "suspended", "revoked", "expired", "unknown")
RISK_LEVELS = ("low", "medium", "high")


class Institution(Base):
    __tablename__ = "institutions"
    __table_args__ = (Index("ix_institutions_region_code_name_norm", "region_code", "name_norm"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    credit_code: Mapped[str | None] = mapped_column(String(18), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    name_norm: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(400), default="")
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    licence_number: Mapped[str | None] = mapped_column(String(64))
    licence_status: Mapped[str] = mapped_column(String(16), default="unknown")
    category: Mapped[str] = mapped_column(String(16), default="other")
    risk_level: Mapped[str] = mapped_column(String(8), default="medium")
    provisional: Mapped[bool] = mapped_column(Boolean, default=False)
    # "region:normalised name" for a provisional institution known only by name; unique, so
    # two phones naming the same unknown centre at once still give one institution.
    provisional_key: Mapped[str | None] = mapped_column(String(220), unique=True)
    # Held for one case whose case.open named an institution the server could not match (an unknown id or region,
    # a credit code failing its check): what the phone said, matched by no later name or code, until corrected.
    unmatched: Mapped[bool] = mapped_column(Boolean, default=False)
    complaint_count: Mapped[int] = mapped_column(Integer, default=0)
    violation_count: Mapped[int] = mapped_column(Integer, default=0)
    # From the integrity record (see backend/casework/credit.py); sets risk_level, which weighs draws.
    risk_score: Mapped[int] = mapped_column(Integer, default=0)
    risk_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
