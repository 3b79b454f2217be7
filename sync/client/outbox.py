"""The phone's local outbox: one SQLite file with its records, evidence files and the pulled changes.

A phone works offline for days, and an officer's record must survive a power cut before any server has seen it:
every record is written to ``outbox.sqlite3`` (WAL, synchronous=FULL) in an IMMEDIATE transaction, which is also
what keeps seq numbers from being handed out twice. This module owns that file: its schema, its transactions,
the statuses a record goes through, the device's identity and last known head, and the views the app reads.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sync.client.signing import ZERO_HASH
from sync.client.wire import rfc3339

log = logging.getLogger("fieldcase.phone")

# Record statuses in the outbox.
PENDING = "pending"    # not known to the server's ledger: (re)send it
DEFERRED = "deferred"  # held by the server behind a gap: the gap's filler releases it
LEDGER = "ledger"      # a result said it is in the ledger, but no head has passed it yet
ACKED = "acked"        # the server's head has passed it: out of the outbox, kept as history
UNACKED = (PENDING, DEFERRED, LEDGER)

# Evidence files on the phone: captured (waiting for its declaration to reach the ledger), uploading, uploaded
# (bytes sent, verdict not heard yet), verified, mismatch (the server received other bytes), changed (the file
# on the phone no longer matches its declaration and cannot be sent), purged, not_declared, record_dropped, deleted
# (the server deleted its file under the retention policy: never sent again).
# Only verified or deleted with the server's purge_allowed may be purged.

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    op TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    prev TEXT NOT NULL,
    type TEXT NOT NULL,
    body TEXT NOT NULL,
    at TEXT NOT NULL,
    jws TEXT NOT NULL,
    hash TEXT NOT NULL,
    status TEXT NOT NULL,
    result_status TEXT,
    result_code TEXT,
    result_detail TEXT,
    refs TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_seq ON records (seq);
CREATE INDEX IF NOT EXISTS records_by_status ON records (status, seq);
CREATE INDEX IF NOT EXISTS records_by_hash ON records (hash);
CREATE TABLE IF NOT EXISTS dropped (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL,
    seq INTEGER NOT NULL,
    prev TEXT NOT NULL,
    type TEXT NOT NULL,
    body TEXT NOT NULL,
    at TEXT NOT NULL,
    jws TEXT NOT NULL,
    code TEXT,
    detail TEXT,
    result TEXT,
    dropped_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS evidence (
    evidence_id TEXT PRIMARY KEY,
    op TEXT NOT NULL,
    path TEXT NOT NULL,
    owned INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    kind TEXT NOT NULL,
    media_type TEXT NOT NULL,
    status TEXT NOT NULL,
    purge_allowed INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS changes (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    data TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
"""

_UNSET: Any = object()


@dataclass(frozen=True)
class Record:
    """One outbox row; `jws` is exactly what is (or was) sent."""

    op: str
    seq: int
    prev: str
    type: str
    body: dict[str, Any]
    at: str
    jws: str
    hash: str
    status: str
    result_status: str | None = None
    result_code: str | None = None
    refs: dict[str, Any] | None = None

    @classmethod
    def _from_row(cls, row: sqlite3.Row) -> Record:
        return cls(op=row["op"], seq=row["seq"], prev=row["prev"], type=row["type"],
                   body=json.loads(row["body"]), at=row["at"], jws=row["jws"], hash=row["hash"],
                   status=row["status"], result_status=row["result_status"], result_code=row["result_code"],
                   refs=json.loads(row["refs"]) if row["refs"] else None)


class Outbox:
    """``outbox.sqlite3``, opened once per phone and shared by its threads under one lock.

    ``clock`` is the phone's clock: it stamps the rows and dates the records.
    """

    def __init__(self, path: Path, clock: Callable[[], datetime]) -> None:
        self.clock = clock
        self._lock = threading.RLock()
        self._depth = 0
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # an officer's record must survive a power cut
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Release the file."""
        with self._lock:
            self._db.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction (nesting joins the outer one), so seq numbers are never handed out twice."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._db
                finally:
                    self._depth -= 1
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")
            finally:
                self._depth = 0

    def q(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """All rows of one query."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def get(self, key: str) -> str | None:
        """A value of the meta table."""
        rows = self.q("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    def set(self, key: str, value: str | None) -> None:
        """Write (or, with None, remove) a value of the meta table."""
        with self._lock:
            if value is None:
                self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                self._db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                                 "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def stamp(self) -> str:
        """Now, as the rows' timestamps write it."""
        return rfc3339(self.clock())

    # ------------------------------------------------------------------ the device

    @property
    def device_id(self) -> str | None:
        """The server's id for this device, once enrolled."""
        return self.get("device_id")

    @property
    def officer_id(self) -> str | None:
        """The device owner's officer id: the `by` of every record."""
        return self.get("officer_id")

    @property
    def head(self) -> dict[str, Any]:
        """The last head the server reported for this device (`{"seq", "hash"}`)."""
        return {"seq": int(self.get("head_seq") or 0), "hash": self.get("head_hash") or ZERO_HASH}

    @property
    def pull_cursor(self) -> str | None:
        """Where the next pull continues; None means from the beginning."""
        return self.get("pull_cursor")

    def set_device(self, device_id: str, officer_id: str, head: Mapping[str, Any] | None = None) -> None:
        """Attach an enrolled device and the head it starts from."""
        head = head or {"seq": 0, "hash": ZERO_HASH}
        with self.tx():
            self.set("device_id", device_id)
            self.set("officer_id", officer_id)
            self.set("head_seq", str(int(head["seq"])))
            self.set("head_hash", str(head["hash"]))

    def require_device(self) -> str:
        """The device id, or RuntimeError when the phone is not enrolled yet."""
        device_id = self.device_id
        if not device_id or not self.officer_id:
            raise RuntimeError("enrol the device first: records are signed with its id")
        return device_id

    # ------------------------------------------------------------------ the chain's state

    def tail(self) -> tuple[int, str]:
        """Where the next record chains on: the last unacknowledged record, else the server's head."""
        rows = self.q("SELECT seq, hash FROM records WHERE status IN (?, ?, ?) ORDER BY seq DESC LIMIT 1",
                      UNACKED)
        if rows:
            return rows[0]["seq"], rows[0]["hash"]
        head = self.head
        return head["seq"], head["hash"]

    def apply_head(self, head: Mapping[str, Any]) -> int:
        """Acknowledge what the head has passed: its record and the chain behind it, by hash, not by count."""
        seq, digest = int(head["seq"]), str(head["hash"])
        with self.tx() as db:
            self.set("head_seq", str(seq))
            self.set("head_hash", digest)
            if seq == 0:
                return 0
            acked = 0
            now = self.stamp()
            row = db.execute("SELECT op, seq, prev, status FROM records WHERE seq = ? AND hash = ?",
                             (seq, digest)).fetchone()
            if row is None:
                if db.execute("SELECT 1 FROM records WHERE status IN (?, ?, ?) AND seq <= ?",
                              (*UNACKED, seq)).fetchone():
                    log.warning("server head %d:%s is not on this phone's chain", seq, digest[:12])
                return 0
            while row is not None and row["status"] != ACKED:
                db.execute("UPDATE records SET status = ?, updated_at = ? WHERE op = ?", (ACKED, now, row["op"]))
                acked += 1
                row = db.execute("SELECT op, seq, prev, status FROM records WHERE seq = ? AND hash = ?",
                                 (row["seq"] - 1, row["prev"])).fetchone()
            return acked

    # ------------------------------------------------------------------ evidence rows

    def evidence_status(self, evidence_id: str) -> str:
        """Where a captured file stands on the phone; "unknown" for an id it does not hold."""
        rows = self.q("SELECT status FROM evidence WHERE evidence_id = ?", (evidence_id,))
        return rows[0]["status"] if rows else "unknown"

    def set_evidence_status(self, evidence_id: str, status: str, error: str | None = _UNSET) -> None:
        """Move a file to ``status``; ``error`` (when given) replaces its last_error."""
        with self.tx() as db:
            if error is _UNSET:
                db.execute("UPDATE evidence SET status = ?, updated_at = ? WHERE evidence_id = ?",
                           (status, self.stamp(), evidence_id))
            else:
                db.execute("UPDATE evidence SET status = ?, last_error = ?, updated_at = ? WHERE evidence_id = ?",
                           (status, None if error is None else error[:500], self.stamp(), evidence_id))

    def note_evidence_status(self, evidence_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """Take the server's view of an evidence item: a verdict, and whether the local copy may go."""
        status = data.get("status")
        purge = bool(data.get("purge_allowed")) and status in ("verified", "deleted")  # belt and braces
        with self.tx() as db:
            if status in ("verified", "mismatch", "deleted"):
                # A purged copy stays purged: a later pull of the same verdict must not offer it again.
                db.execute("UPDATE evidence SET status = ?, purge_allowed = ?, last_error = NULL, updated_at = ? "
                           "WHERE evidence_id = ? AND status != 'purged'",
                           (status, int(purge), self.stamp(), evidence_id))
            elif status is not None:
                db.execute("UPDATE evidence SET purge_allowed = 0, updated_at = ? WHERE evidence_id = ?",
                           (self.stamp(), evidence_id))
        return {"evidence_id": evidence_id, "status": status, "purge_allowed": purge}

    # ------------------------------------------------------------------ views for the app

    def records(self, status: str | None = None) -> list[Record]:
        """Outbox and history in chain order, optionally of one status."""
        if status is None:
            rows = self.q("SELECT * FROM records ORDER BY seq, created_at")
        else:
            rows = self.q("SELECT * FROM records WHERE status = ? ORDER BY seq", (status,))
        return [Record._from_row(r) for r in rows]

    def unacknowledged(self) -> list[Record]:
        """What the server's head has not passed yet."""
        rows = self.q("SELECT * FROM records WHERE status IN (?, ?, ?) ORDER BY seq", UNACKED)
        return [Record._from_row(r) for r in rows]

    def dropped(self) -> list[dict[str, Any]]:
        """Records dropped after a rejection, kept for forensics."""
        rows = self.q("SELECT * FROM dropped ORDER BY id")
        return [{**dict(r), "body": json.loads(r["body"]),
                 "result": json.loads(r["result"]) if r["result"] else None} for r in rows]

    def evidence_files(self) -> list[dict[str, Any]]:
        """Captured files and where their upload stands."""
        return [dict(r) for r in self.q("SELECT * FROM evidence ORDER BY updated_at, evidence_id")]

    def changes(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The local copy of what pull delivered (latest state per kind and id)."""
        if kind is None:
            rows = self.q("SELECT * FROM changes ORDER BY kind, id")
        else:
            rows = self.q("SELECT * FROM changes WHERE kind = ? ORDER BY id", (kind,))
        return [{"kind": r["kind"], "id": r["id"], "data": json.loads(r["data"])} for r in rows]

    def stats(self) -> dict[str, int]:
        """Counts per outbox status, plus dropped records and evidence awaiting upload."""
        out = {s: 0 for s in (*UNACKED, ACKED)}
        for r in self.q("SELECT status, COUNT(*) AS n FROM records GROUP BY status"):
            out[r["status"]] = r["n"]
        out["dropped"] = self.q("SELECT COUNT(*) AS n FROM dropped")[0]["n"]
        out["evidence_waiting"] = self.q(
            "SELECT COUNT(*) AS n FROM evidence WHERE status IN ('captured', 'uploading', 'uploaded')")[0]["n"]
        return out

    def server_case_id(self, client_case_id: str) -> str | None:
        """The server's case id for a case this phone opened (from push refs or pulled aliases)."""
        for row in self.q("SELECT body, refs FROM records WHERE type = 'case.open' AND refs IS NOT NULL"):
            if json.loads(row["body"]).get("client_case_id") == client_case_id:
                case_id = json.loads(row["refs"]).get("case_id")
                if case_id:
                    return str(case_id)
        for row in self.q("SELECT data FROM changes WHERE kind = 'case_alias'"):
            data = json.loads(row["data"])
            if data.get("client_case_id") == client_case_id and data.get("case_id"):
                return str(data["case_id"])
        return None
