"""The custody log (PROTOCOL §8): events as Merkle leaves, the stored subtrees, and signed tree heads."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from backend.core.models.base import Base, UTCDateTime
from backend.core.models.sync import BigId


class CustodyEvent(Base):
    """One leaf. `leaf` is the exact canonical JSON text that was hashed; nothing else is authoritative."""

    __tablename__ = "custody_events"
    __table_args__ = (Index("ix_custody_events_evidence_id_leaf_index", "evidence_id", "leaf_index"),)

    leaf_index: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    evidence_id: Mapped[str | None] = mapped_column(String(36))
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    leaf: Mapped[str] = mapped_column(Text)


class MerkleNode(Base):
    """The hash of a complete, aligned subtree: (level, index) covers leaves [index·2^level, (index+1)·2^level)."""

    __tablename__ = "merkle_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class TreeHead(Base):
    __tablename__ = "tree_heads"

    tree_size: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    root_hash: Mapped[str] = mapped_column(String(64))
    timestamp: Mapped[str] = mapped_column(String(40))
    signature: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str] = mapped_column(String(64))


class CustodyHolder(Base):
    """Who holds an evidence item now; transfers wait for the receiver's acknowledgement."""

    __tablename__ = "custody_holders"

    evidence_id: Mapped[str] = mapped_column(ForeignKey("evidence.id"), primary_key=True)
    holder_id: Mapped[str] = mapped_column(String(40), index=True)
    pending_to: Mapped[str | None] = mapped_column(String(40), index=True)
    pending_reason: Mapped[str | None] = mapped_column(String(500))
    since: Mapped[datetime] = mapped_column(UTCDateTime)
