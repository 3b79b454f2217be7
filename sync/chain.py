"""A device's chain (PROTOCOL §4): each record placed by `seq` and `prev`, held behind a gap, or refused.

One `DeviceWalk` per device and push, under a lock on the device row: it sorts the device's records against
its ledger (duplicates, reused ops, forks), appends what is next in line, holds what comes after a gap
(`deferred`) and catches up held records once the gap fills, or releases a gap after the timeout or at a
reviewer's word. Applying a record is the applier's (sync/applier.py); the walk only decides its place.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from backend.core.bulk import among, insert_rows
from backend.core.models import ChainGap, DeferredRecord, Device, LedgerRecord, Officer
from sync.applier import Applied, Applier, RecordContext
from sync.jws import ParsedRecord, RecordRejected, parse
from sync.lookup import Lookup
from sync.quarantine import MAX_DETAIL, Quarantine, storable_text
from sync.records import ChainFields, ContentError, load_content


def _type_label(rtype: Any) -> str:
    """The ledger's `type` column for any record, also one whose `type` is not a type at all."""
    return storable_text(rtype)[:40]


@dataclass(frozen=True)
class PushSettings:
    gap_timeout: timedelta = timedelta(days=7)
    quarantine_per_device: int = 1000


@dataclass
class Item:
    index: int
    record: ParsedRecord
    chain: ChainFields
    content: tuple | ContentError | None = None

    @property
    def seq(self) -> int:
        return self.chain.seq


@dataclass
class PushOutcome:
    results: list[dict[str, Any] | None]
    heads: dict[str, dict[str, Any]] = field(default_factory=dict)
    caught_up: list[dict[str, Any]] = field(default_factory=list)
    ledgered_ops: set[str] = field(default_factory=set)
    repeats: list[tuple[int, int]] = field(default_factory=list)

    def finish(self) -> None:
        """The same JWS sent twice in one push gets the answer its first copy got."""
        for index, first in self.repeats:
            answer = dict(self.results[first] or {})
            if answer.get("status") not in ("rejected", "deferred"):
                answer = {**answer, "first_status": answer["status"], "status": "duplicate"}
            self.results[index] = answer

    def as_dict(self) -> dict[str, Any]:
        return {"results": [r for r in self.results if r is not None] + self.caught_up, "heads": self.heads}


def result_entry(op: str | None, device: str | None, seq: int | None, status: str, code: str | None = None,
            detail: str | None = None, refs: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"op": op, "device": device, "seq": seq, "status": status}
    if code:
        out["code"] = code
    if detail:
        out["detail"] = detail
    if refs:
        out["refs"] = refs
    return out


class DeviceWalk:
    """Places one device's records in its chain, in seq order, catching up deferred records on the way."""

    def __init__(self, session: Session, officer: Officer, device: Device, now: datetime, settings: PushSettings,
                 outcome: PushOutcome, quarantine: Quarantine, applier: Applier, lookup: Lookup | None = None) -> None:
        self.s, self.officer, self.device, self.now = session, officer, device, now
        self.settings, self.outcome, self.quarantine, self.applier = settings, outcome, quarantine, applier
        self.ledger_rows: list[dict[str, Any]] = []
        self.lookup = lookup or Lookup(session)  # one per push: a device's records see what another's created
        self.candidates: dict[int, list[Item]] = defaultdict(list)
        self.deferred: dict[int, DeferredRecord] | None = None
        self.resent: dict[str, Item] = {}  # sent again while held: answered once the walk is done
        self.start_seq = device.head_seq

    def prepare(self, items: list[Item]) -> None:
        """Place the records against the ledger and validate their bodies; nothing is written yet."""
        if not items:
            return
        self._classify(items)
        for it in self._pending():
            try:
                it.content = load_content(it.record.payload, it.record.nul_escape)
            except ContentError as exc:
                it.content = exc

    def _pending(self) -> list[Item]:
        return [it for group in self.candidates.values() for it in group]

    def own_contents(self) -> list[tuple]:
        """The valid bodies of records that may be applied now, by this device's officer: what may create rows."""
        return [content for it in self._pending()
                if isinstance(content := it.content, tuple) and content[1] == self.officer.id]

    def run(self) -> None:
        with self.s.no_autoflush:
            pending = self._pending()
            if pending:
                self._prefetch(pending)
            self._catch_up()
        self.write()

    def announce_head(self, actor: Officer) -> None:
        """Tell the applier where the chain now ends, when this walk moved it."""
        device = self.device
        if device.head_seq != self.start_seq:
            self.applier.device_advanced(self.s, actor, device.id, device.head_seq, device.head_hash, self.now)
            self.start_seq = device.head_seq

    def write(self) -> None:
        """Objects through the unit of work, then the bulk rows (findings, evidence, ledger) in one go each."""
        self.s.flush()
        self.lookup.write_rows()
        if self.ledger_rows:
            insert_rows(self.s, LedgerRecord, self.ledger_rows)
            self.ledger_rows = []

    def _prefetch(self, items: list[Item]) -> None:
        self.applier.prefetch(self.lookup, self.officer, [it.content for it in items if isinstance(it.content, tuple)])

    def _classify(self, items: list[Item]) -> None:
        s, device = self.s, self.device
        hashes = [it.record.hash for it in items]
        ops = [it.chain.op for it in items]
        existing = list(s.execute(select(
            LedgerRecord.hash, LedgerRecord.op, LedgerRecord.seq, LedgerRecord.device_id, LedgerRecord.status,
            LedgerRecord.code, LedgerRecord.detail, LedgerRecord.refs,
        ).where(or_(among(s, LedgerRecord.hash, hashes), among(s, LedgerRecord.op, ops),
                    (LedgerRecord.device_id == device.id) & among(s, LedgerRecord.seq, [it.seq for it in items])))))
        by_hash = {r.hash: r for r in existing}
        by_op = {r.op: r for r in existing}
        by_seq = {r.seq: r for r in existing if r.device_id == device.id}
        self.deferred = self._load_deferred()
        deferred_hashes = {d.hash for d in self.deferred.values()}
        first_copy: dict[str, int] = {}
        for it in sorted(items, key=lambda i: (i.seq, i.index)):
            op, seq, h = it.chain.op, it.seq, it.record.hash
            if h in first_copy:
                self.outcome.repeats.append((it.index, first_copy[h]))
                continue
            first_copy[h] = it.index
            if h in by_hash:
                first = by_hash[h]
                self._answer(it, "duplicate", first.code, first.detail, first.refs)
                self.outcome.results[it.index]["first_status"] = first.status  # type: ignore[index]
            elif op in by_op:
                self._reject(it, "op_reused", "this op is already in the ledger with other content")
            elif seq in by_seq or seq <= device.head_seq:
                detail = (f"seq {seq} already holds another record" if seq in by_seq
                          else f"seq {seq} was released as a chain gap")
                self._reject(it, "fork", detail)
            elif h in deferred_hashes:
                self.resent[h] = it
            else:
                self.candidates[seq].append(it)

    def _answer(self, it: Item, status: str, code: str | None = None, detail: str | None = None,
                refs: dict[str, Any] | None = None) -> None:
        self.outcome.results[it.index] = result_entry(it.chain.op, self.device.id, it.seq, status, code, detail, refs)

    def _reject(self, it: Item, code: str, detail: str) -> None:
        self._answer(it, "rejected", code, detail)
        self.quarantine.add(it.record.text, code, detail, device_id=self.device.id, seq=it.seq, op=it.chain.op,
                            digest=it.record.hash)

    def _load_deferred(self) -> dict[int, DeferredRecord]:
        return {d.seq: d for d in self.s.scalars(
            select(DeferredRecord).where(DeferredRecord.device_id == self.device.id))}

    def _catch_up(self) -> None:
        device = self.device
        candidates = self.candidates
        if self.deferred is None:
            self.deferred = self._load_deferred()
        while True:
            expected = device.head_seq + 1
            batch = candidates.pop(expected, [])
            held = self.deferred.pop(expected, None)
            chosen: Item | DeferredRecord | None = None
            for it in batch:
                if chosen is None and it.chain.prev == device.head_hash:
                    chosen = it
                elif chosen is None:
                    self._reject(it, "chain_broken", f"prev is not the hash of the ledger's record {expected - 1}")
                else:
                    self._reject(it, "fork", f"another record for seq {expected} came first in this push")
            if held is not None:
                if chosen is None and held.prev == device.head_hash:
                    chosen = held
                else:
                    why = "superseded" if chosen is not None else "chain_broken"
                    self._drop_deferred(held, why)
            if chosen is None or not self._append(chosen):
                if chosen is None and self._release_gap_on_timeout(candidates):
                    continue
                break
        for seq in sorted(candidates):
            for it in candidates[seq]:
                self._defer(it)
        for it in self.resent.values():
            self._answer(it, "deferred")
        self.resent.clear()

    def _release_gap_on_timeout(self, candidates: dict[int, list[Item]]) -> bool:
        if not self.deferred:
            return False
        first = min(self.deferred)
        if self.deferred[first].received_at > self.now - self.settings.gap_timeout:
            return False
        self.release_gap(first, None, "timeout")
        return True

    def release_gaps(self, by: str | None, reason: str) -> int:
        """Release every gap before the device's held records, applying what follows each; returns how many."""
        self.deferred = {d.seq: d for d in self.s.scalars(
            select(DeferredRecord).where(DeferredRecord.device_id == self.device.id).with_for_update())}
        released = 0
        while self.deferred and min(self.deferred) > self.device.head_seq + 1:
            self.release_gap(min(self.deferred), by, reason)
            released += 1
            with self.s.no_autoflush:
                self._catch_up()
            self.write()
        return released

    def release_gap(self, first_held: int, by: str | None, reason: str) -> None:
        """Accept that seq head+1 .. first_held-1 will never come: the chain resumes at the held record."""
        device = self.device
        self.s.add(ChainGap(device_id=device.id, first_seq=device.head_seq + 1, last_seq=first_held - 1,
                            released_by=by, reason=reason, released_at=self.now))
        held = self.deferred[first_held]
        device.head_seq, device.head_hash = first_held - 1, held.prev

    def _drop_deferred(self, held: DeferredRecord, code: str) -> None:
        self.quarantine.add(held.jws, code, f"held record for seq {held.seq} dropped: {code}",
                            device_id=self.device.id, seq=held.seq, op=held.op, digest=held.hash)
        self.s.delete(held)

    def _defer(self, it: Item) -> None:
        old = self.deferred.get(it.seq)
        if old is not None and old in self.s.new:
            # Held by this very push: the first record for a seq wins, as for records next in the chain. (The
            # pending row cannot be deleted, and answering `deferred` for a record then dropped would mislead.)
            self._reject(it, "fork", f"another record for seq {it.seq} came first in this push")
            return
        if old is not None:
            self._drop_deferred(old, "superseded")
            self.s.flush()
        row = DeferredRecord(device_id=self.device.id, seq=it.seq, op=it.chain.op, hash=it.record.hash,
                             prev=it.chain.prev, jws=it.record.text, officer_id=self.officer.id,
                             received_at=self.now)
        self.s.add(row)
        self.deferred[it.seq] = row
        self._answer(it, "deferred")

    def _append(self, chosen: Item | DeferredRecord) -> bool:
        content: tuple | ContentError | None = None
        if isinstance(chosen, DeferredRecord):
            text, digest, op, seq, prev = chosen.jws, chosen.hash, chosen.op, chosen.seq, chosen.prev
            try:
                parsed = parse(text)
            except RecordRejected as exc:
                # Held under an earlier, laxer parser (say, a part whose unused base64url bits were set): it
                # cannot be ledgered now, so it is dropped to the quarantine like any record refused today.
                self._drop_deferred(chosen, exc.code)
                return False
            payload, nul_escape = parsed.payload, parsed.nul_escape
        else:
            text, digest, op, seq, prev = (chosen.record.text, chosen.record.hash, chosen.chain.op, chosen.seq,
                                           chosen.chain.prev)
            payload, content, nul_escape = chosen.record.payload, chosen.content, chosen.record.nul_escape
            held = self.deferred.pop(seq, None)
            if held is not None:
                self._drop_deferred(held, "superseded")
        if op in self.outcome.ledgered_ops or (isinstance(chosen, DeferredRecord) and self.s.scalar(
                select(func.count()).where(LedgerRecord.op == op))):
            if isinstance(chosen, DeferredRecord):
                self._drop_deferred(chosen, "op_reused")
            else:
                self._reject(chosen, "op_reused", "this op is already in the ledger with other content")
            return False
        self.outcome.ledgered_ops.add(op)
        at, rtype, status, code, detail, applied = None, payload.get("type"), "applied", None, None, Applied()
        try:
            if isinstance(content, ContentError):
                raise content
            at, by, rtype, body = content or load_content(payload, nul_escape)
            if by != self.officer.id:
                raise ContentError("wrong_officer", "by is not the officer who owns the device")
            ctx = RecordContext(self.s, self.lookup, self.officer, self.device.id, op, at, self.now, body, digest)
            if rtype in self.applier.savepoint_types:
                with self.s.begin_nested():
                    applied = self.applier.apply(ctx, rtype)
            else:
                applied = self.applier.apply(ctx, rtype)
            status = applied.status
        except ContentError as exc:
            status, code, detail = "invalid", exc.code, storable_text(exc.detail)[:MAX_DETAIL]
        self.ledger_rows.append({
            "device_id": self.device.id, "seq": seq, "op": op, "hash": digest, "prev": prev, "jws": text,
            "type": _type_label(rtype), "officer_id": self.officer.id, "at": at, "received_at": self.now,
            "status": status, "code": code, "detail": detail, "refs": applied.refs or None,
            "flags": applied.flags or None,
        })
        self.device.head_seq, self.device.head_hash = seq, digest
        result = result_entry(op, self.device.id, seq, status, code, detail, applied.refs)
        if applied.flags:
            result["flags"] = applied.flags
        if isinstance(chosen, DeferredRecord):
            self.s.delete(chosen)
            resent = self.resent.pop(digest, None)
            if resent is not None:
                self.outcome.results[resent.index] = result
            else:
                result["caught_up"] = True
                self.outcome.caught_up.append(result)
        else:
            self.outcome.results[chosen.index] = result
        return True
