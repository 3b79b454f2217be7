"""The verdicts of the whole-system audit (`fieldcase verify --record`, the `system_audit` job): one row a run.

Kept so the console can show when the system was last checked and what was wrong, without running the audit in a
request. A run's problems are capped (`problems` holds the first ones; `problem_total` counts them all); they name
objects by id and never carry a row's values.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from backend.core.models.base import Base, UTCDateTime
from backend.core.models.sync import BigId


class AuditRun(Base):
    __tablename__ = "audit_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ok: Mapped[bool] = mapped_column()
    trigger: Mapped[str] = mapped_column(String(16))  # "command" (fieldcase verify --record) or "job"
    sample: Mapped[int | None] = mapped_column(Integer)  # files re-hashed at random; None: every file
    counts: Mapped[dict[str, int]] = mapped_column(JSON)  # what was checked: leaves, heads, records, files, ...
    problem_counts: Mapped[dict[str, int]] = mapped_column(JSON)  # per check
    problem_total: Mapped[int] = mapped_column(Integer)
    problems: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # the first ones: {check, kind, object, message}
