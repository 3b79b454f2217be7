"""Every ledger record, in chain order: its JWS against its device's key, its place in the chain, its status
against what it signed; and every device's chain end against the custody log's `device_head` leaves.

The ledger is streamed a page at a time in (device, seq) order, so each device's chain is walked as it passes and
memory holds one page plus each device's chain end. Each record is checked with the server's own rules, not
copies of them: `sync.jws` parses and verifies it, `sync.records` reads its content. What those say it must be
ledgered as follows from them (its op, seq and prev; `invalid` with the content's code, or not `invalid` at all);
what it made in the tables is `derived`'s to check, with the records this pass hands on (`Said`).

A device's ledger rows deleted from the end of its chain (and its head row moved back to match) leave the chain
whole; the custody log's newest `device_head` leaf of the device, signed into the tree when the push committed,
still names the last record, so the cut shows there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal, select, tuple_
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from backend.casework.apply import CLOCK_AHEAD_LIMIT
from backend.casework.system_audit.report import Problem
from backend.core.bulk import among
from backend.core.crypto import INTL, Suite, suite_named
from backend.core.models import ZERO_HASH, ChainGap, CustodyEvent, Device, LedgerRecord
from sync.jws import DeviceKey, RecordRejected, device_key, parse, record_hash, verify
from sync.quarantine import storable_text
from sync.records import ChainFields, ContentError, load_content

PAGE = 1000
STATUSES = ("applied", "conflict", "invalid")
CONTENT_CODES = ("bad_envelope", "unsupported_version", "unknown_type", "bad_body")  # decided by the record alone
COLUMNS = (LedgerRecord.device_id, LedgerRecord.seq, LedgerRecord.op, LedgerRecord.hash, LedgerRecord.prev,
           LedgerRecord.jws, LedgerRecord.type, LedgerRecord.officer_id, LedgerRecord.at, LedgerRecord.received_at,
           LedgerRecord.status, LedgerRecord.code, LedgerRecord.refs, LedgerRecord.flags)


@dataclass(frozen=True)
class Said:
    """An authentic ledger record whose content is valid: what it said, for `derived` to hold the tables against."""

    row: Row[Any]
    where: str  # "<device>#<seq>"
    at: datetime
    by: str
    type: str
    body: dict[str, Any]


@dataclass
class _Device:
    officer_id: str
    head_seq: int
    head_hash: str
    suite: Suite  # its records' signatures and chain hashes are this suite's
    key: DeviceKey | None


def _in_gaps(gaps: list[tuple[int, int]], first: int, last: int) -> bool:
    """Whether every seq from `first` to `last` was released as a chain gap."""
    seq = first
    for a, b in sorted(gaps):
        if a <= seq <= b:
            seq = b + 1
    return seq > last


class LedgerWalk:
    """One pass over the ledger; `pages()` feeds `check_page`, then `check_devices` holds each chain's end."""

    def __init__(self, session: Session) -> None:
        self.s = session
        self.devices: dict[str, _Device] = {}
        self.ends: dict[str, tuple[int, str]] = {}  # device -> (seq, hash of its JWS) of the last record seen
        self.gaps: dict[str, list[tuple[int, int]]] = {}
        for device_id, first, last in session.execute(select(ChainGap.device_id, ChainGap.first_seq,
                                                             ChainGap.last_seq)):
            self.gaps.setdefault(device_id, []).append((first, last))

    def pages(self) -> Iterator[list[Row[Any]]]:
        last: tuple[str, int] | None = None
        while True:
            stmt = select(*COLUMNS)
            if last is not None:
                stmt = stmt.where(tuple_(LedgerRecord.device_id, LedgerRecord.seq) > tuple_(literal(last[0]),
                                                                                             literal(last[1])))
            rows = list(self.s.execute(stmt.order_by(LedgerRecord.device_id, LedgerRecord.seq).limit(PAGE)))
            if not rows:
                return
            yield rows
            last = (rows[-1].device_id, rows[-1].seq)

    def _load_devices(self, ids: set[str]) -> Iterator[Problem]:
        wanted = sorted(ids - set(self.devices))
        if not wanted:
            return
        for d in self.s.execute(select(Device.id, Device.officer_id, Device.public_key, Device.suite,
                                       Device.head_seq, Device.head_hash).where(among(self.s, Device.id, wanted))):
            try:
                suite = suite_named(d.suite)
            except KeyError:
                suite = INTL
                yield Problem("ledger", "device", d.id, f"its suite {d.suite!r} is not one the server knows: none of "
                              "its records can be checked")
                key = None
            else:
                try:
                    key = device_key(d.public_key, d.suite)
                except ValueError:
                    key = None
                    yield Problem("ledger", "device", d.id, f"its enrolled public key is not a valid "
                                  f"{suite.signature_name} key: none of its records can be checked")
            self.devices[d.id] = _Device(d.officer_id, d.head_seq, d.head_hash, suite, key)

    def check_page(self, rows: list[Row[Any]], out: list[Said]) -> Iterator[Problem]:
        yield from self._load_devices({r.device_id for r in rows})
        for row in rows:
            yield from self._check_record(row, out)

    def _check_record(self, row: Row[Any], out: list[Said]) -> Iterator[Problem]:
        where = f"{row.device_id}#{row.seq}"

        def problem(message: str) -> Problem:
            return Problem("ledger", "record", where, message)

        device = self.devices.get(row.device_id)
        digest = record_hash(row.jws, device.suite if device else INTL) if row.jws.isascii() else None
        if digest != row.hash:
            yield problem("its JWS does not hash to the hash stored with it: the record or its hash was altered")
        signed_prev = row.prev
        try:
            parsed = parse(row.jws)
        except RecordRejected as exc:
            yield problem(f"its JWS is not a record the server accepts ({exc.code}): it was altered")
            parsed = None
        authentic = parsed is not None and device is not None and device.key is not None
        if parsed is not None and device is not None and device.key is not None:
            if parsed.kid != row.device_id:
                yield problem("it is signed for another device (kid)")
                authentic = False
            try:
                verify(parsed, device.key)
            except RecordRejected:
                yield problem("its signature does not verify with its device's key: the record was altered")
                authentic = False
        if device is not None and row.officer_id != device.officer_id:
            yield problem("the officer it is ledgered for is not its device's owner")
        if parsed is not None:
            yield from self._check_envelope(row, parsed.payload, problem)
            signed_prev = parsed.payload.get("prev")
            try:
                content = load_content(parsed.payload, parsed.nul_escape)
            except ContentError as exc:
                content = exc
            yield from self._check_status(row, content, problem)
            if authentic and not isinstance(content, ContentError):
                at, by, rtype, body = content
                out.append(Said(row, where, at, by, rtype, body))
        yield from self._check_link(row, digest or row.hash, signed_prev)

    def _check_envelope(self, row: Row[Any], payload: dict[str, Any], problem) -> Iterator[Problem]:
        try:
            chain = ChainFields(payload)
        except ValueError:
            yield problem("its signed op, seq or prev is malformed: it could never have been ledgered")
            return
        for name, signed in (("op", chain.op), ("seq", chain.seq), ("prev", chain.prev)):
            if getattr(row, name) != signed:
                yield problem(f"its {name} in the ledger differs from the signed one")
        if row.type != storable_text(payload.get("type"))[:40]:
            yield problem("its type in the ledger differs from the signed one")

    def _check_status(self, row: Row[Any], content: tuple | ContentError, problem) -> Iterator[Problem]:
        """The ledger status follows from the record: `invalid` with the code of content that does not load (or
        `wrong_officer`), never `invalid` for a code the record alone decides when its content is valid."""
        status, code = row.status, row.code
        said = f"{status}/{code}" if code else status
        if status not in STATUSES:
            yield problem("its ledger status is not one a ledgered record can have")
            return
        if isinstance(content, ContentError):
            if status != "invalid" or code != content.code:
                yield problem(f"it is ledgered {said}, but its signed content is invalid ({content.code})")
            if row.at is not None or row.flags:
                yield problem("its ledger row has a time or flags, but its signed content could not be read")
            return
        at, by, rtype, body = content
        if by != row.officer_id:
            if status != "invalid" or code != "wrong_officer":
                yield problem(f"it is ledgered {said}, but it was signed for another officer (wrong_officer)")
            return
        if row.at != at:
            yield problem("its time in the ledger differs from the signed one")
        if status == "invalid":
            if not code or code in CONTENT_CODES or code == "wrong_officer":
                yield problem(f"it is ledgered {said}, but its signed content is valid")
            if row.flags:
                yield problem("it is ledgered invalid, but its ledger row has procedure flags")
            return
        if code:
            yield problem(f"it is ledgered {status} with a code")
        if status == "conflict" and rtype != "case.update":
            yield problem("it is ledgered conflict, but only a case.update can conflict")
        ahead = at - row.received_at > CLOCK_AHEAD_LIMIT
        if ahead != ("clock_ahead" in (row.flags or [])):
            yield problem("its clock_ahead flag does not follow from its signed time and its receipt")
        if bool(body.get("override")) != ("override" in (row.flags or [])):
            yield problem("its override flag does not follow from its signed body")

    def _check_link(self, row: Row[Any], digest: str, signed_prev: Any) -> Iterator[Problem]:
        gaps = self.gaps.get(row.device_id, [])
        seq, end = row.seq, self.ends.get(row.device_id)
        expected = end[0] + 1 if end else 1
        after_gap = False
        if seq != expected:
            if seq > expected and _in_gaps(gaps, expected, seq - 1):
                after_gap = True  # the chain resumes after a released gap: nothing to link to
            else:
                yield Problem("ledger", "device", row.device_id,
                              f"records {expected}..{seq - 1} of its chain are missing from the ledger (neither "
                              "there nor released as a gap): ledger rows were deleted")
        if not after_gap and seq == expected:
            want = end[1] if end else ZERO_HASH
            if signed_prev != want:
                yield Problem("ledger", "record", f"{row.device_id}#{seq}",
                              f"it does not link to seq {seq - 1} (its prev is not that record's hash): the chain is "
                              "broken")
        self.ends[row.device_id] = (seq, digest)

    def check_devices(self, counts) -> Iterator[Problem]:
        """Every device's head row and newest `device_head` leaf against where its ledger chain ends."""
        last = ""
        while True:
            rows = list(self.s.execute(select(Device.id, Device.head_seq, Device.head_hash).where(Device.id > last)
                                       .order_by(Device.id).limit(PAGE)))
            if not rows:
                return
            leaves = self._head_leaves([r.id for r in rows])
            for d in rows:
                counts["devices"] += 1
                yield from self._check_device(d, leaves.get(d.id))
            last = rows[-1].id

    def _head_leaves(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        newest = select(CustodyEvent.device_id, func.max(CustodyEvent.leaf_index).label("leaf_index")).where(
            among(self.s, CustodyEvent.device_id, ids)).group_by(CustodyEvent.device_id).subquery()
        out = {}
        for device_id, leaf in self.s.execute(select(CustodyEvent.device_id, CustodyEvent.leaf).join(
                newest, CustodyEvent.leaf_index == newest.c.leaf_index)):
            try:
                out[device_id] = json.loads(leaf)
            except ValueError:
                out[device_id] = {}  # the tree check names the leaf
        return out

    def _check_device(self, d: Row[Any], leaf: dict[str, Any] | None) -> Iterator[Problem]:
        end_seq, end_hash = self.ends.get(d.id, (0, ZERO_HASH))
        gaps = self.gaps.get(d.id, [])

        def problem(message: str) -> Problem:
            return Problem("ledger", "device", d.id, message)

        if (d.head_seq, d.head_hash) != (end_seq, end_hash) and not (
                d.head_seq > end_seq and _in_gaps(gaps, end_seq + 1, d.head_seq)):
            yield problem(f"its head (seq {d.head_seq}) is not its last ledger record (seq {end_seq}): ledger rows "
                          "were deleted or added, or the head was edited")
        if leaf is None:
            if end_seq or d.head_seq:
                yield problem("no device_head custody leaf witnesses where its chain ends, so a cut in it could not "
                              "be seen")
            return
        seq, witnessed = leaf.get("seq"), leaf.get("record_hash")
        if not isinstance(seq, int):
            yield problem("its newest device_head leaf names no seq")
        elif seq > end_seq:
            yield problem(f"the custody log witnessed its chain to seq {seq}, but its ledger ends at seq {end_seq}: "
                          "records were cut from the end of the ledger")
        elif seq < end_seq:
            yield problem(f"its ledger runs to seq {end_seq}, past the seq {seq} its newest device_head leaf "
                          "witnessed: records were added without a push")
        elif witnessed != end_hash:
            yield problem(f"the record at seq {seq} is not the one the custody log witnessed as its head")
