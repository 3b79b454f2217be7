"""The offline-sync tables: devices, the append-only ledger, deferred records, quarantine, chain gaps."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.core.models.base import Base, UTCDateTime, utcnow

ZERO_HASH = "0" * 64
BigId = BigInteger().with_variant(Integer, "sqlite")


class Device(Base):
    """An enrolled phone. `head_*` mirrors the ledger's last record and is the row pushes lock on.

    `suite` is what the device signs and chains in (`backend.core.crypto`): ``intl`` (an Ed25519 key, 43
    characters of base64url; records `EdDSA`/`Ed25519`, chained by SHA-256) or ``sm`` (an SM2 key, the 65-byte
    uncompressed point, 87 characters; records `SM2SM3`, chained by SM3). Devices enrolled before SM2 are ``intl``.
    """

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    officer_id: Mapped[str] = mapped_column(ForeignKey("officers.id"), index=True)
    public_key: Mapped[str] = mapped_column(String(88), unique=True)
    suite: Mapped[str] = mapped_column(String(8), default="intl", server_default="intl")
    label: Mapped[str] = mapped_column(String(120), default="")
    status: Mapped[str] = mapped_column(String(16), default="active")
    head_seq: Mapped[int] = mapped_column(Integer, default=0)
    head_hash: Mapped[str] = mapped_column(String(64), default=ZERO_HASH)
    quarantined_total: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(40))
    last_push_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LedgerRecord(Base):
    """Every authentic record in its device's chain, exactly as received. Never updated, never deleted."""

    __tablename__ = "ledger"
    __table_args__ = (UniqueConstraint("device_id", "seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    seq: Mapped[int] = mapped_column(Integer)
    op: Mapped[str] = mapped_column(String(36), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    prev: Mapped[str] = mapped_column(String(64))
    jws: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(40))
    officer_id: Mapped[str] = mapped_column(String(40), index=True)
    at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))
    code: Mapped[str | None] = mapped_column(String(40))
    detail: Mapped[str | None] = mapped_column(String(500))
    refs: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    flags: Mapped[list[str] | None] = mapped_column(JSON)


class DeferredRecord(Base):
    """Authentic records past a gap in their chain, held until the gap is filled or released."""

    __tablename__ = "deferred_records"
    __table_args__ = (UniqueConstraint("device_id", "seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    seq: Mapped[int] = mapped_column(Integer)
    op: Mapped[str] = mapped_column(String(36))
    hash: Mapped[str] = mapped_column(String(64), index=True)
    prev: Mapped[str] = mapped_column(String(64))
    jws: Mapped[str] = mapped_column(Text)
    officer_id: Mapped[str] = mapped_column(String(40))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class QuarantinedRecord(Base):
    """Rejected submissions, kept for forensics; bounded per device (or per officer when no device)."""

    __tablename__ = "quarantine"
    __table_args__ = (Index("ix_quarantine_device_id_id", "device_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    device_id: Mapped[str | None] = mapped_column(String(40))
    officer_id: Mapped[str] = mapped_column(String(40), index=True)
    seq: Mapped[int | None] = mapped_column(Integer)
    op: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    jws: Mapped[str] = mapped_column(Text)
    code: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str | None] = mapped_column(String(500))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ChainGap(Base):
    """Sequence numbers a device never delivered, released by a reviewer or by timeout."""

    __tablename__ = "chain_gaps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    first_seq: Mapped[int] = mapped_column(Integer)
    last_seq: Mapped[int] = mapped_column(Integer)
    released_by: Mapped[str | None] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(String(200))
    released_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
