"""An officer is judged by the certificate held on the day of the act, not by today's (issue 15, item 7).

Given two certified officers who inspect, when one of them is given a new certificate afterwards (a renewal: a
new number, valid from a later day), then the evidence list of the case still names the old number as valid on
the day, the reviewers' audit finds nothing wrong, and an inspection pushed late is not flagged. A later entry
under the same number is a correction of that certificate (a revocation), and it decides.
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select

from backend.core.models import Inspection, Officer, OfficerCertificate
from backend.core.times import LOCAL_TZ
from media.evidence_list import build
from sync.certificate_history import CertificateBook, HeldCertificate, _chosen
from tests.phones import TestPhone, field_day_start

CENTRE = {"name": "明日之星培训中心", "region": "330106", "address": "杭州市西湖区文三路 9 号"}
ISSUES = "/api/v1/audit/issues"


def renew(client, admin_headers, officer, number: str, valid_from: date, valid_until: date):
    r = client.patch(f"/api/v1/officers/{officer.id}", headers=admin_headers,
                     json={"cert_number": number, "cert_valid_from": valid_from.isoformat(),
                           "cert_valid_until": valid_until.isoformat()})
    assert r.status_code == 200, r.json
    return r.json


def inspect(client, officers, crew, *, at: datetime | None = None) -> tuple[TestPhone, str, str]:
    """A phone of crew[0] opens a case, inspects with `crew` and photographs; returns the phone, case and photo."""
    phone = TestPhone(client, crew[0], officers.headers(crew[0]))
    cid, opened = phone.open_case(CENTRE)
    iid, started = phone.start(cid, [o.id for o in crew], at=at)
    photo, captured = phone.evidence(iid)
    results = phone.push([opened, started, captured, phone.end(iid)])["results"]
    assert all(r["status"] == "applied" for r in results), results
    return phone, results[0]["refs"]["case_id"], iid


def test_given_a_certificate_changed_by_an_admin_then_each_version_is_kept_once_with_who_and_when(
        client, officers, db):
    admin = officers.make(roles=("admin",))
    officer = officers.make()
    headers = officers.headers(admin)
    first = (officer.cert_number, officer.cert_valid_from, officer.cert_valid_until)
    later = date.today() + timedelta(days=400)

    renew(client, headers, officer, "ZJ-RENEWED-1", date.today() + timedelta(days=1), later)
    renew(client, headers, officer, "ZJ-RENEWED-1", date.today() + timedelta(days=1), later)  # the same again
    assert client.patch(f"/api/v1/officers/{officer.id}", headers=headers, json={"name": "改名"}).status_code == 200

    with db.transaction() as s:
        rows = list(s.scalars(select(OfficerCertificate).where(OfficerCertificate.officer_id == officer.id)
                              .order_by(OfficerCertificate.id)))
    assert [(r.cert_number, r.cert_valid_from, r.cert_valid_until) for r in rows] == [
        first, ("ZJ-RENEWED-1", date.today() + timedelta(days=1), later)]
    assert rows[0].recorded_by is None and rows[1].recorded_by == admin.id  # made by the fixture, then by the admin
    assert rows[1].recorded_at >= rows[0].recorded_at


def test_given_a_renewal_after_the_inspection_when_the_case_is_exported_then_the_list_names_the_old_certificate(
        client, officers, db):
    at = field_day_start() + timedelta(hours=1)  # the inspection starts an hour into the phone's field day
    day = at.date()  # its day, in Hangzhou: what the server judges certificates on
    admin, custodian = officers.make(roles=("admin",)), officers.make(roles=("custodian",))
    a, b = officers.make(name="张伟"), officers.make(name="李娜")
    old_number = a.cert_number
    _, case_id, _ = inspect(client, officers, [a, b], at=at)
    renew(client, officers.headers(admin), a, "ZJ-NEW-0001", day + timedelta(days=1),
          day + timedelta(days=1100))

    r = client.get(f"/api/v1/cases/{case_id}/package", query_string={"purpose": "移送"},
                   headers=officers.headers(custodian))
    assert r.status_code == 200, r.data[:300]
    listed = zipfile.ZipFile(io.BytesIO(r.data)).read("evidence-list.csv").decode("utf-8-sig")
    assert old_number in listed and "ZJ-NEW-0001" not in listed

    manifest = json.loads(zipfile.ZipFile(io.BytesIO(r.data)).read("manifest.json"))
    with db.transaction() as s:
        rows = build(s, s.get(Officer, custodian.id), manifest)["officers"]
    mine = [row for row in rows if row[1] == a.id]
    assert mine and all(row[2] == old_number and row[5] == "有效 valid" for row in mine), mine


def test_given_a_renewal_after_the_inspection_when_reviewers_audit_then_no_certificate_issue(client, officers):
    at = field_day_start() + timedelta(hours=1)  # the inspection starts an hour into the phone's field day
    day = at.date()  # its day, in Hangzhou: what the server judges certificates on
    admin, reviewer = officers.make(roles=("admin",)), officers.make(roles=("reviewer",))
    a, b = officers.make(), officers.make(department="market")
    inspect(client, officers, [a, b], at=at)
    for officer in (a, b):
        renew(client, officers.headers(admin), officer, f"ZJ-NEXT-{officer.id[-6:]}", day + timedelta(days=1),
              day + timedelta(days=900))

    for kind in ("expired_certificate", "too_few_certified"):
        r = client.get(ISSUES, query_string={"kind": kind}, headers=officers.headers(reviewer))
        assert r.status_code == 200 and r.json["items"] == [], (kind, r.json)


def test_given_a_certificate_revoked_before_the_day_then_the_correction_decides_and_the_audit_lists_it(
        client, officers):
    at = field_day_start() + timedelta(hours=1)  # the inspection starts an hour into the phone's field day
    day = at.date()  # its day, in Hangzhou: what the server judges certificates on
    admin, reviewer = officers.make(roles=("admin",)), officers.make(roles=("reviewer",))
    a, b, c = officers.make(), officers.make(department="market"), officers.make()
    revoked_on = day - timedelta(days=2)
    old_number = c.cert_number
    renew(client, officers.headers(admin), c, old_number, c.cert_valid_from, revoked_on)  # same number: a correction
    _, _, iid = inspect(client, officers, [a, b, c], at=at)
    # Given a new certificate after the day, the day is still judged by the revoked one: "expired", not "not yet".
    renew(client, officers.headers(admin), c, "ZJ-AFTER-0001", day + timedelta(days=1),
          day + timedelta(days=900))

    r = client.get(ISSUES, query_string={"kind": "expired_certificate"}, headers=officers.headers(reviewer))
    (issue,) = r.json["items"]
    (officer,) = issue["details"]["officers"]
    assert (issue["key"], officer["id"], officer["reason"]) == (f"expired_certificate:{iid}", c.id, "expired")
    assert officer["certificate"] == {"number": old_number, "valid_from": officer["certificate"]["valid_from"],
                                      "valid_until": revoked_on.isoformat()}


def test_given_a_renewal_before_a_late_push_then_the_inspection_is_judged_on_its_own_day(client, officers, db):
    at = field_day_start() + timedelta(hours=1)  # the inspection starts an hour into the phone's field day
    day = at.date()  # its day, in Hangzhou: what the server judges certificates on
    admin = officers.make(roles=("admin",))
    a, b = officers.make(), officers.make(department="market")
    # Both certificates are replaced by ones valid from tomorrow before the phone, offline for a day, pushes.
    for officer in (a, b):
        renew(client, officers.headers(admin), officer, f"ZJ-LATE-{officer.id[-6:]}", day + timedelta(days=1),
              day + timedelta(days=900))
    _, _, iid = inspect(client, officers, [a, b], at=at)

    with db.transaction() as s:
        assert "fewer_than_two_certified" not in (s.get(Inspection, iid).flags or [])


def test_given_an_officer_who_never_held_a_certificate_then_there_is_none_to_name(client, officers, db):
    a, uncertified = officers.make(), officers.make(certified=False)
    _, _, iid = inspect(client, officers, [a, uncertified])
    with db.transaction() as s:
        assert "fewer_than_two_certified" in (s.get(Inspection, iid).flags or [])
        book = CertificateBook.load(s, [s.get(Officer, uncertified.id)])
        day = datetime.now(UTC).astimezone(LOCAL_TZ).date()
        assert book.held_on(s.get(Officer, uncertified.id), day).cert_number is None


def test_the_rule_prefers_a_valid_one_then_the_last_lapsed_then_the_next_to_come():
    day = date(2026, 6, 1)
    old = HeldCertificate("A", date(2020, 1, 1), date(2024, 12, 31))
    lapsed = HeldCertificate("B", date(2025, 1, 1), date(2026, 3, 31))
    coming = HeldCertificate("C", date(2026, 9, 1), date(2029, 8, 31))
    later = HeldCertificate("D", date(2027, 1, 1), date(2030, 1, 1))
    valid = HeldCertificate("E", date(2026, 4, 1), date(2026, 8, 31))

    assert _chosen([old, lapsed, valid, coming], day) == valid
    assert _chosen([old, lapsed, coming, later], day) == lapsed  # the last to lapse: "expired"
    assert _chosen([later, coming], day) == coming  # none had begun: the first to come, "not yet valid"
    assert _chosen([], day).cert_number is None


def test_given_a_renewal_when_an_admin_asks_then_the_history_lists_both_and_another_district_sees_none(
        client, officers):
    admin, officer = officers.make(roles=("admin",)), officers.make()
    elsewhere = officers.make(roles=("admin",), region="330102")
    renew(client, officers.headers(admin), officer, "ZJ-SECOND-01", date.today() + timedelta(days=1),
          date.today() + timedelta(days=700))

    r = client.get(f"/api/v1/officers/{officer.id}/certificates", headers=officers.headers(admin))
    assert r.status_code == 200, r.json
    assert [(i["number"], i["recorded_by"]) for i in r.json["items"]] == [
        (officer.cert_number, None), ("ZJ-SECOND-01", admin.id)]
    assert r.json["items"][1]["valid_from"] == (date.today() + timedelta(days=1)).isoformat()
    assert r.json["items"][1]["recorded_at"].endswith("Z")
    hidden = client.get(f"/api/v1/officers/{officer.id}/certificates", headers=officers.headers(elsewhere))
    assert hidden.status_code == 404 and hidden.json["code"] == 404
