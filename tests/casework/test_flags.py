"""Procedure flags: kept on the inspection, never a rejection."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update

from backend.core.models import Inspection, LedgerRecord, Officer, utcnow
from tests.phones import SHANGHAI, TestPhone, uid

CENTRE = {"name": "星辰教育", "region": "330106"}


def _phone(client, officers, **kw):
    officer = officers.make(**kw)
    return TestPhone(client, officer, officers.headers(officer))


def _inspection(client, phone, iid):
    return client.get(f"/api/v1/inspections/{iid}", headers=phone.headers).json


def test_two_certified_officers_raise_no_flag(client, officers):
    a = _phone(client, officers)
    partner = officers.make(department="market")
    cid, opened = a.open_case(CENTRE)
    iid, started = a.start(cid, [a.officer.id, partner.id])
    assert [r["status"] for r in a.push([opened, started])["results"]] == ["applied", "applied"]
    assert _inspection(client, a, iid)["flags"] == []


def test_fewer_than_two_certified_officers_is_flagged_not_rejected(client, officers):
    a = _phone(client, officers)
    uncertified = officers.make(certified=False)
    cid, opened = a.open_case(CENTRE)
    iid, started = a.start(cid, [a.officer.id, uncertified.id])
    result = a.push([opened, started])["results"][1]
    assert result["status"] == "applied" and "fewer_than_two_certified" in result["flags"]
    assert _inspection(client, a, iid)["flags"] == ["fewer_than_two_certified"]


def test_a_certificate_expired_on_the_day_of_the_inspection_does_not_count(client, officers, db):
    a = _phone(client, officers)
    partner = officers.make(department="market")
    at = datetime.now(SHANGHAI) - timedelta(minutes=5)
    with db.transaction() as s:
        s.execute(update(Officer).where(Officer.id == partner.id)
                  .values(cert_valid_until=at.date() - timedelta(days=1)))
    cid, opened = a.open_case(CENTRE)
    iid, started = a.start(cid, [a.officer.id, partner.id], at=at)
    a.push([opened, started])
    assert _inspection(client, a, iid)["flags"] == ["fewer_than_two_certified"]


def test_an_unknown_officer_id_is_flagged(client, officers):
    a = _phone(client, officers)
    partner = officers.make(department="market")
    cid, opened = a.open_case(CENTRE)
    iid, started = a.start(cid, [a.officer.id, partner.id, "ofc_nobody"])
    a.push([opened, started])
    assert _inspection(client, a, iid)["flags"] == ["unknown_officer"]


def test_a_device_clock_far_ahead_is_flagged(client, officers):
    a = _phone(client, officers)
    partner = officers.make(department="market")
    cid, opened = a.open_case(CENTRE)
    iid, started = a.start(cid, [a.officer.id, partner.id], at=utcnow() + timedelta(minutes=30))
    result = a.push([opened, started])["results"][1]
    assert "clock_ahead" in result["flags"]
    assert "clock_ahead" in _inspection(client, a, iid)["flags"]


def test_an_inspection_not_ended_after_12_hours_is_flagged(client, officers, db):
    a = _phone(client, officers)
    partner = officers.make(department="market")
    cid, opened = a.open_case(CENTRE)
    iid, started = a.start(cid, [a.officer.id, partner.id], at=utcnow() - timedelta(hours=13))
    a.push([opened, started])
    assert "not_ended_after_12h" in _inspection(client, a, iid)["flags"]
    a.push([a.end(iid, at=utcnow())])
    flags = _inspection(client, a, iid)["flags"]
    assert "not_ended_after_12h" not in flags and "longer_than_12h" in flags


def test_findings_and_evidence_for_an_unknown_inspection_are_kept_and_flagged(client, officers, db):
    a = _phone(client, officers)
    ghost = uid()
    finding = a.finding(ghost)
    _eid, photo = a.evidence(ghost)
    results = a.push([finding, photo])["results"]
    assert [r["status"] for r in results] == ["applied", "applied"]
    assert all(r["flags"] == ["unknown_inspection"] for r in results)
    with db.session() as s:
        assert all(row.flags == ["unknown_inspection"] for row in s.query(LedgerRecord))


def test_an_inspection_end_for_an_unknown_inspection_is_invalid(client, officers):
    a = _phone(client, officers)
    result = a.push([a.end(uid())])["results"][0]
    assert (result["status"], result["code"]) == ("invalid", "unknown_inspection")


def test_a_second_start_of_the_same_inspection_is_invalid(client, officers, db):
    a = _phone(client, officers)
    cid, opened = a.open_case(CENTRE)
    iid, started = a.start(cid, [a.officer.id])
    _, again = a.start(cid, [a.officer.id], inspection_id=iid)
    results = a.push([opened, started, again])["results"]
    assert [r["status"] for r in results] == ["applied", "applied", "invalid"]
    with db.session() as s:
        assert s.get(Inspection, iid).started_by == a.officer.id
