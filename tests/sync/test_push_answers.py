"""What a push's answer and a device's status tell a phone (PROTOCOL §2, §4): a finding that cites evidence the
server has not seen is applied with a word about it, a device's `quarantined` count means rejections, and a phone
that lost its state finds its place in its chain again."""

from __future__ import annotations

import base64
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.phones import TestPhone, jws_hash, uid
from tests.sync.test_push import CENTRE


def finding_citing(phone: TestPhone, inspection_id: str, evidence: list[str]) -> str:
    return phone.record("inspection.finding", {"inspection_id": inspection_id, "finding_id": uid(),
                                               "category": "unlicensed", "description": "现场发现无证培训",
                                               "evidence": evidence})


def body_of(record: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(record.split(".")[1] + "=="))["body"]


def device(phone: TestPhone) -> dict:
    r = phone.client.get(f"/api/v1/devices/{phone.device_id}", headers=phone.headers)
    assert r.status_code == 200, r.json
    return r.json


# ------------------------------------------------------------------------------------ undeclared evidence


def test_given_a_finding_citing_an_undeclared_photo_when_pushed_then_it_is_applied_and_flagged(phone, zhang, li):
    cid, opened = phone.open_case(CENTRE)
    iid, started = phone.start(cid, [zhang.id, li.id])
    declared, photo = phone.evidence(iid)
    missing = uid()
    found = finding_citing(phone, iid, [declared, missing])

    answer = phone.push([opened, started, photo, found])

    result = answer["results"][3]
    assert result["status"] == "applied"
    assert result["flags"] == ["unknown_evidence"]
    assert result["refs"]["unknown_evidence"] == [missing]


def test_given_the_capture_comes_later_from_another_phone_then_the_finding_stands_and_its_answer_is_kept(
        phone, zhang, li, client, officers):
    cid, opened = phone.open_case(CENTRE)
    iid, started = phone.start(cid, [zhang.id, li.id])
    colleague = TestPhone(client, li, officers.headers(li))
    eid, photo = colleague.evidence(iid)  # signed on li's phone, not pushed yet
    found = finding_citing(phone, iid, [eid])

    flagged = phone.push([opened, started, found])["results"][2]
    captured = colleague.push([photo])["results"][0]
    again = phone.push([found])["results"][0]

    assert (flagged["status"], flagged["flags"]) == ("applied", ["unknown_evidence"])
    assert captured["status"] == "applied"
    # The finding was applied as signed, so it cites the item now declared; a re-push repeats the first answer.
    (finding,) = client.get(f"/api/v1/inspections/{iid}", headers=phone.headers).json["findings"]
    assert finding["evidence"] == [eid]
    assert again["status"] == "duplicate" and again["refs"]["unknown_evidence"] == [eid]


def test_given_a_finding_whose_evidence_is_all_declared_when_pushed_then_it_carries_no_such_flag(phone, zhang, li):
    cid, opened = phone.open_case(CENTRE)
    iid, started = phone.start(cid, [zhang.id, li.id])
    eid, photo = phone.evidence(iid)
    found = finding_citing(phone, iid, [eid])

    result = phone.push([opened, started, photo, found])["results"][3]

    assert result["status"] == "applied"
    assert "flags" not in result and "unknown_evidence" not in result["refs"]


# ------------------------------------------------------------------------------------ the quarantined count


def test_given_a_phone_recovering_from_a_rejection_when_its_held_record_is_superseded_then_it_is_not_counted(phone):
    _, one = phone.open_case(CENTRE)
    phone.push([one])
    bad_two = phone.sign(phone.payload("case.open", {"client_case_id": uid(), "institution": CENTRE}),
                         key=Ed25519PrivateKey.generate())
    phone.seq, phone.prev = 2, jws_hash(bad_two)
    op3 = uid()
    three = phone.record("case.open", {"client_case_id": uid(), "institution": CENTRE}, op=op3)
    rejected = phone.push([bad_two, three])
    assert [r["status"] for r in rejected["results"]] == ["rejected", "deferred"]

    # §4 Recovery: drop the rejected record, re-chain the held one on the head, re-sign it (same op) and push.
    phone.seq, phone.prev = rejected["heads"][phone.device_id]["seq"], rejected["heads"][phone.device_id]["hash"]
    new_two = phone.record("case.open", body_of(three), op=op3)
    new_three = phone.record("case.open", {"client_case_id": uid(), "institution": CENTRE})
    recovered = phone.push([new_two, new_three])

    assert [r["status"] for r in recovered["results"]] == ["applied", "applied"]
    # One rejection (the bad signature); the held seq 3, replaced by the re-signed record, is not one.
    assert device(phone)["quarantined"] == 1


def test_given_records_rejected_outright_when_the_device_is_read_then_each_counts_once(phone):
    _, one = phone.open_case(CENTRE)
    forged = phone.sign(phone.payload("case.open", {"client_case_id": uid(), "institution": CENTRE}, seq=1),
                        key=Ed25519PrivateKey.generate())

    phone.push([one, forged])

    assert device(phone)["quarantined"] == 1


# ------------------------------------------------------------------------------------ a phone that lost its state


def test_given_a_phone_that_lost_its_chain_when_it_reads_its_head_then_its_next_record_continues_it(client, officers,
                                                                                                     zhang):
    phone = TestPhone(client, zhang, officers.headers(zhang))
    _, one = phone.open_case(CENTRE)
    _, two = phone.open_case(CENTRE)
    phone.push([one, two])
    phone.seq, phone.prev = 0, "0" * 64  # restored from a backup taken before it signed anything

    head = device(phone)["head"]
    phone.seq, phone.prev = head["seq"], head["hash"]
    _, three = phone.open_case(CENTRE)
    answer = phone.push([three])

    assert head == {"seq": 2, "hash": jws_hash(two)}
    assert [(r["seq"], r["status"]) for r in answer["results"]] == [(3, "applied")]


def test_given_a_re_signed_copy_of_a_ledgered_act_when_pushed_then_its_reused_op_keeps_it_out(phone):
    op = uid()
    body = {"client_case_id": uid(), "institution": CENTRE}
    original = phone.record("case.open", body, op=op)
    phone.push([original])

    copy = phone.record("case.open", body, op=op)  # the same act, signed again after the phone lost its answer
    answer = phone.push([copy])

    assert (answer["results"][0]["status"], answer["results"][0]["code"]) == ("rejected", "op_reused")
