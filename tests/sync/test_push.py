"""PROTOCOL §4, status by status: given a phone with these records, when it pushes, the server answers so."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select

from backend.core.models import Case, ChainGap, DeferredRecord, LedgerRecord, QuarantinedRecord
from tests.phones import TestPhone, b64, compact, jws_hash, uid

CENTRE = {"name": "西湖区明日之星培训中心", "region": "330106", "address": "文三路 199 号"}




def ledger_count(db) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(LedgerRecord))


def quarantined(db) -> list[QuarantinedRecord]:
    with db.session() as s:
        return list(s.scalars(select(QuarantinedRecord).order_by(QuarantinedRecord.id)))


def test_a_field_day_is_applied_in_order_and_heads_follow(phone, zhang, li, client, officers):
    cid, opened = phone.open_case(CENTRE)
    iid, started = phone.start(cid, [zhang.id, li.id])
    found = phone.finding(iid, "unlicensed")
    eid, photo = phone.evidence(iid)
    ended = phone.end(iid)
    answer = phone.push([opened, started, found, photo, ended])
    assert [r["status"] for r in answer["results"]] == ["applied"] * 5
    assert [r["seq"] for r in answer["results"]] == [1, 2, 3, 4, 5]
    assert answer["heads"][phone.device_id] == {"seq": 5, "hash": jws_hash(ended)}
    case_id = answer["results"][0]["refs"]["case_id"]
    assert answer["results"][1]["refs"] == {"case_id": case_id, "inspection_id": iid}
    assert answer["results"][3]["refs"]["evidence_id"] == eid

    case = client.get(f"/api/v1/cases/{case_id}", headers=phone.headers).json
    assert case["institution"]["name"] == CENTRE["name"] and case["institution"]["provisional"] is True
    (inspection,) = case["inspections"]
    assert inspection["outcome"] == "violation_found" and inspection["flags"] == []
    assert [f["category"] for f in inspection["findings"]] == ["unlicensed"]
    assert case["evidence"][0]["status"] == "declared"


def test_records_are_handled_in_seq_order_whatever_the_batch_order(phone, zhang, li):
    cid, opened = phone.open_case(CENTRE)
    iid, started = phone.start(cid, [zhang.id, li.id])
    ended = phone.end(iid)
    answer = phone.push([ended, started, opened])
    assert [(r["seq"], r["status"]) for r in answer["results"]] == [(3, "applied"), (2, "applied"), (1, "applied")]


def test_the_same_push_twice_is_duplicate_with_the_first_outcome(phone, db):
    cid, opened = phone.open_case(CENTRE)
    bad = phone.end(uid())
    slip = phone.finding(uid(), "not-a-category")
    first = phone.push([opened, bad, slip])
    again = phone.push([opened, bad, slip])
    assert [r["status"] for r in first["results"]] == ["applied", "invalid", "applied"]
    assert [r["status"] for r in again["results"]] == ["duplicate", "duplicate", "duplicate"]
    assert [r.get("first_status") for r in again["results"]] == ["applied", "invalid", "applied"]
    assert again["results"][0]["refs"] == first["results"][0]["refs"]
    assert again["results"][1]["code"] == "unknown_inspection"
    assert again["results"][2]["refs"]["needs_correction"][0]["code"] == "unknown_category"  # what needs correcting
    assert ledger_count(db) == 3


def test_content_that_cannot_be_applied_is_ledgered_as_invalid(phone, db):
    records = [
        phone.record("inspection.end", {"inspection_id": uid(), "outcome": "no_violation"}),
        phone.record("inspection.start", {"inspection_id": uid(), "case": {"client_case_id": uid()},
                                          "officers": ["x"]}),
        phone.record("case.open", {"client_case_id": "NOT-A-UUID", "institution": CENTRE}),
        phone.record("teleport", {}),
        phone.record("record.correct", {"op": uid(), "fields": {"category": "unlicensed"}, "reason": "拼写"}),
    ]
    answer = phone.push(records)
    assert [(r["status"], r["code"]) for r in answer["results"]] == [
        ("invalid", "unknown_inspection"), ("invalid", "unknown_case"), ("invalid", "bad_body"),
        ("invalid", "unknown_type"), ("invalid", "unknown_record")]
    assert all(r["detail"] for r in answer["results"])
    assert ledger_count(db) == 5
    assert answer["heads"][phone.device_id]["seq"] == 5


def test_slips_that_can_be_corrected_are_applied_flagged_not_invalid(phone, db):
    """docs/protocol.md, "Corrections": the records chained after a slip must not be orphaned by it."""
    records = [
        phone.record("inspection.finding", {"inspection_id": uid(), "finding_id": uid(), "category": "nope",
                                            "description": "x", "evidence": []}),
        phone.record("case.open", {"client_case_id": uid(),
                                   "institution": {**CENTRE, "credit_code": "91330100799655058C"}}),
        phone.record("case.open", {"client_case_id": uid(), "institution": {"name": "x", "region": "999999"}}),
        phone.record("case.open", {"client_case_id": uid(), "institution": {"id": "ins_nowhere"}}),
    ]
    answer = phone.push(records)
    assert [r["status"] for r in answer["results"]] == ["applied"] * 4
    assert all("needs_correction" in r["flags"] for r in answer["results"])
    assert [[n["code"] for n in r["refs"]["needs_correction"]] for r in answer["results"]] == [
        ["unknown_category"], ["bad_credit_code"], ["unknown_region"], ["unknown_institution"]]
    assert all(n["detail"] for r in answer["results"] for n in r["refs"]["needs_correction"])


def test_a_record_signed_by_another_key_is_rejected_and_quarantined(phone, db):
    forged = phone.sign(phone.payload("case.open", {"client_case_id": uid(), "institution": CENTRE}),
                        key=Ed25519PrivateKey.generate())
    answer = phone.push([forged])
    (result,) = answer["results"]
    assert (result["status"], result["code"]) == ("rejected", "bad_signature")
    assert ledger_count(db) == 0
    (q,) = quarantined(db)
    assert q.code == "bad_signature" and q.jws == forged and q.device_id == phone.device_id
    assert answer["heads"][phone.device_id] == {"seq": 0, "hash": "0" * 64}


def test_a_tampered_payload_is_rejected(phone, db):
    good = phone.record("case.open", {"client_case_id": uid(), "institution": CENTRE})
    header, payload, signature = good.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    body["body"]["institution"]["name"] = "别的机构"
    tampered = f"{header}.{b64(compact(body))}.{signature}"
    assert phone.push([tampered])["results"][0]["code"] == "bad_signature"
    assert ledger_count(db) == 0


@pytest.mark.parametrize("text, code", [
    ("not a jws", "malformed"),
    ("a.b", "malformed"),
    (12345, "malformed"),
    ("eyJhbGciOiJub25lIn0.e30.", "malformed"),
])
def test_garbage_is_rejected_as_malformed(phone, db, text, code):
    (result,) = phone.push([text])["results"]
    assert (result["status"], result["code"]) == ("rejected", code)
    assert ledger_count(db) == 0


def test_headers_other_than_eddsa_fieldcase_record_are_malformed(phone):
    payload = phone.payload("case.open", {"client_case_id": uid(), "institution": CENTRE})
    for header in ({"alg": "HS256", "kid": phone.device_id, "typ": "fieldcase-record"},
                   {"alg": "EdDSA", "kid": phone.device_id, "typ": "JWT"},
                   {"alg": "EdDSA", "kid": phone.device_id, "typ": "fieldcase-record", "jku": "http://x"}):
        (result,) = phone.push([phone.sign(payload, header=header)])["results"]
        assert result["code"] == "malformed", header


def test_given_a_record_signed_with_alg_ed25519_of_rfc_9864_when_pushed_then_it_is_applied_like_eddsa(phone, zhang, li):
    """RFC 9864 names the same signature over the same Ed25519 key `Ed25519`; a phone may use either name."""
    cid, opened = phone.open_case(CENTRE)
    started = phone.sign(phone.payload("inspection.start", {"inspection_id": uid(), "case": {"client_case_id": cid},
                                                            "officers": [zhang.id, li.id]}),
                         header={"alg": "Ed25519", "kid": phone.device_id, "typ": "fieldcase-record"})
    phone.seq, phone.prev = 2, jws_hash(started)
    _, another = phone.open_case({**CENTRE, "name": "另一家培训中心"})
    answer = phone.push([opened, started, another])
    assert [(r["seq"], r["status"]) for r in answer["results"]] == [(1, "applied"), (2, "applied"), (3, "applied")]
    assert answer["heads"][phone.device_id] == {"seq": 3, "hash": jws_hash(another)}
    forged = phone.sign(phone.payload("case.open", {"client_case_id": uid(), "institution": CENTRE}),
                        header={"alg": "Ed25519", "kid": phone.device_id, "typ": "fieldcase-record"},
                        key=Ed25519PrivateKey.generate())
    assert phone.push([forged])["results"][0]["code"] == "bad_signature"


@pytest.mark.parametrize("alg", ["ed25519", "ED25519", "Ed25519 ", "eddsa", "Ed448", "ES256", "none", "", None,
                                 ["EdDSA"], {"EdDSA": True}])
def test_given_a_record_whose_alg_is_neither_eddsa_nor_ed25519_when_pushed_then_it_is_rejected_malformed(
        phone, db, alg):
    payload = phone.payload("case.open", {"client_case_id": uid(), "institution": CENTRE})
    text = phone.sign(payload, header={"alg": alg, "kid": phone.device_id, "typ": "fieldcase-record"})
    (result,) = phone.push([text])["results"]
    assert (result["status"], result["code"]) == ("rejected", "malformed")
    assert result["detail"] == "header alg must be EdDSA or Ed25519 (RFC 9864), or SM2SM3"
    assert ledger_count(db) == 0 and quarantined(db)[0].code == "malformed"


B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def another_spelling(segment: str) -> str:
    """The same bytes, spelled with the unused low bits of the last character set (a lenient decoder ignores them)."""
    unused = {2: 0b1111, 3: 0b11}[len(segment) % 4]
    other = segment[:-1] + B64URL_ALPHABET[B64URL_ALPHABET.index(segment[-1]) | unused]
    pad = "=" * (-len(segment) % 4)
    assert other != segment
    assert base64.urlsafe_b64decode(other + pad) == base64.urlsafe_b64decode(segment + pad)
    return other


def spelled_with_unused_bits(obj: dict) -> str:
    """base64url of the compact JSON of obj, made a length whose last character has unused bits, then set."""
    text = compact(obj)
    while len(text) % 3 == 0:  # a whole number of 3-byte groups leaves no unused bits: add JSON whitespace
        text = text[:-1] + b" }"
    return another_spelling(b64(text))


@pytest.mark.parametrize("part", ["header", "payload", "signature"])
def test_given_a_record_part_whose_base64url_has_unused_bits_set_when_pushed_then_it_is_rejected_malformed(
        phone, db, part):
    """One spelling per signed record: otherwise one record has several texts, hashes and chain links. For the
    header and payload the phone signed that very spelling: it is refused all the same, as the package verifier
    refuses it."""
    header = {"alg": "EdDSA", "kid": phone.device_id, "typ": "fieldcase-record"}
    payload = phone.payload("case.open", {"client_case_id": uid(), "institution": CENTRE})
    segments = {"header": b64(compact(header)), "payload": b64(compact(payload))}
    if part != "signature":
        segments[part] = spelled_with_unused_bits(header if part == "header" else payload)
    signing_input = f"{segments['header']}.{segments['payload']}"
    signature = b64(phone.key.sign(signing_input.encode()))
    text = f"{signing_input}.{another_spelling(signature) if part == 'signature' else signature}"
    (result,) = phone.push([text])["results"]
    assert (result["status"], result["code"]) == ("rejected", "malformed")
    assert result["detail"] == (f"the {part} is not canonical base64url (the unused bits of its last character are "
                                "not zero)")
    assert ledger_count(db) == 0
    # The canonical spelling of the same record is what the phone sends: applied.
    assert phone.push([phone.sign(payload)])["results"][0]["status"] == "applied"


@pytest.mark.parametrize("spell, why", [
    (lambda seg: seg + "==", "not base64url (only A-Z a-z 0-9 - _, no padding)"),
    (lambda seg: seg.replace("-", "+").replace("_", "/") if "-" in seg or "_" in seg else seg + "+",
     "not base64url (only A-Z a-z 0-9 - _, no padding)"),
    (lambda seg: seg + "AAA", "not base64url (its length is one more than a multiple of 4)"),  # 89 characters
], ids=["padded", "standard-alphabet", "length"])
def test_given_a_record_signature_spelled_outside_base64url_when_pushed_then_it_is_rejected_malformed(phone, spell,
                                                                                                  why):
    record = phone.sign(phone.payload("case.open", {"client_case_id": uid(), "institution": CENTRE}))
    head, body, signature = record.split(".")
    (result,) = phone.push([f"{head}.{body}.{spell(signature)}"])["results"]
    assert (result["status"], result["code"], result["detail"]) == ("rejected", "malformed", f"the signature is {why}")


def test_unknown_device_and_another_officers_device(phone, client, officers, li):
    payload = phone.payload("case.open", {"client_case_id": uid(), "institution": CENTRE})
    unknown = phone.sign(payload, header={"alg": "EdDSA", "kid": "dev_nope", "typ": "fieldcase-record"})
    assert phone.push([unknown])["results"][0]["code"] == "unknown_device"
    mine = phone.record("case.open", {"client_case_id": uid(), "institution": CENTRE})
    (result,) = phone.push([mine], headers=officers.headers(li))["results"]
    assert (result["status"], result["code"]) == ("rejected", "not_owner")


def test_a_revoked_device_is_refused_but_its_records_stay(phone, client, db):
    cid, opened = phone.open_case(CENTRE)
    assert phone.push([opened])["results"][0]["status"] == "applied"
    r = client.post(f"/api/v1/devices/{phone.device_id}/revoke", headers=phone.headers)
    assert r.status_code == 200 and r.json["status"] == "revoked"
    iid, started = phone.start(cid, [phone.officer.id])
    assert phone.push([started])["results"][0]["code"] == "device_revoked"
    assert ledger_count(db) == 1


def test_a_reused_op_is_rejected(phone, db):
    op = uid()
    first = phone.record("case.open", {"client_case_id": uid(), "institution": CENTRE}, op=op)
    second = phone.record("case.open", {"client_case_id": uid(), "institution": CENTRE}, op=op)
    answer = phone.push([first, second])
    assert [r["status"] for r in answer["results"]] == ["applied", "rejected"]
    assert answer["results"][1]["code"] == "op_reused"
    assert ledger_count(db) == 1


def test_a_fork_is_rejected(phone, db):
    _, first = phone.open_case(CENTRE)
    phone.push([first])
    other = phone.sign(phone.payload("case.open", {"client_case_id": uid(), "institution": CENTRE},
                                     seq=1, prev="0" * 64))
    (result,) = phone.push([other])["results"]
    assert (result["status"], result["code"]) == ("rejected", "fork")


def test_a_broken_chain_is_rejected(phone, db):
    _, first = phone.open_case(CENTRE)
    phone.push([first])
    broken = phone.sign(phone.payload("case.open", {"client_case_id": uid(), "institution": CENTRE},
                                      seq=2, prev="ab" * 32))
    (result,) = phone.push([broken])["results"]
    assert (result["status"], result["code"]) == ("rejected", "chain_broken")
    assert ledger_count(db) == 1


def test_records_past_a_gap_are_deferred_then_applied_when_it_fills(phone, zhang, li, db):
    cid, opened = phone.open_case(CENTRE)
    iid, started = phone.start(cid, [zhang.id, li.id])
    found = phone.finding(iid)
    ended = phone.end(iid)
    answer = phone.push([found, ended])
    assert [r["status"] for r in answer["results"]] == ["deferred", "deferred"]
    assert answer["heads"][phone.device_id]["seq"] == 0
    status = phone.client.get(f"/api/v1/devices/{phone.device_id}", headers=phone.headers).json
    assert status["deferred"] == {"count": 2, "missing": [{"first": 1, "last": 2}]}
    # Pushing the held records again changes nothing.
    assert [r["status"] for r in phone.push([found])["results"]] == ["deferred"]

    answer = phone.push([opened, started])
    sent = answer["results"][:2]
    caught_up = answer["results"][2:]
    assert [r["status"] for r in sent] == ["applied", "applied"]
    assert [(r["seq"], r["status"], r.get("caught_up")) for r in caught_up] == [(3, "applied", True),
                                                                                 (4, "applied", True)]
    assert answer["heads"][phone.device_id] == {"seq": 4, "hash": jws_hash(ended)}
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(DeferredRecord)) == 0
    assert ledger_count(db) == 4


def test_after_a_rejection_the_phone_rechains_and_the_held_records_are_superseded(phone, db):
    _, one = phone.open_case(CENTRE)
    phone.push([one])
    # Record 2 goes bad (signed with the wrong key); 3 and 4 chain on it and are held.
    body2 = {"client_case_id": uid(), "institution": CENTRE}
    bad_two = phone.sign(phone.payload("case.open", body2), key=Ed25519PrivateKey.generate())
    phone.seq, phone.prev = 2, jws_hash(bad_two)
    op3, op4 = uid(), uid()
    three = phone.record("case.open", {"client_case_id": uid(), "institution": CENTRE}, op=op3)
    four = phone.record("case.open", {"client_case_id": uid(), "institution": CENTRE}, op=op4)
    answer = phone.push([bad_two, three, four])
    assert [r["status"] for r in answer["results"]] == ["rejected", "deferred", "deferred"]
    # PROTOCOL §4 Recovery: drop 2, re-number 3 and 4 as 2 and 3 on the server's head, re-sign, push.
    phone.seq, phone.prev = 1, answer["heads"][phone.device_id]["hash"]
    new_two = phone.record("case.open", json.loads(base64.urlsafe_b64decode(three.split(".")[1] + "=="))["body"],
                           op=op3)
    new_three = phone.record("case.open", json.loads(base64.urlsafe_b64decode(four.split(".")[1] + "=="))["body"],
                             op=op4)
    answer = phone.push([new_two, new_three])
    assert [(r["seq"], r["status"]) for r in answer["results"]] == [(2, "applied"), (3, "applied")]
    assert ledger_count(db) == 3
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(DeferredRecord)) == 0
    codes = sorted(q.code for q in quarantined(db))
    assert codes == ["bad_signature", "chain_broken", "superseded"]


def test_a_reviewer_releases_a_gap_that_will_never_fill(phone, client, officers, db, zhang):
    phone.seq, phone.prev = 2, "cd" * 32  # records 1 and 2 were lost with the phone's old storage
    _, three = phone.open_case(CENTRE)
    assert phone.push([three])["results"][0]["status"] == "deferred"
    officer_try = client.post(f"/api/v1/devices/{phone.device_id}/gaps/release", json={"reason": "phone wiped"},
                              headers=phone.headers)
    assert officer_try.status_code == 403
    reviewer = officers.make(region="330106", roles=("officer", "reviewer"))
    r = client.post(f"/api/v1/devices/{phone.device_id}/gaps/release", json={"reason": "phone wiped"},
                    headers=officers.headers(reviewer))
    assert r.status_code == 200, r.json
    assert r.json["released_gaps"] == 1 and r.json["head"]["seq"] == 3
    assert [a["status"] for a in r.json["applied"]] == ["applied"]
    with db.session() as s:
        (gap,) = s.scalars(select(ChainGap))
        assert (gap.first_seq, gap.last_seq, gap.released_by) == (1, 2, reviewer.id)
        assert s.scalar(select(func.count()).select_from(Case)) == 1


def test_held_records_are_released_after_the_timeout(app, phone, db):
    phone.seq, phone.prev = 1, "cd" * 32
    _, two = phone.open_case(CENTRE)
    assert phone.push([two])["results"][0]["status"] == "deferred"
    with db.transaction() as s:
        for row in s.scalars(select(DeferredRecord)):
            row.received_at -= timedelta(days=8)
    _, three = phone.open_case(CENTRE)
    answer = phone.push([three])
    assert answer["heads"][phone.device_id]["seq"] == 3
    assert [r["status"] for r in answer["results"]] == ["applied", "applied"]


def test_limits_answer_413(phone, client):
    r = client.post("/api/v1/sync/push", json={"records": ["x"] * 501}, headers=phone.headers)
    assert r.status_code == 413 and r.json["code"] == 413
    huge = "a" * (257 * 1024)
    (result,) = phone.push([huge])["results"]
    assert result["code"] == "malformed" and "larger" in result["detail"]
    r = client.post("/api/v1/sync/push", json={"records": "nope"}, headers=phone.headers)
    assert r.status_code == 422


def test_quarantine_is_bounded_per_device(settings, officers, zhang):
    from dataclasses import replace

    from backend.bootstrap import create_app

    small = create_app(replace(settings, quarantine_per_device=5))
    try:
        client = small.test_client()
        phone = TestPhone(client, zhang, officers.headers(zhang))
        forged = [phone.sign(phone.payload("case.open", {"client_case_id": uid(), "institution": CENTRE}),
                             key=Ed25519PrivateKey.generate()) for _ in range(8)]
        phone.push(forged[:3])
        phone.push(forged[3:])
        db = small.extensions["fieldcase"].db
        kept = quarantined(db)
        assert len(kept) == 5
        assert [q.jws for q in kept] == forged[3:]
        status = client.get(f"/api/v1/devices/{phone.device_id}", headers=phone.headers).json
        assert status["quarantined"] == 8
    finally:
        small.extensions["fieldcase"].db.dispose()


def test_a_nul_in_a_signed_body_is_invalid_and_an_escaped_backslash_before_u0000_is_text(phone, zhang, li, client):
    """PostgreSQL text cannot hold U+0000. JSON carries it only as the escape `\\u0000`; a record whose text
    has `\\\\u0000` (a backslash, then the letters) holds ordinary text and is applied unchanged."""
    cid, opened = phone.open_case(CENTRE)
    iid, started = phone.start(cid, [zhang.id, li.id])
    with_nul = phone.record("inspection.finding", {"inspection_id": iid, "finding_id": uid(), "category": "unlicensed",
                                                  "description": "现场\x00发现", "evidence": []})
    fid = uid()
    path_like = phone.record("inspection.finding", {"inspection_id": iid, "finding_id": fid, "category": "unlicensed",
                                                   "description": "文件 C:\\u0000 现场", "evidence": []})
    answer = phone.push([opened, started, with_nul, path_like])
    assert [(r["status"], r.get("code")) for r in answer["results"]] == [
        ("applied", None), ("applied", None), ("invalid", "bad_body"), ("applied", None)]
    case = client.get(f"/api/v1/cases/{answer['results'][0]['refs']['case_id']}", headers=phone.headers).json
    (finding,) = case["inspections"][0]["findings"]
    assert finding["id"] == fid and finding["description"] == "文件 C:\\u0000 现场"


def test_lone_surrogates_and_deep_nesting_in_a_signed_payload_are_malformed(phone, db):
    """I-JSON: the checks run whenever the payload's text could break them (an escape, enough brackets)."""
    cid, opened = phone.open_case(CENTRE)
    escaped = json.dumps({**phone.payload("case.open", {"client_case_id": uid(), "institution": CENTRE}),
                          "note": "\ud800"}, separators=(",", ":"))  # ASCII: the surrogate travels as `\ud800`
    signing_input = f"{b64(compact({'alg': 'EdDSA', 'kid': phone.device_id, 'typ': 'fieldcase-record'}))}." \
                    f"{b64(escaped.encode())}"
    surrogate = f"{signing_input}.{b64(phone.key.sign(signing_input.encode()))}"
    deep: dict = {}
    for _ in range(40):
        deep = {"d": deep}
    nested = phone.sign({**phone.payload("case.open", {"client_case_id": uid(), "institution": CENTRE}),
                         "note": deep})
    answer = phone.push([opened, surrogate, nested])
    assert answer["results"][0]["status"] == "applied"
    assert [(r["status"], r["code"]) for r in answer["results"][1:]] == [("rejected", "malformed")] * 2
    assert "surrogate" in answer["results"][1]["detail"] and "deeper" in answer["results"][2]["detail"]


def test_given_a_record_held_under_a_laxer_parser_when_its_gap_fills_then_it_is_quarantined_not_a_crash(phone, db):
    """A record held before the parser refused odd base64url spellings cannot be ledgered once its turn comes:
    it is dropped to the quarantine with the parser's code, and what filled the gap is applied."""
    _, first = phone.open_case(CENTRE)
    _, second = phone.open_case({**CENTRE, "name": "另一家培训中心"})
    assert [r["status"] for r in phone.push([second])["results"]] == ["deferred"]
    header, payload, signature = second.split(".")
    with db.transaction() as s:
        held = s.scalars(select(DeferredRecord)).one()
        held.jws = f"{header}.{payload}.{another_spelling(signature)}"
    answer = phone.push([first])
    assert [(r["seq"], r["status"]) for r in answer["results"]] == [(1, "applied")]
    assert answer["heads"][phone.device_id]["seq"] == 1
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(DeferredRecord)) == 0
        dropped = s.scalars(select(QuarantinedRecord).where(QuarantinedRecord.seq == 2)).one()
        assert dropped.code == "malformed"


def test_given_a_key_spelled_with_unused_bits_set_when_enrolled_then_it_is_refused(client, zhang, officers):
    """Else one key could be enrolled twice, under two spellings, past the already-enrolled check."""
    key = b64(Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    headers = officers.headers(zhang)
    odd = client.post("/api/v1/devices", json={"public_key": another_spelling(key)}, headers=headers)
    assert odd.status_code == 422 and "canonical" in odd.json["message"], odd.json
    assert client.post("/api/v1/devices", json={"public_key": key}, headers=headers).status_code == 201
