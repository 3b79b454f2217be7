"""SM3 for evidence verified before the server computed it (issue 23, item 3; `fieldcase evidence backfill-sm3`).

Since migration 0016 every verification hashes the bytes with SHA-256 and SM3 in one pass (`media.store.hash_stream`)
and keeps both. Items verified before it keep `sm3` NULL, so a deployment that turns to the national algorithms
could show no SM3 of its old evidence. Their stored objects are read once more, here, with the same one-pass hashing.

The SHA-256 the item was verified with is the proof that the stored bytes are the evidence: an SM3 is recorded only
for bytes that still hash to it (and to the item's size), with a `digest_added` custody event, so the SM3 is bound in
the signed log like the `verified` event's of a newer item and a package proves it. Bytes that hash otherwise are not
a backfill matter but a custody alarm (the file changed after it was verified): nothing is written for the item,
it is named, and `fieldcase verify` is where the alarm is kept (`--record`, the console's system audit page).

The work is offered in steps and the edge commits between them (`backend.core.uow`): `pending` reads a page of
candidates by id, `rehash` reads their objects with no transaction open (a file may take minutes), and
`record_batch` writes the page in one short transaction, re-reading each row under a lock: an item that changed
meanwhile (retention deleted it, another run filled it) is skipped, neither written nor reported as an alarm. What is
done is what a re-run no longer finds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.core.models import Evidence
from media.custody import log as custody
from media.store import Digest, Store, StoreError, hash_stream, opened
from sync import feed

DIGEST_ADDED = "digest_added"  # the custody action (docs/protocol.md, "Custody log, as built")
ACTOR = "fieldcase"  # the server computed the digest, as it makes thumbnails
ADDED, MISMATCH, MISSING, FAILED, SKIPPED = "added", "mismatch", "missing", "failed", "skipped"
ALARMS = (MISMATCH, MISSING, FAILED)


@dataclass(frozen=True)
class Candidate:
    """A verified item without SM3, as it stood when its page was read."""

    evidence_id: str
    object_key: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Hashed:
    """A candidate's stored object read back: its digest, or why there is none (`error`, a store's words)."""

    candidate: Candidate
    digest: Digest | None
    missing: bool = False
    error: str | None = None


@dataclass(frozen=True)
class Outcome:
    evidence_id: str
    result: str  # ADDED, MISMATCH, MISSING, FAILED or SKIPPED
    error: str | None = None


@dataclass
class BackfillReport:
    """What a run did, item by item only where it needs a person (`ALARMS`)."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys((ADDED, *ALARMS, SKIPPED), 0))
    alarms: list[Outcome] = field(default_factory=list)

    def add(self, outcomes: Iterable[Outcome]) -> None:
        for outcome in outcomes:
            self.counts[outcome.result] += 1
            if outcome.result in ALARMS:
                self.alarms.append(outcome)

    @property
    def examined(self) -> int:
        return sum(self.counts.values())

    @property
    def ok(self) -> bool:
        return not self.alarms


def _without_sm3():
    return (Evidence.status == "verified", Evidence.sm3.is_(None), Evidence.sha256.is_not(None),
            Evidence.object_key.is_not(None))


def pending(session: Session, after: str | None, limit: int) -> list[Candidate]:
    """The next `limit` verified items without SM3, in id order after `after`: a page by key, so memory stays flat
    and a run moves past an item it could not fill (a mismatch is still there the next time)."""
    stmt = select(Evidence.id, Evidence.object_key, Evidence.sha256, Evidence.size).where(*_without_sm3())
    if after is not None:
        stmt = stmt.where(Evidence.id > after)
    return [Candidate(*row) for row in session.execute(stmt.order_by(Evidence.id).limit(limit))]


def remaining(session: Session) -> int:
    """Verified items still without SM3 (those a run could not fill, and those a `--limit` left)."""
    return session.scalar(select(func.count()).select_from(Evidence).where(*_without_sm3())) or 0


def rehash(store: Store, candidates: Sequence[Candidate]) -> list[Hashed]:
    """Read each candidate's stored object once, SHA-256 and SM3 together, in constant memory. Items sharing an
    object (identical bytes, stored once) share its reading."""
    read: dict[str, Hashed] = {}
    out = []
    for candidate in candidates:
        done = read.get(candidate.object_key)
        if done is None:
            try:
                with opened(store, candidate.object_key) as stream:
                    done = Hashed(candidate, hash_stream(stream))
            except StoreError as exc:
                done = Hashed(candidate, None, missing=exc.code == "missing", error=exc.message)
            except OSError as exc:
                done = Hashed(candidate, None, error=f"the store could not be read ({exc.strerror or exc})")
            read[candidate.object_key] = done
        out.append(Hashed(candidate, done.digest, done.missing, done.error))
    return out


def record_batch(session: Session, hashed: Sequence[Hashed], *, now: datetime) -> list[Outcome]:
    """Record the SM3 of each item whose bytes still hash to the SHA-256 and size it was verified with, with its
    custody event and a feed change (the item's `sm3` is news for a phone holding it); judge the others. Each row is
    read again under a lock: one that is no longer verified without SM3, or no longer at that hash, is skipped."""
    ids = sorted(h.candidate.evidence_id for h in hashed)
    rows = {e.id: e for e in session.scalars(select(Evidence).where(Evidence.id.in_(ids)).order_by(Evidence.id)
                                             .with_for_update().execution_options(populate_existing=True))}
    outcomes = []
    for item in hashed:
        c, digest = item.candidate, item.digest
        row = rows.get(c.evidence_id)
        if (row is None or row.status != "verified" or row.sm3 is not None or row.sha256 != c.sha256
                or row.object_key != c.object_key):
            outcomes.append(Outcome(c.evidence_id, SKIPPED))
        elif digest is None:
            outcomes.append(Outcome(c.evidence_id, MISSING if item.missing else FAILED, item.error))
        elif (digest.sha256, digest.size) != (row.sha256, row.size):
            outcomes.append(Outcome(c.evidence_id, MISMATCH))
        else:
            row.sm3 = digest.sm3
            custody.record(session, DIGEST_ADDED, row.id, ACTOR, at=now, sha256=digest.sha256, sm3=digest.sm3,
                           size=digest.size, object_key=row.object_key)
            feed.emit(session, "evidence", row)
            outcomes.append(Outcome(c.evidence_id, ADDED))
    session.flush()
    return outcomes
