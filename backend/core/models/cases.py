"""Projections of the ledger: cases and their aliases, inspections, findings, evidence, clues, conflicts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from backend.core.models.base import Base, UTCDateTime, utcnow
from backend.core.models.sync import BigId

OPEN_STATUSES = ("clue", "registered", "investigating", "legal_review", "notified", "decided", "executed")
CLOSED_STATUSES = ("closed", "not_penalised", "transferred", "dismissed")
CASE_STATUSES = OPEN_STATUSES + CLOSED_STATUSES


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    institution_id: Mapped[str] = mapped_column(ForeignKey("institutions.id"), index=True)
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    department_code: Mapped[str] = mapped_column(ForeignKey("departments.code"))
    status: Mapped[str] = mapped_column(String(20), default="registered")
    # "institution:department" while the case is open, NULL once closed: the unique
    # constraint is what keeps racing phones from opening two cases.
    open_key: Mapped[str | None] = mapped_column(String(100), unique=True)
    summary: Mapped[str] = mapped_column(Text, default="")
    version: Mapped[int] = mapped_column(Integer, default=1)
    field_versions: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CaseAlias(Base):
    """A phone's `client_case_id` and the case it resolved to (its own, or one it was merged into)."""

    __tablename__ = "case_aliases"

    client_case_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    device_id: Mapped[str] = mapped_column(String(40))
    merged: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Inspection(Base):
    __tablename__ = "inspections"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    region_code: Mapped[str] = mapped_column(String(6), index=True)
    device_id: Mapped[str] = mapped_column(String(40))
    started_by: Mapped[str] = mapped_column(String(40))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    officers: Mapped[list[str]] = mapped_column(JSON, default=list)
    location: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    task_id: Mapped[str | None] = mapped_column(String(40))
    outcome: Mapped[str | None] = mapped_column(String(32))
    notes: Mapped[str | None] = mapped_column(Text)
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)


class Finding(Base):
    """Kept even when its inspection is not (yet) known: another officer's phone may deliver it later.

    Kept too when its category is not in the catalogue: the category stays as the phone sent it (no foreign key),
    and the finding needs correction (`backend.casework.corrections`) rather than being lost.
    """

    __tablename__ = "findings"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    inspection_id: Mapped[str] = mapped_column(String(36), index=True)
    category: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text)
    evidence: Mapped[list[str]] = mapped_column(JSON, default=list)
    recorded_by: Mapped[str] = mapped_column(String(40))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    op: Mapped[str] = mapped_column(String(36))


class Evidence(Base):
    __tablename__ = "evidence"
    __table_args__ = (Index("ix_evidence_camera", "camera_serial", "clip_index"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    inspection_id: Mapped[str | None] = mapped_column(String(36), index=True)
    case_id: Mapped[str | None] = mapped_column(ForeignKey("cases.id"), index=True)
    region_code: Mapped[str] = mapped_column(String(6), index=True)
    device_id: Mapped[str] = mapped_column(String(40))
    officer_id: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(16))
    media_type: Mapped[str] = mapped_column(String(100))
    # The file's digests (docs/protocol.md "Evidence upload, as built"): as declared (either or both; NULL when not
    # declared), and both once the bytes are verified, when the server has computed them.
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    sm3: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigId)
    captured_at: Mapped[datetime] = mapped_column(UTCDateTime)
    location: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    clip: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    camera_serial: Mapped[str | None] = mapped_column(String(64))
    clip_index: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="declared")
    op: Mapped[str] = mapped_column(String(36))
    declared_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    object_key: Mapped[str | None] = mapped_column(String(200))
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    media_info: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    thumbnail_key: Mapped[str | None] = mapped_column(String(200))
    flags: Mapped[list[str] | None] = mapped_column(JSON)
    # Set when retention removed the file; the row, its ledger record and its hash stay for good.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_by: Mapped[str | None] = mapped_column(String(40))


class Upload(Base):
    """One attempt to deliver an evidence file; a mismatch closes it and a fresh one may follow."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    evidence_id: Mapped[str] = mapped_column(ForeignKey("evidence.id"), index=True)
    officer_id: Mapped[str] = mapped_column(String(40))
    store: Mapped[str] = mapped_column(String(16))
    staging_key: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(16))
    multipart_id: Mapped[str | None] = mapped_column(String(200))
    part_size: Mapped[int | None] = mapped_column(BigId)
    # "open" while bytes may arrive, then "verified", "mismatch" or "failed".
    status: Mapped[str] = mapped_column(String(16), default="open")
    # Set while an upload is open, NULL after: at most one open upload per evidence item.
    open_key: Mapped[str | None] = mapped_column(String(36), unique=True)
    received_sha256: Mapped[str | None] = mapped_column(String(64))
    received_sm3: Mapped[str | None] = mapped_column(String(64))
    received_size: Mapped[int | None] = mapped_column(BigId)
    mismatch_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Clue(Base):
    __tablename__ = "clues"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    source: Mapped[str] = mapped_column(String(40))
    institution_id: Mapped[str] = mapped_column(ForeignKey("institutions.id"), index=True)
    region_code: Mapped[str] = mapped_column(String(6), index=True)
    description: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="new")
    reported_by: Mapped[str] = mapped_column(String(40))
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime)
    op: Mapped[str | None] = mapped_column(String(36))
    # Triage: the violation category and the department it routes to.
    category: Mapped[str | None] = mapped_column(ForeignKey("violation_categories.code"))
    department_code: Mapped[str | None] = mapped_column(ForeignKey("departments.code"))
    # Given to the complainant: what the public status page is looked up by.
    tracking_code: Mapped[str | None] = mapped_column(String(16), unique=True)
    duplicate_of: Mapped[str | None] = mapped_column(String(36), index=True)
    case_id: Mapped[str | None] = mapped_column(ForeignKey("cases.id"), index=True)
    attachments: Mapped[list[Any] | None] = mapped_column(JSON)
    # Personal data of the complainant (name, phone, email, address): never on a public page, and never stored in
    # clear. Sealed with SM4-GCM under a data key, bound to this row (backend.casework.clues.COMPLAINANT); the phone's
    # HMAC-SM3 blind index finds a caller's clues by exact match (backend.core.crypto.sealed_fields).
    complainant_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    complainant_phone_index: Mapped[str | None] = mapped_column(String(64), index=True)
    outcome: Mapped[str | None] = mapped_column(Text)
    closed_reason: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RecordingInterruption(Base):
    __tablename__ = "recording_interruptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    inspection_id: Mapped[str] = mapped_column(String(36), index=True)
    camera_serial: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(500))
    op: Mapped[str] = mapped_column(String(36), unique=True)


class CaseConflict(Base):
    """A field a phone changed offline while the server's value moved on; both values are kept."""

    __tablename__ = "case_conflicts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    field: Mapped[str] = mapped_column(String(40))
    base_version: Mapped[int] = mapped_column(Integer)
    base_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    server_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    phone_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    op: Mapped[str] = mapped_column(String(36))
    officer_id: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16), default="open")
    resolved_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    resolution_reason: Mapped[str | None] = mapped_column(String(500))
    resolved_by: Mapped[str | None] = mapped_column(String(40))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CaseHistory(Base):
    """Every value a case field has had, with the version it was set at: what conflicts compare against."""

    __tablename__ = "case_history"
    __table_args__ = (Index("ix_case_history_case_id_field_version", "case_id", "field", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"))
    field: Mapped[str] = mapped_column(String(40))
    version: Mapped[int] = mapped_column(Integer)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    changed_by: Mapped[str] = mapped_column(String(40))
    op: Mapped[str | None] = mapped_column(String(36))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
