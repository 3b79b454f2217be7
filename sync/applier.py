"""The contract between the protocol and the casework: what push hands an authentic, chained record to.

Push knows how to verify a record, place it in its device's chain and ledger
it; what a record *means* (a case opened, an inspection started, a finding
recorded) belongs to the casework layer above. The composition root gives
push an `Applier`, so this layer never imports the one above it, and a
record's walk reads route → push → applier → casework → custody log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from backend.core.models import Officer
from sync.lookup import Lookup

Content = tuple[datetime, str, str, dict[str, Any]]  # a valid body: (at, by, type, body), see sync.records


@dataclass
class Applied:
    """What applying a record gave: its ledger status, the ids it names, and procedure flags (never refusals)."""

    status: str = "applied"
    refs: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)


@dataclass
class RecordContext:
    session: Session
    lookup: Lookup
    officer: Officer
    device_id: str
    op: str
    at: datetime
    received_at: datetime
    body: dict[str, Any]
    record_hash: str = ""


class Applier(Protocol):
    """Applies records to the projections. Each method may raise `sync.records.ContentError` only from `apply`."""

    savepoint_types: frozenset[str]  # record types whose application can race, so each runs in a savepoint

    def lock_creations(self, session: Session, lookup: Lookup, officer: Officer, contents: list[Content]) -> None:
        """Before anything is written: lock, in one order, what applying these records may create."""

    def prefetch(self, lookup: Lookup, officer: Officer, contents: list[Content]) -> None:
        """Fetch, table by table, every row these records refer to (one query per table, not per record)."""

    def apply(self, ctx: RecordContext, rtype: str) -> Applied:
        """Apply one record, or raise ContentError having changed nothing (it is then ledgered `invalid`)."""

    def device_advanced(self, session: Session, actor: Officer, device_id: str, seq: int, record_hash: str,
                        at: datetime) -> None:
        """A push (or a reviewer's gap release) moved the device's chain to end at `seq`, the record `record_hash`:
        the custody log witnesses it, so a chain later cut short, or a ledger row deleted, is caught offline."""
