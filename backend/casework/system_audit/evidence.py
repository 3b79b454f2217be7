"""Every evidence item against its custody events, and its stored bytes re-hashed.

The item's row against its signed `evidence.capture` is `derived`'s (the records pass). Here, each item against
the custody log, whose leaves are signed into the tree: its `declared` leaf names the record (`op`,
`record_hash`), the device and the declared hash and size; a `verified` item has a `verified` leaf with that hash
and the object key it was stored under (its content address), a `mismatch` item a `mismatch` leaf, a `deleted`
item a `deleted` leaf; an item whose log says it was verified is not `declared` again; a verified item's SM3 is
the one its `verified` or `digest_added` leaf recorded (`_sm3_logged`). Then the stored file of
each verified item is read back and hashed, streaming (`media.store.hash_stream`, constant memory), against the
declaration: all of them, or `sample` of them chosen at random (reservoir sampling over the stream, so choosing
costs no second pass and no list of every item). Identical bytes are stored once and hashed once.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.casework.system_audit.report import Problem
from backend.core.bulk import among
from backend.core.models import CustodyEvent, Evidence, LedgerRecord
from media.backfill import DIGEST_ADDED
from media.store import Store, StoreError, hash_stream, object_key, opened
from sync.records import EVIDENCE_DIGESTS

PAGE = 500
ACTIONS = ("declared", "verified", "mismatch", "deleted", DIGEST_ADDED)
STATUS_EVENT = {"verified": "verified", "mismatch": "mismatch", "deleted": "deleted"}


@dataclass(frozen=True)
class StoredFile:
    evidence_id: str
    key: str
    sha256: str
    size: int
    sm3: str | None = None  # None: verified before the server computed SM3


def _same_digests(leaf: dict[str, Any], row: Any) -> bool:
    """Whether a custody leaf's digests (those it names: `sha256`, `sm3`, or `sha256` when it names none) are the
    item's."""
    named = [name for name in EVIDENCE_DIGESTS if name in leaf] or ["sha256"]
    return all(leaf.get(name) == getattr(row, name) for name in named)


def _sm3_logged(row: Any, events: dict[str, list[dict[str, Any]]]) -> Iterator[Problem]:
    """A verified item's SM3 is the one its custody log bound when the server computed it: at its `verified` event,
    or at a `digest_added` one (the backfill). Checked on every item, not only those re-hashed: an SM3 the phone
    did not declare is tied to the file by these events alone, not by the officer's signature."""
    logged = {leaf["sm3"] for action in ("verified", DIGEST_ADDED) for leaf in events.get(action, [])
              if leaf.get("sha256") == row.sha256 and leaf.get("sm3")}
    if row.sm3 is not None and row.sm3 not in logged:
        yield _problem(row.id, "its SM3 is not the one its custody log recorded when the server computed it")
    elif row.sm3 is None and logged:
        yield _problem(row.id, "its custody log records an SM3 for it, but the item has none")


def _problem(ident: str, message: str) -> Problem:
    return Problem("evidence", "evidence", ident, message)


class EvidenceCheck:
    def __init__(self, session: Session, store: Store, sample: int | None, rng: random.Random) -> None:
        self.s, self.store, self.sample, self.rng = session, store, sample, rng
        self.reservoir: list[StoredFile] = []
        self.seen = 0  # verified items streamed past, for the reservoir
        self.hashed: dict[str, tuple[str, int, str | None] | None] = {}  # object key -> what its bytes hashed to

    def run(self, counts, progress) -> Iterator[Problem]:
        last = ""
        columns = (Evidence.id, Evidence.sha256, Evidence.sm3, Evidence.size, Evidence.kind, Evidence.device_id,
                   Evidence.op, Evidence.status, Evidence.object_key)
        while True:
            rows = list(self.s.execute(select(*columns).where(Evidence.id > last).order_by(Evidence.id).limit(PAGE)))
            if not rows:
                break
            events = self._events([r.id for r in rows])
            hashes = dict(self.s.execute(select(LedgerRecord.op, LedgerRecord.hash).where(
                among(self.s, LedgerRecord.op, [r.op for r in rows]))).all())
            for row in rows:
                counts["evidence"] += 1
                yield from self._custody(row, events.get(row.id, {}), hashes.get(row.op))
                if row.status == "verified":
                    yield from self._file(StoredFile(row.id, row.object_key or "", row.sha256, row.size, row.sm3),
                                          counts)
            progress.advance("evidence", len(rows))
            last = rows[-1].id
        for item in self.reservoir:
            yield from self._rehash(item, counts)

    def _events(self, ids: list[str]) -> dict[str, dict[str, list[dict[str, Any]]]]:
        out: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
        for evidence_id, action, leaf in self.s.execute(
                select(CustodyEvent.evidence_id, CustodyEvent.action, CustodyEvent.leaf).where(
                    among(self.s, CustodyEvent.evidence_id, ids), CustodyEvent.action.in_(ACTIONS))
                .order_by(CustodyEvent.leaf_index)):
            try:
                out[evidence_id][action].append(json.loads(leaf))
            except ValueError:
                continue  # the tree check names a leaf that is not JSON
        return out

    def _custody(self, row: Any, events: dict[str, list[dict[str, Any]]], record_hash: str | None
                 ) -> Iterator[Problem]:
        declared = events.get("declared", [])
        if len(declared) != 1:
            yield _problem(row.id, "its custody log has no declared event" if not declared
                           else "its custody log declares it more than once")
        for leaf in declared[:1]:
            # The digests the phone declared (sha256, sm3 or both): the row keeps them, and the other once verified.
            said = (leaf.get("op"), leaf.get("device"), leaf.get("size"), leaf.get("kind"))
            if said != (row.op, row.device_id, row.size, row.kind) or not _same_digests(leaf, row):
                yield _problem(row.id, "its declared hash, size, kind, device or record differs from its declared "
                               "custody event")
            if record_hash is not None and leaf.get("record_hash") != record_hash:
                yield _problem(row.id, "its declared custody event names another record than the evidence.capture "
                               "in the ledger")
        wanted = STATUS_EVENT.get(row.status)
        if wanted is None and row.status != "declared":
            yield _problem(row.id, "its status is not one an evidence item can have")
        elif wanted is not None and not events.get(wanted):
            yield _problem(row.id, f"it is {row.status}, but its custody log has no {wanted} event")
        elif row.status == "declared" and events.get("verified"):
            yield _problem(row.id, "its custody log shows it verified, but it is listed as only declared")
        if row.status == "verified":
            good = [leaf for leaf in events.get("verified", [])
                    if leaf.get("sha256") == row.sha256 and leaf.get("object_key") == row.object_key]
            if not good:
                yield _problem(row.id, "no verified custody event names its hash and where it is stored")
            if row.object_key != object_key(row.sha256):
                yield _problem(row.id, "it is not stored under the content address of its declared hash")
            yield from _sm3_logged(row, events)
        if row.status == "deleted" and not any(_same_digests(leaf, row) for leaf in events.get("deleted", [])):
            yield _problem(row.id, "no deleted custody event names its hash")

    def _file(self, item: StoredFile, counts) -> Iterator[Problem]:
        if self.sample is None:
            yield from self._rehash(item, counts)
            return
        self.seen += 1
        if len(self.reservoir) < self.sample:
            self.reservoir.append(item)
        else:
            slot = self.rng.randrange(self.seen)
            if slot < self.sample:
                self.reservoir[slot] = item

    def _rehash(self, item: StoredFile, counts) -> Iterator[Problem]:
        if item.key not in self.hashed:
            try:
                with opened(self.store, item.key) as stream:
                    digest = hash_stream(stream)
                self.hashed[item.key] = (digest.sha256, digest.size, digest.sm3)
                counts["files"] += 1
                counts["bytes"] += digest.size
            except (StoreError, OSError):
                self.hashed[item.key] = None
        found = self.hashed[item.key]
        if found is None:
            yield _problem(item.evidence_id, "its stored file is missing from the store")
        elif found[:2] != (item.sha256, item.size):
            yield _problem(item.evidence_id, "its stored file does not hash to its declared SHA-256 and size: the "
                           "bytes were altered")
        elif item.sm3 is not None and found[2] != item.sm3:
            yield _problem(item.evidence_id, "its stored file does not hash to its SM3: the bytes were altered")
