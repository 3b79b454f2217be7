"""Push (PROTOCOL §4): verify a batch, place each record in its device's chain, ledger and apply it.

The batch is parsed and every signature checked before anything is written.
Records are then walked per device in `seq` order under a lock on the device
row; ledger rows are written in bulk and the batch commits once, so a push
costs a handful of round trips plus what applying needs. Before writing, a
push locks the keys of the institutions and first cases it may create, in
one order, so pushes naming the same new centres queue instead of
deadlocking. Records whose application can still race (merging a case,
naming an institution) run inside their own savepoint; the rest validate
before they write.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.models import Device, Officer
from sync.applier import Applier
from sync.chain import DeviceWalk, Item, PushOutcome, PushSettings, result_entry
from sync.devices import visible_device
from sync.jws import RecordRejected, device_key, parse, verify
from sync.lookup import Lookup
from sync.quarantine import Quarantine
from sync.records import UUID_RE, ChainFields

MAX_RECORDS = 500
MAX_BODY_BYTES = 8 * 1024 * 1024

__all__ = ["MAX_BODY_BYTES", "MAX_RECORDS", "PushSettings", "push", "release_gap", "summary"]


def push(session: Session, officer: Officer, records: list[Any], *, applier: Applier, now: datetime,
         settings: PushSettings | None = None) -> dict[str, Any]:
    """Handle one push in the caller's transaction; returns PROTOCOL §4's answer.

    A push is one transaction, so when it loses a race anyway (PostgreSQL breaks a deadlock, another
    transaction wrote a key first), nothing of it was kept and the caller runs it again whole
    (`backend.core.uow.commit_retrying`): what the other push applied then answers as duplicates or merges,
    exactly as a phone's retry would. Pushes that will create the same institutions or first cases do not get
    there: they lock those keys in one order before writing (`Applier.lock_creations`).
    """
    settings = settings or PushSettings()
    outcome = PushOutcome(results=[None] * len(records))
    quarantine = Quarantine(session, officer, now, settings.quarantine_per_device)

    by_kid: dict[str, list[Item]] = defaultdict(list)
    for index, text in enumerate(records):
        try:
            parsed = parse(text)
        except RecordRejected as exc:
            outcome.results[index] = result_entry(None, None, None, "rejected", exc.code, exc.detail)
            quarantine.add(text, exc.code, exc.detail)
            continue
        try:
            chain = ChainFields(parsed.payload)
        except ValueError as exc:
            op = parsed.payload.get("op")
            op = op if isinstance(op, str) and UUID_RE.fullmatch(op) else None
            outcome.results[index] = result_entry(op, parsed.kid, None, "rejected", "malformed", str(exc))
            quarantine.add(text, "malformed", str(exc), digest=parsed.hash, op=op)
            continue
        by_kid[parsed.kid].append(Item(index, parsed, chain))

    devices = {d.id: d for d in session.scalars(
        select(Device).where(Device.id.in_(list(by_kid))).order_by(Device.id).with_for_update())} if by_kid else {}
    walks: list[DeviceWalk] = []
    lookup = Lookup(session)
    for kid, items in by_kid.items():
        device = devices.get(kid)
        problem = None
        if device is None:
            problem = ("unknown_device", f"no enrolled device {kid!r}")
        elif device.officer_id != officer.id:
            problem = ("not_owner", "this device belongs to another officer")
        elif device.status == "revoked":
            problem = ("device_revoked", "this device has been revoked")
        if problem:
            for it in items:
                outcome.results[it.index] = result_entry(it.chain.op, kid, it.seq, "rejected", *problem)
                quarantine.add(it.record.text, problem[0], problem[1],
                               device_id=kid if device is not None else None, seq=it.seq, op=it.chain.op,
                               digest=it.record.hash)
            continue
        key = device_key(device.public_key, device.suite)  # once per device: its records verify in its suite
        good = []
        for it in items:
            try:
                verify(it.record, key)
            except RecordRejected as exc:
                outcome.results[it.index] = result_entry(it.chain.op, kid, it.seq, "rejected", exc.code, exc.detail)
                quarantine.add(it.record.text, exc.code, exc.detail, device_id=kid, seq=it.seq, op=it.chain.op,
                               digest=it.record.hash)
                continue
            good.append(it)
        walk = DeviceWalk(session, officer, device, now, settings, outcome, quarantine, applier, lookup)
        walk.prepare(good)
        walks.append(walk)
    applier.lock_creations(session, lookup, officer, [content for walk in walks for content in walk.own_contents()])
    for walk in walks:
        walk.device.last_push_at = now  # before the walk's flush: one UPDATE of the device row
        walk.run()
        walk.announce_head(officer)
        outcome.heads[walk.device.id] = {"seq": walk.device.head_seq, "hash": walk.device.head_hash}

    quarantine.write(devices)
    outcome.finish()
    return outcome.as_dict()


def release_gap(session: Session, reviewer: Officer, device_id: str, reason: str, *, applier: Applier,
                now: datetime, settings: PushSettings | None = None) -> dict[str, Any]:
    """A reviewer accepts that a device's missing records will never come; its held records are applied."""
    device = visible_device(session, reviewer, device_id)
    session.refresh(device, with_for_update=True)
    owner = session.get(Officer, device.officer_id)
    assert owner is not None
    outcome = PushOutcome(results=[])
    settings = settings or PushSettings()
    walk = DeviceWalk(session, owner, device, now, settings, outcome,
                       Quarantine(session, owner, now, settings.quarantine_per_device), applier)
    released = walk.release_gaps(reviewer.id if reviewer else None, reason)
    walk.announce_head(reviewer)
    walk.quarantine.write({device.id: device})
    return {"released_gaps": released, "applied": outcome.caught_up,
            "head": {"seq": device.head_seq, "hash": device.head_hash}}


def summary(answer: dict[str, Any]) -> dict[str, Any]:
    """What a push's log line says of its answer: the devices, and its results counted by status. Never a
    record's content or a result's detail (a rejected record's detail can quote what the phone sent)."""
    results = answer["results"]
    devices = set(answer.get("heads") or ()) | {r["device"] for r in results if r.get("device")}
    return {"devices": sorted(devices), "records": len(results),
            "counts": dict(sorted(Counter(r["status"] for r in results).items()))}
