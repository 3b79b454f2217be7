"""The phone's hash chain (PROTOCOL §3, §4 Recovery): appending signed records, and repairing the chain.

Each record carries the next seq and its predecessor's hash, so the outbox is one chain growing on the server's
last head. A record is signed in two places only: when it is appended, and when a rejection forces the records
behind it to be renumbered on the server's head. Both are here, and both hand out seq and prev inside the
outbox's transaction.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sync.client.outbox import ACKED, PENDING, UNACKED, Outbox, Record
from sync.client.signing import DeviceKey
from sync.client.wire import compact_json, jsonable, rfc3339

log = logging.getLogger("fieldcase.phone")

# Called before a record is signed, with (type, body, at, override): the override the body is to carry, or None;
# it raises to refuse the record (``sync.client.checks.Checker``).
Guard = Callable[[str, Mapping[str, Any], str, Any], "dict[str, Any] | None"]


class Chain:
    """Signs records with the device key and keeps them chained in the outbox."""

    def __init__(self, outbox: Outbox, key: DeviceKey, guard: Guard | None = None) -> None:
        self._outbox = outbox
        self._key = key
        self._guard = guard

    def sign(self, *, op: str, seq: int, prev: str, at: str, type_: str, body: Mapping[str, Any]) -> str:
        """The record's compact JWS, with this device as `kid` and its owner as `by`."""
        return self._key.sign_record(kid=self._outbox.require_device(), by=self._outbox.officer_id, op=op,
                                     seq=seq, prev=prev, at=at, type_=type_, body=body)

    def append(self, type_: str, body: Mapping[str, Any], at: datetime | str | None = None, *,
               override: Any = None) -> Record:
        """Check, sign a record on the chain's tail and queue it as pending; ``override`` signs over problems."""
        outbox = self._outbox
        outbox.require_device()
        if not type_:
            raise ValueError("a record needs a type")
        body = jsonable(dict(body))
        when = rfc3339(at if at is not None else outbox.clock())
        if "override" in body:
            raise ValueError("the phone writes a record's override itself: pass override=... instead")
        signed_over = self._guard(type_, body, when, override) if self._guard is not None else None
        if signed_over is not None:
            body["override"] = signed_over
        op = str(uuid.uuid4())
        with outbox.tx() as db:
            seq, prev = outbox.tail()
            seq += 1
            jws = self.sign(op=op, seq=seq, prev=prev, at=when, type_=type_, body=body)
            digest = self._key.record_hash(jws)
            now = outbox.stamp()
            db.execute("INSERT INTO records (op, seq, prev, type, body, at, jws, hash, status, created_at, "
                       "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (op, seq, prev, type_, compact_json(body).decode("utf-8"), when, jws, digest, PENDING, now,
                        now))
        return Record(op=op, seq=seq, prev=prev, type=type_, body=body, at=when, jws=jws, hash=digest, status=PENDING)

    def recover(self, head: Mapping[str, Any], rejected: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """PROTOCOL §4 Recovery: drop the rejected records, then rebuild the chain on the server's head."""
        dropped: list[str] = []
        with self._outbox.tx() as db:
            now = self._outbox.stamp()
            for res in rejected:
                row = db.execute("SELECT * FROM records WHERE op = ?", (res.get("op"),)).fetchone()
                if row is None or row["status"] == ACKED:
                    continue
                if res.get("seq") is not None and int(res["seq"]) != row["seq"]:
                    continue
                db.execute("INSERT INTO dropped (op, seq, prev, type, body, at, jws, code, detail, result, "
                           "dropped_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (row["op"], row["seq"], row["prev"], row["type"], row["body"], row["at"], row["jws"],
                            res.get("code"), None if res.get("detail") is None else str(res.get("detail")),
                            compact_json(dict(res)).decode("utf-8"), now))
                db.execute("DELETE FROM records WHERE op = ?", (row["op"],))
                db.execute("UPDATE evidence SET status = 'record_dropped', last_error = ?, updated_at = ? "
                           "WHERE op = ?", (res.get("code"), now, row["op"]))
                dropped.append(row["op"])
            self._outbox.apply_head(head)
            rechained = self._rechain(head)
        log.info("recovery: dropped %d, re-chained %d on head %s", len(dropped), rechained, head.get("seq"))
        return {"dropped": dropped, "rechained": rechained}

    def _rechain(self, head: Mapping[str, Any]) -> int:
        """Renumber and re-sign every unacknowledged record from the head on; op, type, body and at stay."""
        seq, prev = int(head["seq"]), str(head["hash"])
        changed = 0
        with self._outbox.tx() as db:
            now = self._outbox.stamp()
            rows = db.execute("SELECT * FROM records WHERE status IN (?, ?, ?) ORDER BY seq, created_at",
                              UNACKED).fetchall()
            for row in rows:
                seq += 1
                if row["seq"] == seq and row["prev"] == prev:
                    prev = row["hash"]
                    continue
                jws = self.sign(op=row["op"], seq=seq, prev=prev, at=row["at"], type_=row["type"],
                                body=json.loads(row["body"]))
                digest = self._key.record_hash(jws)
                db.execute("UPDATE records SET seq = ?, prev = ?, jws = ?, hash = ?, status = ?, "
                           "result_status = NULL, result_code = NULL, result_detail = NULL, updated_at = ? "
                           "WHERE op = ?", (seq, prev, jws, digest, PENDING, now, row["op"]))
                prev = digest
                changed += 1
        return changed
