"""Pushing the outbox (PROTOCOL §4): what to send, in which batches, and what each answer does to a record.

The server answers every record with a status and the device's head. Pushing again must always be safe (an
answer can be lost after the server kept the batch), so a record only leaves the outbox once a head has passed
it; a record held behind a gap waits for its filler; a rejection drops the record and re-chains the rest
(:meth:`Chain.recover`), unless it is about the device itself, which stops pushing and keeps everything.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sync.client.chain import Chain
from sync.client.outbox import ACKED, DEFERRED, LEDGER, PENDING, Outbox, Record
from sync.client.transport import SimulatedCutOff, Transport
from sync.client.wire import PUSH_PATH, compact_json

log = logging.getLogger("fieldcase.phone")

MAX_PUSH_RECORDS = 500
MAX_PUSH_BYTES = 8 * 1024 * 1024 - 64 * 1024  # PROTOCOL §4 allows 8 MiB; keep room for the envelope

IN_LEDGER = frozenset({"applied", "duplicate", "conflict", "invalid"})
# Rejections that are about the device, not about one record: dropping records
# would not help, so the outbox is kept and pushing stops.
DEVICE_REJECTIONS = frozenset({"unknown_device", "device_revoked", "not_owner"})


class Pusher:
    """Sends one phone's outbox and takes the server's answers into it."""

    def __init__(self, http: Transport, outbox: Outbox, chain: Chain) -> None:
        self._http = http
        self._outbox = outbox
        self._chain = chain

    def push(self, batch_size: int = 100, *, fail_after_batches: int | None = None,
             max_rounds: int | None = None) -> dict[str, Any]:
        """Send the outbox until the server has everything it will take (see :meth:`Phone.push`)."""
        device_id = self._outbox.require_device()
        batch_size = max(1, min(int(batch_size), MAX_PUSH_RECORDS))
        summary: dict[str, Any] = {"counts": {}, "results": [], "heads": {}, "batches": 0, "dropped": [],
                                   "rechained": 0, "device_error": None, "remaining": 0}
        rounds_left = max_rounds if max_rounds is not None else len(self._outbox.unacknowledged()) + 5
        while rounds_left > 0:
            rounds_left -= 1
            todo = self._sendable()
            if not todo:
                break
            again = False
            for batch in self._batches(todo, batch_size):
                resp = self._http.call("POST", PUSH_PATH, json_body={"records": [r.jws for r in batch]})
                if resp.status_code == 413 and len(batch) > 1:
                    batch_size = max(1, len(batch) // 2)
                    again = True
                    break
                payload = self._http.json(resp)
                summary["batches"] += 1
                if fail_after_batches is not None and summary["batches"] >= fail_after_batches:
                    raise SimulatedCutOff(f"connection dropped after batch {summary['batches']} was sent")
                outcome = self._take_answer(device_id, payload, summary, batch)
                if outcome == "stop":
                    summary["remaining"] = len(self._outbox.unacknowledged())
                    return summary
                if outcome == "recovered":
                    again = True
                    break
            if not again:
                break
        summary["remaining"] = len(self._outbox.unacknowledged())
        return summary

    def _sendable(self) -> list[Record]:
        """Pending records, plus held ones only when nothing of ours precedes them that could fill their gap."""
        out: list[Record] = []
        seen_pending = False
        for rec in self._outbox.unacknowledged():
            if rec.status == PENDING:
                seen_pending = True
                out.append(rec)
            elif not seen_pending:
                out.append(rec)  # the server said held/in ledger, yet its head stops short: ask again
        return out

    @staticmethod
    def _batches(records: list[Record], batch_size: int) -> Iterator[list[Record]]:
        batch: list[Record] = []
        size = 0
        for rec in records:
            n = len(rec.jws) + 3
            if batch and (len(batch) >= batch_size or size + n > MAX_PUSH_BYTES):
                yield batch
                batch, size = [], 0
            batch.append(rec)
            size += n
        if batch:
            yield batch

    def _take_answer(self, device_id: str, payload: Mapping[str, Any], summary: dict[str, Any],
                     batch: Sequence[Record] = ()) -> str:
        results = payload.get("results") or []
        heads = payload.get("heads") or {}
        rejected: list[Mapping[str, Any]] = []
        with self._outbox.tx() as db:
            now = self._outbox.stamp()
            for i, res in enumerate(results):
                summary["results"].append(res)
                if not res.get("op") and i < len(batch):
                    # e.g. a bad signature the server would not read further: results come in the order sent
                    res = {**res, "op": batch[i].op, "seq": res.get("seq") or batch[i].seq}
                status = str(res.get("status"))
                summary["counts"][status] = summary["counts"].get(status, 0) + 1
                rows = db.execute("SELECT seq, status FROM records WHERE op = ?", (res.get("op"),)).fetchall()
                if not rows or rows[0]["status"] == ACKED:
                    continue
                if res.get("seq") is not None and int(res["seq"]) != rows[0]["seq"]:
                    continue  # an answer about an earlier numbering of this record
                new_status = rows[0]["status"]
                if status in IN_LEDGER:
                    new_status = LEDGER
                elif status == "deferred":
                    new_status = DEFERRED
                elif status == "rejected":
                    rejected.append(res)
                refs = res.get("refs")
                db.execute("UPDATE records SET status = ?, result_status = ?, result_code = ?, "
                           "result_detail = ?, refs = COALESCE(?, refs), updated_at = ? WHERE op = ?",
                           (new_status, status, res.get("code"),
                            None if res.get("detail") is None else str(res.get("detail")),
                            None if refs is None else compact_json(refs).decode("utf-8"), now, res.get("op")))
                if status == "invalid":
                    db.execute("UPDATE evidence SET status = 'not_declared', last_error = ?, updated_at = ? "
                               "WHERE op = ? AND status = 'captured'", (res.get("code"), now, res.get("op")))
            head = heads.get(device_id)
            if isinstance(head, Mapping):
                summary["heads"][device_id] = dict(head)
                self._outbox.apply_head(head)
            if not rejected:
                return "ok"
            device_codes = sorted({str(r.get("code")) for r in rejected} & DEVICE_REJECTIONS)
            if device_codes:
                summary["device_error"] = device_codes[0]
                log.warning("push stopped: device rejected (%s); outbox kept", device_codes[0])
                return "stop"
            done = self._chain.recover(head if isinstance(head, Mapping) else self._outbox.head, rejected)
        summary["dropped"].extend(done["dropped"])
        summary["rechained"] += done["rechained"]
        return "recovered"
