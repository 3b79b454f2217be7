"""The enforcement plan's workflow around cases: joint work, transfers, random-inspection draws, discretion.

Clues themselves live with the other projections (models.cases.Clue); what is
here is decided at the desk, not recorded by phones.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from backend.core.models.base import Base, UTCDateTime, utcnow
from backend.core.models.sync import BigId

TRANSFER_TARGETS = ("department", "city", "judiciary")
TRANSFER_STATUSES = ("pending", "accepted", "refused")
TASK_STATUSES = ("assigned", "done", "cancelled")


class CaseDepartment(Base):
    """A department taking part in a case led by another (joint enforcement); its officers work on the case."""

    __tablename__ = "case_departments"

    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    department_code: Mapped[str] = mapped_column(ForeignKey("departments.code"), primary_key=True)
    added_by: Mapped[str] = mapped_column(String(40))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reason: Mapped[str] = mapped_column(Text, default="")


class Transfer(Base):
    """A clue or case handed to another department, the city level or the judiciary, and the answer."""

    __tablename__ = "transfers"
    __table_args__ = (Index("ix_transfers_subject_kind_subject_id", "subject_kind", "subject_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subject_kind: Mapped[str] = mapped_column(String(8))  # "clue" or "case"
    subject_id: Mapped[str] = mapped_column(String(40))
    region_code: Mapped[str] = mapped_column(String(6), index=True)
    from_department: Mapped[str] = mapped_column(String(20))
    to_kind: Mapped[str] = mapped_column(String(12))  # TRANSFER_TARGETS
    to_department: Mapped[str | None] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    requested_by: Mapped[str] = mapped_column(String(40))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(String(40))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision_reason: Mapped[str | None] = mapped_column(Text)
    # What was handed over (for the judiciary: the case, its evidence list and package id), kept as sent.
    sent: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Campaign(Base):
    """A special campaign: a date range (holidays, weekends, vacations) with focus categories."""

    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date] = mapped_column(Date)
    focus_categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Draw(Base):
    """A "double random" draw: everything needed to run it again and get the same institutions and teams."""

    __tablename__ = "draws"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    planned_date: Mapped[date] = mapped_column(Date)
    departments: Mapped[list[str]] = mapped_column(JSON)
    count: Mapped[int] = mapped_column(Integer)
    joint: Mapped[bool] = mapped_column(Boolean, default=False)
    seed: Mapped[str] = mapped_column(String(64))
    algorithm: Mapped[str] = mapped_column(String(40))
    campaign_id: Mapped[str | None] = mapped_column(ForeignKey("campaigns.id"), index=True)
    # The pools as they were at draw time (institution ids with weights, officer ids per department):
    # the seed and these make the draw reproducible by anyone.
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Task(Base):
    """One planned inspection (from a draw or a campaign) for a team; `inspection.start`'s task_id links it."""

    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    draw_id: Mapped[str | None] = mapped_column(ForeignKey("draws.id"), index=True)
    campaign_id: Mapped[str | None] = mapped_column(ForeignKey("campaigns.id"), index=True)
    institution_id: Mapped[str] = mapped_column(ForeignKey("institutions.id"), index=True)
    region_code: Mapped[str] = mapped_column(String(6), index=True)
    departments: Mapped[list[str]] = mapped_column(JSON)
    officers: Mapped[list[str]] = mapped_column(JSON)
    planned_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(10), default="assigned")
    inspection_id: Mapped[str | None] = mapped_column(String(36), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DiscretionBenchmark(Base):
    """A suggested penalty range (裁量基准) for a violation category in given circumstances; held as data."""

    __tablename__ = "discretion_benchmarks"
    __table_args__ = (Index("ix_discretion_benchmarks_category_code", "category_code"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    category_code: Mapped[str] = mapped_column(ForeignKey("violation_categories.code"))
    # None matches either way; the most specific matching row applies.
    first_offence: Mapped[bool | None] = mapped_column(Boolean)
    rectified_in_time: Mapped[bool | None] = mapped_column(Boolean)
    amount_min_yuan: Mapped[int | None] = mapped_column(BigId)
    amount_max_yuan: Mapped[int | None] = mapped_column(BigId)
    fine_min_yuan: Mapped[int] = mapped_column(BigId)
    fine_max_yuan: Mapped[int] = mapped_column(BigId)
    measures: Mapped[str] = mapped_column(Text, default="")
    basis: Mapped[str] = mapped_column(Text, default="")
