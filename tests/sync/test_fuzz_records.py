"""Property-based fuzzing of the record parser, the verifier and push (PROTOCOL §3, §4).

Hypothesis starts from records a phone really signs and mutates them the ways a broken phone, a flaky
network or an attacker would: characters flipped, inserted or deleted in the JWS, segments swapped,
headers re-encoded with other `alg`/`typ`/`kid`/fields, payloads that are not strict JSON (duplicate keys,
non-UTF-8, NaN and Infinity, huge numbers, lone surrogates, deep nesting), envelopes and bodies of the wrong
shape re-signed with the device key, records signed with another key, and `prev`/`seq`/`op` that do not
place the record in its chain. The properties are PROTOCOL §4's:

- a push always answers (no exception escapes), one result per record, each with a documented status
  and, for `rejected` and `invalid`, a documented code;
- an inauthentic record (its signature does not verify with the enrolled device key, judged here
  independently of sync.jws) never yields a ledger row;
- an authentic record that is next in its chain always yields exactly one ledger row, whatever its
  content (`applied`, `invalid` or `conflict`);
- the ledger and the device head stay consistent: the ledger rows of the device form an unbroken hash
  chain from seq 1, and the head is its last row.

State accumulates across examples on purpose (one officer, one device, a growing chain): every example
builds on the head the previous ones left, as a phone's pushes do. `sync.jws.parse` and
`sync.records.load_content` are also fuzzed directly: they raise RecordRejected / ContentError, nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import string
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from backend.casework.apply import RecordApplier
from backend.core.models import Device, LedgerRecord, Officer
from backend.core.times import system_clock
from backend.core.uow import commit_retrying
from sync.devices import enrol
from sync.jws import RecordRejected, parse
from sync.push import push
from sync.records import ENVELOPE_KEYS, ContentError, load_content
from tests.phones import ZERO, TestPhone, b64, compact, jws_hash

STATUSES = {"applied", "duplicate", "conflict", "invalid", "deferred", "rejected"}
REJECTED_CODES = {"bad_signature", "unknown_device", "device_revoked", "not_owner", "malformed", "chain_broken",
                  "fork", "op_reused"}
# docs/protocol.md, "Codes of `invalid`", and "Case lifecycle" for transition_refused.
INVALID_CODES = {"bad_envelope", "unsupported_version", "unknown_type", "bad_body", "wrong_officer", "unknown_case",
                 "unknown_institution", "unknown_region", "bad_credit_code", "unknown_category",
                 "unknown_inspection", "already_ended", "duplicate_id", "bad_version", "retry_exhausted",
                 "transition_refused", "unknown_record", "not_correctable", "not_signer", "open_case_exists"}
IN_LEDGER = {"applied", "invalid", "conflict"}

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])
DIRECT = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CENTRE = {"name": "西湖区晨曦书画培训中心", "region": "330106", "address": "教工路 18 号"}
SHANGHAI = timezone(timedelta(hours=8))


# --- an independent judge of authenticity ------------------------------------------------------------------------

_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")


def _strict_b64(segment: str) -> bytes:
    if not _SEGMENT.fullmatch(segment) or len(segment) % 4 == 1:
        raise ValueError("not base64url")
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if b64(raw) != segment:
        raise ValueError("not the canonical spelling")
    return raw


def authentic(text: Any, key: Ed25519PublicKey) -> bool:
    """Signed by this key over exactly its first two segments; nothing of sync.jws is used to say so."""
    if not isinstance(text, str) or not text.isascii() or text.count(".") != 2:
        return False
    header, payload, signature = text.split(".")
    try:
        key.verify(_strict_b64(signature), f"{header}.{payload}".encode("ascii"))
    except Exception:  # noqa: BLE001 - any failure to verify means not authentic
        return False
    return True


# --- JSON values and text ----------------------------------------------------------------------------------------

texts = st.text(max_size=40)  # no lone surrogates: those are for the hostile strategies
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=False, allow_infinity=False), texts)
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(texts, inner, max_size=4)),
                           max_leaves=12)
uuids = st.uuids().map(str)


def timestamps() -> st.SearchStrategy[str]:
    """RFC 3339 with an offset, from a reset phone clock's 1900s to a wrong one's 2990s."""
    return st.builds(
        lambda moment, minutes, frac: (moment.replace(tzinfo=timezone(timedelta(minutes=minutes)))
                                       .isoformat(timespec="microseconds" if frac else "seconds")),
        st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2998, 12, 30)),
        st.integers(-(23 * 60 + 59), 23 * 60 + 59), st.booleans())


bad_timestamps = st.one_of(
    st.sampled_from(["", "2026-07-14", "2026-07-14 09:30:05+08:00", "2026-07-14T09:30:05", "2026-13-01T00:00:00Z",
                     "2026-02-30T00:00:00Z", "2026-07-14T24:00:00Z", "2026-07-14T09:30:05+24:00",
                     "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "1899-12-31T23:59:59Z",
                     "2026-07-14T09:30:05+08:00\n", "２０２６-07-14T09:30:05+08:00", "٢٠٢٦-07-14T09:30:05Z"]),
    json_values)


# --- records a phone signs ---------------------------------------------------------------------------------------

def valid_bodies(officer_id: str, partner_id: str) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """A well-formed body of each type (most refer to things the server does not know: `invalid`, still ledgered)."""
    case_ref = st.one_of(st.builds(lambda u: {"client_case_id": u}, uuids), st.just({"id": "case_nope"}))
    moment = timestamps()
    return st.one_of(
        st.builds(lambda u, inst: ("case.open", {"client_case_id": u, "institution": inst}), uuids,
                  st.one_of(st.just(CENTRE), st.just({"id": "ins_nope"}),
                            st.builds(lambda n: {"name": n, "region": "330106"}, st.text(min_size=1, max_size=200)))),
        st.builds(lambda u, c: ("inspection.start", {"inspection_id": u, "case": c,
                                                     "officers": [officer_id, partner_id]}), uuids, case_ref),
        st.builds(lambda u, f, cat: ("inspection.finding", {"inspection_id": u, "finding_id": f, "category": cat,
                                                            "description": "现场发现", "evidence": []}),
                  uuids, uuids, st.sampled_from(["unlicensed", "fees", "nope"])),
        st.builds(lambda u: ("inspection.end", {"inspection_id": u, "outcome": "no_violation"}), uuids),
        st.builds(lambda u, at, size: ("evidence.capture", {
            "evidence_id": u, "inspection_id": None, "kind": "photo", "media_type": "image/jpeg",
            "sha256": hashlib.sha256(u.encode()).hexdigest(), "size": size, "captured_at": at}),
            uuids, moment, st.integers(0, 2**50)),
        st.builds(lambda c, v, f: ("case.update", {"case": c, "base_version": v, "fields": f}), case_ref,
                  st.integers(0, 5), st.sampled_from([{"summary": "复查"}, {"status": "investigating"}])),
        st.builds(lambda u: ("clue.report", {"clue_id": u, "source": "hotline", "institution": CENTRE,
                                             "description": "群众举报"}), uuids),
        st.builds(lambda u, a, b: ("recording.interruption", {"inspection_id": u, "camera_serial": "CAM-1",
                                                              "started_at": a, "ended_at": b, "reason": "battery"}),
                  uuids, moment, moment),
    )


@st.composite
def contents(draw, officer_id: str, other_officer_id: str, partner_id: str) -> dict[str, Any]:
    """What a record says beyond its place in the chain: valid, or wrong in one or more ways, never unparseable."""
    rtype, body = draw(valid_bodies(officer_id, partner_id))
    body = dict(body)
    for _ in range(draw(st.integers(0, 2))):  # wrong types, missing and unknown fields in the body
        how = draw(st.sampled_from(["replace", "drop", "add"]))
        key = draw(st.sampled_from(sorted(body))) if body else None
        if how == "replace" and key:
            body[key] = draw(json_values)
        elif how == "drop" and key:
            del body[key]
        else:
            body[draw(texts)] = draw(json_values)
    envelope: dict[str, Any] = {"v": 1, "at": draw(timestamps()), "by": officer_id, "type": rtype, "body": body}
    for _ in range(draw(st.integers(0, 2))):  # the envelope around it
        what = draw(st.sampled_from(["v", "at", "by", "type", "body", "drop", "extra"]))
        if what == "v":
            envelope["v"] = draw(st.sampled_from([2, 0, "1", 1.0, True, None, -1, 2**64]))
        elif what == "at":
            envelope["at"] = draw(bad_timestamps)
        elif what == "by":
            envelope["by"] = draw(st.sampled_from([other_officer_id, "", 5, None, officer_id + "\x00", [officer_id]]))
        elif what == "type":
            envelope["type"] = draw(st.one_of(texts, st.sampled_from(["case.open ", "CASE.OPEN", "x" * 5000]),
                                              json_values))
        elif what == "body":
            envelope["body"] = draw(json_values)
        elif what == "drop":
            envelope.pop(draw(st.sampled_from(["v", "at", "by", "type", "body"])), None)
        else:
            envelope[draw(texts.filter(lambda k: k not in ENVELOPE_KEYS))] = draw(json_values)
    return envelope


# --- the bench: one officer with a device, another officer with theirs ------------------------------------------

class Phone(TestPhone):
    """TestPhone's signing, with a device enrolled directly (no HTTP), as in test_convergence."""

    def __init__(self, officer: Officer, key: Ed25519PrivateKey) -> None:
        self.client, self.officer, self.headers, self.key = None, officer, {}, key
        self.device_id = ""
        self.seq, self.prev = 0, ZERO
        self.clock = datetime(2026, 7, 14, 9, 0, tzinfo=SHANGHAI)


@dataclass
class Bench:
    db: Any
    me: Officer
    other: Officer
    partner: Officer
    phone: Phone
    theirs: Phone
    ledgered: list[str] = field(default_factory=list)

    def head(self) -> tuple[int, str]:
        with self.db.session() as s:
            device = s.get(Device, self.phone.device_id)
            return device.head_seq, device.head_hash

    def push(self, records: list[Any]) -> dict[str, Any]:
        with self.db.session() as s:
            return commit_retrying(s, lambda s: push(s, s.get(Officer, self.me.id), records, applier=RecordApplier(),
                                                     now=system_clock()))


@pytest.fixture
def bench(db, officers) -> Bench:
    me, other, partner = officers.make(), officers.make(), officers.make()
    phones = []
    with db.transaction() as s:
        for officer in (me, other):
            phone = Phone(officer, Ed25519PrivateKey.generate())
            phone.device_id = enrol(s, s.get(Officer, officer.id), phone.public_key, "fuzz").id
            phones.append(phone)
    return Bench(db, me, other, partner, *phones)


def header(phone: Phone, **changes: Any) -> dict[str, Any]:
    return {"alg": "EdDSA", "kid": phone.device_id, "typ": "fieldcase-record", **changes}


def sign_raw(phone: Phone, header_bytes: bytes, payload_bytes: bytes, key: Ed25519PrivateKey | None = None) -> str:
    signing_input = f"{b64(header_bytes)}.{b64(payload_bytes)}"
    return f"{signing_input}.{b64((key or phone.key).sign(signing_input.encode('ascii')))}"


# --- hostile submissions -----------------------------------------------------------------------------------------

B64_CHARS = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"  # in base64url's order


def position(draw, n: int) -> int:
    """An index into something of length n whose draw does not depend on n.

    Lengths here follow the database (seq numbers grow digits, heads move): a draw whose bounds moved
    with them would make Hypothesis's replays draw differently, which it refuses as a flaky strategy.
    """
    return draw(st.integers(0, 2**20)) % max(n, 1)


def mutate_text(draw, text: str) -> str:
    """Flip, insert, delete or swap what a transport or an attacker could: the result is never the original."""
    how = draw(st.sampled_from(["flip", "insert", "delete", "swap_segments", "truncate", "append", "case",
                                "non_ascii", "pad", "last_bits", "dots"]))
    # A position in one segment, the segment drawn first: the signature is a tenth of the text, but
    # where a change lands decides whether it is caught as malformed or as a bad signature.
    segments = text.split(".")
    which = draw(st.integers(0, 2)) if len(segments) == 3 else 0
    start = sum(len(seg) + 1 for seg in segments[:which])
    i = min(start + position(draw, len(segments[which])), len(text) - 1)
    if how == "flip":
        out = text[:i] + draw(st.sampled_from(B64_CHARS + ".=+/ \n")) + text[i + 1:]
    elif how == "insert":
        out = text[:i] + draw(st.sampled_from(B64_CHARS + ".=+/ \n\x00")) + text[i:]
    elif how == "delete":
        out = text[:i] + text[i + 1:]
    elif how == "swap_segments":
        h, p, s = text.split(".")
        out = ".".join(draw(st.permutations([h, p, s])))
    elif how == "truncate":
        out = text[:i]
    elif how == "append":
        out = text + draw(st.sampled_from(["\n", " ", "=", "==", ".", ".x", "A"]))
    elif how == "case":
        out = text.swapcase()
    elif how == "non_ascii":
        out = text[:i] + draw(st.sampled_from(["é", "\u200b", "\ufeff", "\ud800", "。"])) + text[i:]
    elif how == "pad":
        h, p, s = text.split(".")
        out = f"{h}.{p}.{s}" + "=" * draw(st.integers(1, 2))
    elif how == "dots":
        out = text.replace(".", draw(st.sampled_from(["..", ". ", ""])), 1)
    elif text[-1] in B64_CHARS:
        # A 64-byte signature is 86 characters: the last one carries 2 bits and 4 unused ones, which a
        # lenient decoder ignores. Setting them spells the same signature another way.
        out = text[:-1] + B64_CHARS[(B64_CHARS.index(text[-1]) & 0b110000) | draw(st.integers(1, 15))]
    else:
        out = text + "A"
    return out


@st.composite
def raw_payloads(draw, good: dict[str, Any]) -> bytes:
    """Payload bytes that are not strict I-JSON, though a lenient parser might take them."""
    text = json.dumps(good, ensure_ascii=False, separators=(",", ":"))
    how = draw(st.sampled_from(["dup_key", "dup_nested", "nan", "inf", "1e999", "huge_int", "not_utf8", "bom",
                                "surrogate", "deep", "trailing", "array", "scalar", "empty", "single_quotes",
                                "comment", "overlong_utf8"]))
    if how == "dup_key":
        return ('{"seq":1,' + text[1:]).encode()
    if how == "dup_nested":
        return text.replace('"body":{', '"body":{"x":1,"x":2,', 1).encode()
    if how in ("nan", "inf"):
        return text.replace('"v":1', '"v":' + ("NaN" if how == "nan" else "-Infinity"), 1).encode()
    if how == "1e999":
        return text.replace('"v":1', '"v":1e999', 1).encode()
    if how == "huge_int":
        return text.replace('"v":1', '"v":' + "9" * 5000, 1).encode()
    if how == "not_utf8":
        return text.encode()[:-1] + draw(st.sampled_from([b"\xff}", b"\xc3}", b"\xed\xa0\x80}", b"\x80}"]))
    if how == "bom":
        return b"\xef\xbb\xbf" + text.encode()
    if how == "surrogate":
        return text.replace('"v":1', '"v":1,"note":"\\ud800x"', 1).encode()
    if how == "deep":
        depth = draw(st.sampled_from([40, 1000, 50_000]))
        return text.replace('"body":', '"body":' + "[" * depth + "0" + "]" * depth + ',"b2":', 1).encode()
    if how == "trailing":
        return text.encode() + draw(st.sampled_from([b"x", b"{}", b",", b"\x00"]))
    if how == "array":
        return json.dumps([good]).encode()
    if how == "scalar":
        return draw(st.sampled_from([b"1", b'"x"', b"null", b"true"]))
    if how == "empty":
        return b""
    if how == "single_quotes":
        return text.replace('"', "'").encode()
    if how == "comment":
        return text.replace("{", "{/* c */", 1).encode()
    return text.replace('"v"', '"\xc0\xa2v"', 1).encode("latin-1", "replace")  # overlong UTF-8 of a quote


def op_of(text: str) -> str:
    return json.loads(base64.urlsafe_b64decode(text.split(".")[1] + "=="))["op"]


@dataclass
class Submission:
    text: Any
    expect: frozenset[str]
    why: str


@st.composite
def hostile(draw, bench: Bench, head: tuple[int, str], chain: list[str], payloads: list[dict[str, Any]]
            ) -> Submission:
    """One submission that must not extend the chain; `expect` is the statuses PROTOCOL §4 allows for it."""
    phone, theirs = bench.phone, bench.theirs
    good = dict(draw(st.sampled_from(payloads))) if payloads else {
        "v": 1, "op": str(uuid.uuid4()), "seq": head[0] + 1, "prev": head[1], "at": "2026-07-14T09:30:05+08:00",
        "by": bench.me.id, "type": "inspection.end", "body": {"inspection_id": str(uuid.uuid4()),
                                                             "outcome": "no_violation"}}
    kind = draw(st.sampled_from(["mutated"] * 3 + ["chain"] * 3 + ["header"] * 2 + ["raw_payload"] * 2 + [
        "other_key", "their_device", "not_a_string", "resend", "copy"]))
    rejected = frozenset({"rejected"})
    if kind == "mutated":
        original = draw(st.sampled_from(chain)) if chain else phone.sign(good)
        text = mutate_text(draw, original)
        if text == original or text in chain:
            return Submission(123, rejected, "mutation changed nothing; an int instead")
        return Submission(text, rejected, "mutated JWS")
    if kind == "header":
        changes = draw(st.sampled_from([
            {"alg": "none"}, {"alg": "HS256"}, {"alg": "ES256"}, {"alg": "eddsa"}, {"alg": None}, {"typ": "JWT"},
            {"typ": None}, {"kid": ""}, {"kid": 5}, {"kid": "dev_nope"}, {"kid": phone.device_id + "\n"},
            {"kid": phone.device_id + "\x00"}, {"kid": "x" * 65}, {"kid": "\ud800"}, {"jku": "https://x.example"},
            {"crit": ["exp"]}, {"jwk": {"kty": "OKP"}}, {"b64": False}, {"cty": "JWT"}]))
        raw_header = json.dumps(header(phone, **changes), separators=(",", ":")).encode()  # \ud800 escaped
        if draw(st.booleans()):  # a duplicated key: a first-wins parser would read alg "none"
            raw_header = b'{"alg":"none",' + raw_header[1:]
        return Submission(sign_raw(phone, raw_header, compact(good)), rejected, f"header {changes}")
    if kind == "raw_payload":
        return Submission(sign_raw(phone, compact(header(phone)), draw(raw_payloads(good))), rejected, "payload")
    if kind == "other_key":
        key = Ed25519PrivateKey.from_private_bytes(draw(st.binary(min_size=32, max_size=32)))
        return Submission(phone.sign(good, key=key), rejected, "another key")
    if kind == "their_device":
        mine_signed_by_them = phone.sign(good, key=theirs.key)
        theirs_by_them = theirs.sign({**good, "by": bench.other.id}, header=header(theirs))
        return Submission(draw(st.sampled_from([mine_signed_by_them, theirs_by_them])), rejected, "their device")
    if kind == "chain":
        change = draw(st.sampled_from(["prev_random", "prev_upper", "prev_short", "prev_newline", "prev_none",
                                       "seq_zero", "seq_negative", "seq_huge", "seq_text", "seq_float", "seq_bool",
                                       "op_bad", "op_upper", "op_newline", "op_missing"]
                                      + ["seq_past", "seq_ahead", "op_reused"] * 3))
        payload = dict(good)
        allowed = rejected
        if change == "op_reused":  # next in the chain, but its op is one the ledger (or this push) already has
            seq, prev = (payloads[-1]["seq"], jws_hash(chain[-1])) if chain else head
            taken = [p["op"] for p in payloads] + [op_of(text) for text in bench.ledgered[-20:]]
            pick = position(draw, len(taken))
            # Nothing is taken yet on a fresh ledger: then a prev that is no record's hash keeps it out.
            payload.update(seq=seq + 1, prev=prev if taken else "f" * 64, op=taken[pick] if taken else good["op"])
        elif change == "prev_random":
            payload["prev"] = draw(st.binary(min_size=32, max_size=32)).hex()
            allowed = frozenset({"rejected", "deferred"})
        elif change.startswith("prev_"):
            payload["prev"] = {"prev_upper": str(payload["prev"]).upper() if payload["prev"] != ZERO else "A" * 64,
                               "prev_short": str(payload["prev"])[:63], "prev_newline": f"{payload['prev']}\n",
                               "prev_none": None}[change]
        elif change == "seq_past":  # a seq the ledger already holds: a fork (or 0 while it is empty)
            payload["seq"] = 1 + position(draw, head[0]) if head[0] else 0
            payload["op"] = str(uuid.uuid4())
        elif change == "seq_ahead":
            payload["seq"] = head[0] + len(chain) + draw(st.integers(2, 50))
            payload["prev"] = draw(st.binary(min_size=32, max_size=32)).hex()
            payload["op"] = str(uuid.uuid4())
            allowed = frozenset({"deferred", "rejected"})  # rejected: another one for its seq came first
        elif change.startswith("seq_"):
            payload["seq"] = {"seq_zero": 0, "seq_negative": -1, "seq_huge": 2**31, "seq_text": "1",
                              "seq_float": 1.0, "seq_bool": True}[change]
        elif change == "op_missing":
            payload.pop("op")
        else:
            op = str(payload["op"])
            payload["op"] = {"op_bad": "not-a-uuid", "op_upper": op.upper(), "op_newline": op + "\n"}[change]
        return Submission(phone.sign(payload), allowed, f"chain {change}")
    if kind == "not_a_string":
        nested: Any = "x"
        for _ in range(draw(st.integers(0, 900))):
            nested = [nested]
        value = draw(st.one_of(json_values, st.just(nested), st.just({"jws": nested})))
        if isinstance(value, str):
            value = [value]
        return Submission(value, rejected, "not a string")
    resent = position(draw, len(bench.ledgered))
    if kind == "resend" and bench.ledgered:
        return Submission(bench.ledgered[resent], frozenset({"duplicate"}), "resent")
    if kind == "copy" and chain:
        return Submission(draw(st.sampled_from(chain)), frozenset({"duplicate"}), "the same JWS twice")
    return Submission(None, rejected, "null")


# --- the property ------------------------------------------------------------------------------------------------

def check_result(result: dict[str, Any]) -> None:
    assert result["status"] in STATUSES, result
    code = result.get("code")
    if result["status"] == "rejected":
        assert code in REJECTED_CODES, result
    elif result["status"] == "invalid":
        assert code in INVALID_CODES, result
    elif result["status"] == "duplicate":
        assert code is None or code in INVALID_CODES, result
    else:
        assert code is None, result
    assert set(result) <= {"op", "device", "seq", "status", "code", "detail", "refs", "flags", "first_status",
                           "caught_up"}, result
    json.dumps(result, allow_nan=False)  # the answer itself is strict JSON


def check_chain(bench: Bench) -> None:
    """The device's ledger rows are an unbroken hash chain from seq 1, and the head is its last row."""
    with bench.db.session() as s:
        rows = s.execute(select(LedgerRecord.seq, LedgerRecord.prev, LedgerRecord.hash, LedgerRecord.jws)
                         .where(LedgerRecord.device_id == bench.phone.device_id).order_by(LedgerRecord.seq)).all()
        device = s.get(Device, bench.phone.device_id)
        theirs = s.get(Device, bench.theirs.device_id)
        assert (theirs.head_seq, theirs.head_hash) == (0, ZERO)
    prev = ZERO
    for n, row in enumerate(rows, start=1):
        assert (row.seq, row.prev) == (n, prev), (n, row)
        assert row.hash == jws_hash(row.jws)
        prev = row.hash
    assert (device.head_seq, device.head_hash) == (len(rows), prev)


def ledger_counts(bench: Bench, hashes: set[str]) -> dict[str, int]:
    with bench.db.session() as s:
        found = s.scalars(select(LedgerRecord.hash).where(LedgerRecord.hash.in_(sorted(hashes)))).all() if hashes \
            else []
        return {h: found.count(h) for h in hashes}


def ledger_total(bench: Bench) -> int:
    with bench.db.session() as s:
        return len(s.scalars(select(LedgerRecord.id)).all())


@st.composite
def batches(draw, bench: Bench) -> tuple[list[str], list[Submission]]:
    head = bench.head()
    chain: list[str] = []
    payloads: list[dict[str, Any]] = []
    seq, prev = head
    for _ in range(draw(st.integers(0, 4))):
        envelope = draw(contents(bench.me.id, bench.other.id, bench.partner.id))
        payload = {"op": str(uuid.uuid4()), "seq": seq + 1, "prev": prev, **envelope}
        text = bench.phone.sign(payload)
        chain.append(text)
        payloads.append(payload)
        seq, prev = seq + 1, jws_hash(text)
    hostile_ones = draw(st.lists(hostile(bench, head, chain, payloads), min_size=1, max_size=6))
    return chain, hostile_ones


@pytest.mark.slow
@FUZZ
@given(data=st.data())
def test_any_mutation_is_answered_as_documented_and_only_authentic_in_chain_records_reach_the_ledger(bench, data):
    chain, hostile_ones = data.draw(batches(bench))
    submissions = [Submission(text, frozenset(IN_LEDGER), "in chain") for text in chain] + hostile_ones
    order = data.draw(st.permutations(range(len(submissions))))
    sent = [submissions[i] for i in order]
    # The same JWS twice in one push: the first copy sent gets the outcome, the later ones `duplicate`.
    firsts: set[str] = set()
    for submission in sent:
        if submission.text in chain:
            submission.expect = frozenset({"duplicate"}) if submission.text in firsts else frozenset(IN_LEDGER)
            firsts.add(submission.text)
    key = bench.phone.key.public_key()
    texts_sent = {s.text for s in sent if isinstance(s.text, str)}
    before_total = ledger_total(bench)
    before = ledger_counts(bench, {jws_hash(t) for t in texts_sent if t.isascii()})

    answer = bench.push([s.text for s in sent])

    results = answer["results"]
    assert len(results) == len(sent), results
    for submission, result in zip(sent, results, strict=True):
        check_result(result)
        assert result["status"] in submission.expect, (submission.why, submission.text, result)
        event(f"{submission.why.split(' ')[0]}: {result['status']}/{result.get('code')}")
    after = ledger_counts(bench, set(before))
    for submission in sent:
        text = submission.text
        if not isinstance(text, str) or not text.isascii():
            continue
        h = jws_hash(text)
        if text in chain:
            assert after[h] == 1, ("an authentic record next in its chain must be ledgered once", text)
        elif not authentic(text, key):
            assert after[h] == before[h] == 0, ("an inauthentic record reached the ledger", submission.why, text)
        else:
            assert after[h] == before[h], (submission.why, text)
    assert ledger_total(bench) == before_total + len(chain)
    check_chain(bench)
    bench.ledgered.extend(chain)


# --- the parser and the content loader, directly -----------------------------------------------------------------

def _record_texts() -> st.SearchStrategy[Any]:
    phone = Phone(Officer(id="off_fuzz"), Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
    phone.device_id = "dev_fuzz"
    good = phone.sign({"v": 1, "op": "6d3c0f5e-3c1b-4c39-9a57-0d5f0b1f2c11", "seq": 1, "prev": ZERO,
                       "at": "2026-07-14T09:30:05+08:00", "by": "off_fuzz", "type": "case.open",
                       "body": {"client_case_id": "6d3c0f5e-3c1b-4c39-9a57-0d5f0b1f2c12", "institution": CENTRE}})
    segments = st.text(alphabet=B64_CHARS + "=", max_size=60)

    @st.composite
    def mutated(draw) -> str:
        return mutate_text(draw, good)

    @st.composite
    def resigned(draw) -> str:
        return sign_raw(phone, compact(header(phone)), draw(raw_payloads(json.loads(
            base64.urlsafe_b64decode(good.split(".")[1] + "==")))))

    return st.one_of(
        st.just(good), mutated(), resigned(), st.text(max_size=200),
        st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=4),
        st.builds(lambda a, b, c: f"{a}.{b}.{c}", segments, segments, segments),
        st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
        json_values, st.just("a" * (256 * 1024 + 1)), st.just("." * 10), st.just(".."),
    )


@DIRECT
@example(text="eyJhbGciOiJub25lIn0.e30.")
@example(text=12345)
@given(text=_record_texts())
def test_parse_raises_only_record_rejected(text):
    try:
        parsed = parse(text)
    except RecordRejected as exc:
        assert exc.code in {"malformed", "bad_signature"}
        assert isinstance(exc.detail, str) and len(exc.detail) <= 500
    else:
        assert isinstance(parsed.payload, dict) and parsed.hash == jws_hash(text)


def _deep(depth: int) -> Any:
    nested: Any = {"summary": "x"}
    for _ in range(depth):
        nested = {"fields": nested}
    return nested


@st.composite
def payload_dicts(draw) -> dict[str, Any]:
    if draw(st.booleans()):
        envelope = draw(contents("off_a", "off_b", "off_c"))
        return {"op": str(uuid.uuid4()), "seq": 1, "prev": ZERO, **envelope}
    return draw(st.dictionaries(st.one_of(st.sampled_from(sorted(ENVELOPE_KEYS)), texts), json_values, max_size=9))


@DIRECT
@example(payload={"v": 1, "at": "9999-12-31T23:59:59-23:59", "by": "o", "type": "x", "body": {}})
@example(payload={"v": 1, "at": "2026-07-14T09:30:05+08:00", "by": "o", "type": "x" * 10_000, "body": {}})
@given(payload=payload_dicts())
def test_load_content_raises_only_content_error(payload):
    check_load_content(payload)


@pytest.mark.parametrize("where", ["fields", "institution", "extra", "envelope"])
def test_load_content_of_a_payload_nested_thousands_deep_raises_only_content_error(where):
    """Deeper than Python's recursion limit: nothing in the loader may recurse over the value itself."""
    body: dict[str, Any] = {"case": {"id": "c"}, "base_version": 1, "fields": {"summary": "x"}}
    payload: dict[str, Any] = {"v": 1, "at": "2026-07-14T09:30:05+08:00", "by": "o", "type": "case.update",
                               "body": body}
    if where == "fields":
        body["fields"] = _deep(3000)
    elif where == "institution":
        payload["type"] = "case.open"
        payload["body"] = {"client_case_id": str(uuid.uuid4()), "institution": _deep(3000)}
    elif where == "extra":
        body["extra"] = _deep(3000)
    else:
        payload["by"] = _deep(3000)
    check_load_content(payload)


def check_load_content(payload: dict[str, Any]) -> None:
    try:
        at, by, rtype, body = load_content(payload)
    except ContentError as exc:
        assert exc.code in INVALID_CODES
        assert isinstance(exc.detail, str)
    else:
        assert at.tzinfo is not None and 1900 <= at.astimezone(UTC).year <= 2999
        assert isinstance(by, str) and isinstance(rtype, str) and isinstance(body, dict)


# --- through the HTTP API ----------------------------------------------------------------------------------------

HTTP = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture
def pusher(officers) -> dict[str, str]:
    return officers.headers(officers.make())


@HTTP
@given(body=st.one_of(json_values, st.fixed_dictionaries({"records": json_values}),
                      st.fixed_dictionaries({"records": st.lists(st.one_of(texts, json_values), max_size=5)})))
def test_any_json_body_pushed_over_http_gets_a_documented_answer(client, pusher, body):
    """Whatever JSON arrives, the answer is 200 with one documented result per record, or a JSON error."""
    headers = pusher
    r = client.post("/api/v1/sync/push", json=body, headers=headers)
    assert r.status_code in (200, 400, 413, 422), (r.status_code, r.get_data()[:300])
    assert r.mimetype == "application/json"
    if r.status_code == 200:
        assert len(r.json["results"]) == len(body["records"])
        for result in r.json["results"]:
            check_result(result)
            assert result["status"] == "rejected"
    else:
        assert set(r.json) <= {"code", "status", "message", "errors"} and r.json["code"] == r.status_code


# --- what the fuzzer once found, kept as plain examples ----------------------------------------------------------

@pytest.mark.parametrize("where", ["op", "prev", "kid", "signature", "op_unicode_digits"])
def test_given_a_chain_field_with_a_trailing_newline_then_the_record_is_rejected_malformed(bench, where):
    """`$` in a regular expression also matches before a final newline: "<uuid>\\n" passed as a UUID and
    reached a 36-character column (an error on PostgreSQL), and a signature with a newline after it
    verified as the same signature under another record hash."""
    seq, prev = bench.head()
    payload = {"v": 1, "op": str(uuid.uuid4()), "seq": seq + 1, "prev": prev, "at": "2026-07-14T09:30:05+08:00",
               "by": bench.me.id, "type": "inspection.end",
               "body": {"inspection_id": str(uuid.uuid4()), "outcome": "no_violation"}}
    if where == "op":
        text = bench.phone.sign({**payload, "op": payload["op"] + "\n"})
    elif where == "op_unicode_digits":
        text = bench.phone.sign({**payload, "op": "١" * 8 + payload["op"][8:]})
    elif where == "prev":
        text = bench.phone.sign({**payload, "prev": prev + "\n"})
    elif where == "kid":
        text = sign_raw(bench.phone, json.dumps(header(bench.phone, kid=bench.phone.device_id + "\n")).encode(),
                        compact(payload))
    else:
        text = bench.phone.sign(payload) + "\n"
    (result,) = bench.push([text])["results"]
    assert (result["status"], result["code"]) == ("rejected", "malformed"), result
    assert bench.head() == (seq, prev)
    check_chain(bench)


def test_given_two_records_for_one_seq_past_a_gap_in_one_push_then_the_first_is_held_and_the_second_is_a_fork(
        bench):
    """Found by the fuzzer on PostgreSQL: the second tried to delete the first's row before it was ever written,
    and the push failed as a whole. Within one push the first record for a seq wins, as it does in the chain."""
    seq, prev = bench.head()
    records = [bench.phone.sign({"v": 1, "op": str(uuid.uuid4()), "seq": seq + 3, "prev": "ab" * 32,
                                 "at": "2026-07-14T09:30:05+08:00", "by": bench.me.id, "type": "inspection.end",
                                 "body": {"inspection_id": str(uuid.uuid4()), "outcome": "no_violation"}})
               for _ in range(2)]
    answer = bench.push(records)
    assert [(r["status"], r.get("code")) for r in answer["results"]] == [("deferred", None), ("rejected", "fork")]
    # Across pushes the later record still replaces the held one (PROTOCOL §4 Recovery).
    assert [r["status"] for r in bench.push([records[1]])["results"]] == ["deferred"]
    assert bench.head() == (seq, prev)
    check_chain(bench)
