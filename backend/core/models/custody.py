"""The custody log (PROTOCOL §8): events as Merkle leaves, the stored subtrees, and signed tree heads."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.core.models.base import Base, UTCDateTime, utcnow
from backend.core.models.sync import BigId


class CustodyEvent(Base):
    """One leaf. `leaf` is the exact canonical JSON text that was hashed; nothing else is authoritative."""

    __tablename__ = "custody_events"
    __table_args__ = (Index("ix_custody_events_evidence_id_leaf_index", "evidence_id", "leaf_index"),
                      Index("ix_custody_events_device_id_leaf_index", "device_id", "leaf_index"),
                      Index("ix_custody_events_case_id_leaf_index", "case_id", "leaf_index"))

    leaf_index: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    evidence_id: Mapped[str | None] = mapped_column(String(36))
    device_id: Mapped[str | None] = mapped_column(String(40))  # the device whose chain head a device_head leaf names
    case_id: Mapped[str | None] = mapped_column(String(40))  # the case whose facts a case leaf binds
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


class SmMerkleNode(Base):
    """A node of the custody log's SM tree (FIELDCASE_CUSTODY_SUITES=intl,sm): the same leaves as `merkle_nodes`,
    hashed with SM3 (media.custody.merkle.SM3_TREE). A table of its own, so that the SHA-256 tree's rows, keys and
    queries are exactly what they were, and appending to one tree never reads the other's index."""

    __tablename__ = "sm_merkle_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class SmTreeHead(Base):
    """A signed head of the SM tree: `root_hash` is its SM3 root, `signature` SM2 (base64url of raw r ‖ s) over the
    same canonical JSON as a `tree_heads` head, `key_id` the SM2 key's (media.custody.keys.SmSigner)."""

    __tablename__ = "sm_tree_heads"

    tree_size: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    root_hash: Mapped[str] = mapped_column(String(64))
    timestamp: Mapped[str] = mapped_column(String(40))
    signature: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str] = mapped_column(String(64))


class HeadTimestamp(Base):
    """An RFC 3161 timestamp token of a signed tree head (media.custody.timestamps), got after the head committed.

    `token` (the DER TimeStampToken) is authoritative: the other columns are read from it when it is received,
    for listing, and `fieldcase custody verify` checks them against it.
    """

    __tablename__ = "head_timestamps"

    tree_size: Mapped[int] = mapped_column(BigId, ForeignKey("tree_heads.tree_size"), primary_key=True,
                                           autoincrement=False)
    token: Mapped[bytes] = mapped_column(LargeBinary)
    gen_time: Mapped[datetime] = mapped_column(UTCDateTime)  # the TSA's time (genTime)
    tsa: Mapped[str] = mapped_column(String(1000))  # the signing certificate's subject (RFC 4514)
    serial: Mapped[str] = mapped_column(String(64))  # the token's serial number, decimal (up to 160 bits)
    tsa_url: Mapped[str] = mapped_column(String(1000))  # where it was asked (FIELDCASE_TSA_URL then)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SmHeadTimestamp(Base):
    """The RFC 3161 token of an SM tree head, as `head_timestamps` keeps the intl head's: its message imprint is SM3
    of the SM head's signed bytes (media.custody.timestamps.SM3_IMPRINT). A table of its own beside `sm_tree_heads`,
    as the SM tree's nodes and heads are beside the intl ones: the intl rows and queries stay exactly as they were."""

    __tablename__ = "sm_head_timestamps"

    tree_size: Mapped[int] = mapped_column(BigId, ForeignKey("sm_tree_heads.tree_size"), primary_key=True,
                                           autoincrement=False)
    token: Mapped[bytes] = mapped_column(LargeBinary)
    gen_time: Mapped[datetime] = mapped_column(UTCDateTime)  # the TSA's time (genTime)
    tsa: Mapped[str] = mapped_column(String(1000))  # the signing certificate's subject (RFC 4514)
    serial: Mapped[str] = mapped_column(String(64))  # the token's serial number, decimal (up to 160 bits)
    tsa_url: Mapped[str] = mapped_column(String(1000))  # where it was asked (FIELDCASE_TSA_URL then)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WitnessCosignature(Base):
    """A witness's cosignature (c2sp.org/tlog-cosignature, cosignature/v1) of a checkpoint this log issued.

    Verified when received, against a configured witness key, over exactly the checkpoint body of the head at
    `tree_size` with `origin`: the note line is `— witness base64(key_hash || timestamp || signature)`.
    """

    __tablename__ = "witness_cosignatures"
    __table_args__ = (UniqueConstraint("origin", "tree_size", "key_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    origin: Mapped[str] = mapped_column(String(255))
    tree_size: Mapped[int] = mapped_column(BigId, ForeignKey("tree_heads.tree_size"))
    witness: Mapped[str] = mapped_column(String(255))
    key_hash: Mapped[str] = mapped_column(String(8))  # hex of the 4-byte key ID
    timestamp: Mapped[int] = mapped_column(BigInteger)  # POSIX seconds, as the witness signed it
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))  # the Ed25519 signature alone
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CustodyHolder(Base):
    """Who holds an evidence item now; transfers wait for the receiver's acknowledgement."""

    __tablename__ = "custody_holders"

    evidence_id: Mapped[str] = mapped_column(ForeignKey("evidence.id"), primary_key=True)
    holder_id: Mapped[str] = mapped_column(String(40), index=True)
    pending_to: Mapped[str | None] = mapped_column(String(40), index=True)
    pending_reason: Mapped[str | None] = mapped_column(String(500))
    since: Mapped[datetime] = mapped_column(UTCDateTime)
