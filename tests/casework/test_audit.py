"""The reviewers' audit: given what phones pushed and uploaded, when a reviewer lists issues, then they are there.

Every issue here comes from real phones (Ed25519 keys, hash chains) pushing
through the API and real uploads to the local store; the reviewer sees them
at `GET /api/v1/audit/issues`, marks them at `POST .../reviews`, and the marks
are in `GET /api/v1/audit/reviews`.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import event, update

from backend.core.models import Officer
from backend.core.times import utc_iso
from tests import images
from tests.phones import SHANGHAI, TestPhone, uid

CENTRE = {"name": "西湖区启航培训中心", "region": "330106"}
ISSUES = "/api/v1/audit/issues"


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


class Field:
    """One officer's phone with a body camera, and a certified partner; times are seconds from `start_at`."""

    def __init__(self, client, officers, *, region: str = "330106", department: str = "education",
                 partner=None) -> None:
        self.client = client
        self.officer = officers.make(region=region, department=department)
        self.partner = partner or officers.make(region=region, department="market")
        self.phone = TestPhone(client, self.officer, officers.headers(self.officer))
        self.headers = self.phone.headers
        self.start_at = (datetime.now(SHANGHAI) - timedelta(hours=3)).replace(microsecond=0)
        self.client_case_id, opened = self.phone.open_case({**CENTRE, "region": region})
        self.records = [opened]
        self.case_id: str | None = None

    def at(self, seconds: float) -> datetime:
        return self.start_at + timedelta(seconds=seconds)

    def start(self, officers: list[str] | None = None, *, at: datetime | None = None) -> str:
        crew = officers if officers is not None else [self.officer.id, self.partner.id]
        iid, started = self.phone.start(self.client_case_id, crew, at=at or self.at(0))
        self.records.append(started)
        return iid

    def clip(self, iid: str, camera: str, index: int, start: float, end: float) -> tuple[str, bytes]:
        data = f"clip {camera} #{index} {uid()}".encode()
        eid = uid()
        self.records.append(self.phone.record("evidence.capture", {
            "evidence_id": eid, "inspection_id": iid, "kind": "video", "media_type": "video/mp4",
            "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "captured_at": self.at(start).isoformat(),
            "clip": {"camera_serial": camera, "clip_index": index, "started_at": self.at(start).isoformat(),
                     "ended_at": self.at(end).isoformat()}}, at=self.at(end + 1)))
        return eid, data

    def declare(self, data: bytes, *, kind: str = "photo", media_type: str = "image/jpeg",
                captured_at: datetime | None = None, **extra) -> str:
        eid = uid()
        self.records.append(self.phone.record("evidence.capture", {
            "evidence_id": eid, "inspection_id": None, "kind": kind, "media_type": media_type,
            "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
            "captured_at": (captured_at or self.phone.clock).isoformat(), **extra}))
        return eid

    def end(self, iid: str, seconds: float = 600, *, at: datetime | None = None) -> None:
        self.records.append(self.phone.end(iid, at=at or self.at(seconds)))

    def push(self) -> list[dict]:
        results = self.phone.push(self.records)["results"]
        assert {r["status"] for r in results} == {"applied"}, results
        self.records = []
        self.case_id = self.case_id or results[0]["refs"].get("case_id")
        return results

    def upload(self, eid: str, data: bytes) -> dict:
        plan = self.client.post(f"/api/v1/evidence/{eid}/uploads", headers=self.headers)
        assert plan.status_code == 200, plan.json
        put = self.client.put(urlsplit(plan.json["url"]).path, data=data,
                              headers={**self.headers, **plan.json["headers"]})
        assert put.status_code == 200, put.json
        done = self.client.post(f"/api/v1/evidence/{eid}/complete", json={}, headers=self.headers)
        assert done.status_code == 200, done.json
        return done.json


@pytest.fixture
def field(client, officers) -> Field:
    return Field(client, officers)


@pytest.fixture
def reviewer(officers):
    return officers.make(region="330106", roles=("reviewer",), name="审核员")


@pytest.fixture
def reviewing(officers, reviewer) -> dict[str, str]:
    return officers.headers(reviewer)


def listed(client, headers, **query) -> dict:
    r = client.get(ISSUES, query_string=query, headers=headers)
    assert r.status_code == 200, r.json
    return r.json


def only(client, headers, kind: str, **query) -> dict:
    (issue,) = listed(client, headers, kind=kind, **query)["items"]
    assert issue["kind"] == kind
    return issue


def hrefs(issue: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for link in issue["links"]:
        out.setdefault(link["rel"], []).append(link.get("href"))
    return out


# ---------------------------------------------------------------------------------------------------- recording


def test_an_inspection_with_a_gap_and_a_missing_clip_is_a_coverage_gap(field, client, reviewing):
    iid = field.start()
    first = field.clip(iid, "CAM-7", 1, 0, 200)
    third = field.clip(iid, "CAM-7", 3, 260, 600)
    field.end(iid, 600)
    field.push()
    for eid, data in (first, third):
        assert field.upload(eid, data)["status"] == "verified"

    issue = only(client, reviewing, "coverage_gap")

    assert issue["key"] == f"coverage_gap:{iid}"
    assert when(issue["at"]) == field.at(600)
    assert (issue["region_code"], issue["department_code"]) == ("330106", "education")
    assert issue["details"]["status"] == "gaps"
    assert issue["details"]["gaps"] == [{"start": utc_iso(field.at(200)), "end": utc_iso(field.at(260)),
                                         "seconds": 60.0, "explained": False}]
    assert issue["details"]["clip_index_gaps"] == [{"camera_serial": "CAM-7", "missing": [2], "missing_count": 1}]
    assert "1 unexplained gap" in issue["summary"] and "1 clip number never declared" in issue["summary"]
    assert issue["review"] is None and issue["reviewed"] is False
    links = hrefs(issue)
    assert links["coverage"] == [f"/api/v1/inspections/{iid}/coverage"]
    assert links["case"] == [f"/api/v1/cases/{field.case_id}"]
    assert links["device"] == [f"/api/v1/devices/{field.phone.device_id}"]
    coverage = client.get(links["coverage"][0], headers=reviewing)
    assert coverage.status_code == 200 and coverage.json["status"] == "gaps"
    assert client.get(links["case"][0], headers=reviewing).status_code == 200


def test_a_complete_recording_raises_no_recording_issue(field, client, reviewing):
    iid = field.start()
    clip = field.clip(iid, "CAM-1", 1, 0, 600)
    field.end(iid, 600)
    field.push()
    field.upload(*clip)
    kinds = {i["kind"] for i in listed(client, reviewing)["items"]}
    assert not kinds & {"coverage_gap", "no_recording"}


def test_inspections_without_a_verified_recording_are_no_recording(field, client, reviewing):
    bare = field.start()
    field.end(bare, 600)
    waiting = field.start()
    field.clip(waiting, "CAM-2", 1, 0, 600)  # declared, never uploaded
    field.end(waiting, 600)
    field.push()

    issues = {i["key"]: i for i in listed(client, reviewing, kind="no_recording")["items"]}

    assert set(issues) == {f"no_recording:{bare}", f"no_recording:{waiting}"}
    assert "no clip declared" in issues[f"no_recording:{bare}"]["summary"]
    assert "1 clip declared, none verified" in issues[f"no_recording:{waiting}"]["summary"]
    assert len(issues[f"no_recording:{waiting}"]["details"]["unverified_clips"]) == 1
    assert issues[f"no_recording:{bare}"]["details"]["covered_seconds"] == 0.0


def test_an_inspection_never_ended_after_12_hours_is_listed(field, client, reviewing):
    started = datetime.now(UTC) - timedelta(hours=13)
    iid = field.start(at=started.astimezone(SHANGHAI).replace(microsecond=0))
    field.push()
    issue = only(client, reviewing, "inspection_not_ended")
    assert issue["key"] == f"inspection_not_ended:{iid}"
    assert issue["details"]["open_seconds"] >= 13 * 3600
    assert only(client, reviewing, "inspection_not_ended", **{"from": "2000-01-01"})["key"] == issue["key"]


# ---------------------------------------------------------------------------------------------------- evidence


def test_evidence_uploaded_with_other_bytes_is_a_mismatch(field, client, reviewing):
    declared = b"the clip as recorded" * 100
    eid = field.declare(declared, kind="video", media_type="video/mp4")
    field.push()
    edited = declared.replace(b"recorded", b"RECORDED", 1)
    assert field.upload(eid, edited)["status"] == "mismatch"

    issue = only(client, reviewing, "evidence_mismatch")

    assert issue["key"] == f"evidence_mismatch:{eid}"
    assert issue["details"]["declared"] == {"sha256": hashlib.sha256(declared).hexdigest(), "size": len(declared)}
    (received,) = issue["details"]["received"]
    assert received["sha256"] == hashlib.sha256(edited).hexdigest()
    assert when(issue["at"]) == when(received["at"])
    # Evidence without a case takes its officer's department.
    assert issue["department_code"] == "education"
    evidence = client.get(hrefs(issue)["evidence"][0], headers=reviewing)
    assert evidence.status_code == 200 and evidence.json["status"] == "mismatch"


def test_evidence_not_uploaded_after_the_deadline_is_overdue_and_the_deadline_is_configurable(field, client, app,
                                                                                                reviewing):
    long_ago = (datetime.now(SHANGHAI) - timedelta(hours=30)).replace(microsecond=0)
    waiting = field.declare(b"never uploaded", captured_at=long_ago)
    late_data = b"uploaded at last"
    late = field.declare(late_data, captured_at=long_ago)
    fresh_data = b"uploaded at once"
    fresh = field.declare(fresh_data)
    recent = field.declare(b"not yet uploaded")
    field.push()
    field.upload(late, late_data)
    field.upload(fresh, fresh_data)

    issues = {i["key"]: i for i in listed(client, reviewing, kind="upload_overdue")["items"]}

    assert set(issues) == {f"upload_overdue:{waiting}", f"upload_overdue:{late}"}
    assert issues[f"upload_overdue:{waiting}"]["details"]["uploaded"] is False
    assert issues[f"upload_overdue:{waiting}"]["details"]["overdue_seconds"] >= 6 * 3600 - 60
    assert when(issues[f"upload_overdue:{waiting}"]["at"]) == long_ago + timedelta(hours=24)
    assert issues[f"upload_overdue:{late}"]["details"]["uploaded"] is True
    assert "past the upload deadline" in issues[f"upload_overdue:{late}"]["summary"]
    assert f"upload_overdue:{recent}" not in issues and f"upload_overdue:{fresh}" not in issues

    state = app.extensions["fieldcase"]
    state.media = replace(state.media, upload_deadline=timedelta(hours=48))
    keys = {i["key"] for i in listed(client, reviewing, kind="upload_overdue")["items"]}
    assert f"upload_overdue:{waiting}" not in keys


def test_a_photo_whose_exif_disagrees_with_its_declaration_is_listed(field, client, reviewing):
    declared_at = (datetime.now(SHANGHAI) - timedelta(hours=1)).replace(microsecond=0)
    data = images.jpeg_with_exif(taken=(declared_at + timedelta(minutes=20)).replace(tzinfo=None),
                                 lat=30.30, lon=120.10)
    eid = field.declare(data, captured_at=declared_at,
                        location={"lat": images.WEST_LAKE[0], "lon": images.WEST_LAKE[1], "accuracy_m": 10})
    field.push()
    assert field.upload(eid, data)["status"] == "verified"

    issue = only(client, reviewing, "exif_disagreement")

    assert issue["key"] == f"exif_disagreement:{eid}"
    assert issue["details"]["flags"] == ["exif_time_differs", "gps_differs"]
    assert issue["details"]["time_difference_s"] == 1200
    assert issue["details"]["distance_m"] > 1000
    assert "20 min" in issue["summary"]
    assert hrefs(issue)["evidence"] == [f"/api/v1/evidence/{eid}"]


# ---------------------------------------------------------------------------------------------------- officers


def test_an_inspection_with_one_certified_officer_is_listed(client, officers, reviewing):
    uncertified = officers.make(certified=False)
    field = Field(client, officers, partner=uncertified)
    iid = field.start()
    field.push()

    issue = only(client, reviewing, "too_few_certified")

    assert issue["key"] == f"too_few_certified:{iid}"
    assert issue["details"]["certified"] == 1
    crew = {o["id"]: o for o in issue["details"]["officers"]}
    assert crew[field.officer.id]["valid"] is True
    assert (crew[uncertified.id]["valid"], crew[uncertified.id]["reason"]) == (False, "no_certificate")
    # Uncertified is not expired: a certificate that never existed is not one that lapsed, but both are listed.
    assert only(client, reviewing, "expired_certificate")["details"]["officers"][0]["reason"] == "no_certificate"


def test_an_officer_whose_certificate_had_lapsed_on_the_day_is_listed(client, officers, db, reviewing):
    lapsed = officers.make(department="market")
    field = Field(client, officers)
    # "The day" is the inspection's own Hangzhou date: just after midnight, five minutes ago was yesterday.
    now = datetime.now(SHANGHAI).replace(microsecond=0) - timedelta(minutes=5)
    yesterday = now.date() - timedelta(days=1)
    with db.transaction() as s:
        s.execute(update(Officer).where(Officer.id == lapsed.id).values(cert_valid_until=yesterday))
    three = field.start([field.officer.id, field.partner.id, lapsed.id], at=now)
    two = field.start([field.officer.id, lapsed.id, "ofc_nobody"], at=now + timedelta(seconds=1))
    field.push()

    expired = {i["key"]: i for i in listed(client, reviewing, kind="expired_certificate")["items"]}
    too_few = {i["key"] for i in listed(client, reviewing, kind="too_few_certified")["items"]}

    assert set(expired) == {f"expired_certificate:{three}", f"expired_certificate:{two}"}
    (officer,) = expired[f"expired_certificate:{three}"]["details"]["officers"]
    assert (officer["id"], officer["reason"]) == (lapsed.id, "expired")
    assert officer["certificate"]["valid_until"] == yesterday.isoformat()
    reasons = {o["id"]: o["reason"] for o in expired[f"expired_certificate:{two}"]["details"]["officers"]}
    assert reasons == {lapsed.id: "expired", "ofc_nobody": "unknown_officer"}
    assert f"/api/v1/officers/{lapsed.id}" in hrefs(expired[f"expired_certificate:{three}"])["officer"]
    # Two valid certificates besides the lapsed one: the inspection had its two certified officers.
    assert too_few == {f"too_few_certified:{two}"}


# ---------------------------------------------------------------------------------------------------- devices


def test_a_device_clock_running_ahead_is_clock_skew(field, client, reviewing):
    ahead = datetime.now(UTC) + timedelta(minutes=30)
    iid = field.start(at=ahead)
    field.push()

    issue = only(client, reviewing, "clock_skew")

    assert issue["key"] == f"clock_skew:{field.phone.device_id}"
    assert issue["details"]["records"] == 1 and issue["details"]["inspections"] == [iid]
    assert 1700 < issue["details"]["max_ahead_seconds"] < 1900
    links = hrefs(issue)
    assert links["device"] == [f"/api/v1/devices/{field.phone.device_id}"]
    assert links["inspection"] == [f"/api/v1/inspections/{iid}"]
    assert client.get(links["device"][0], headers=reviewing).status_code == 200


def test_forks_and_rejected_records_are_summed_up_per_device(field, client, reviewing):
    field.push()
    phone = field.phone
    fork = phone.sign(phone.payload("case.open", {"client_case_id": uid(), "institution": CENTRE},
                                    seq=1, prev="0" * 64))
    forged = phone.sign(phone.payload("case.open", {"client_case_id": uid(), "institution": CENTRE}),
                        key=Ed25519PrivateKey.generate())
    results = phone.push([fork, forged])["results"]
    assert [(r["status"], r["code"]) for r in results] == [("rejected", "fork"), ("rejected", "bad_signature")]

    forked = only(client, reviewing, "fork")
    rejected = only(client, reviewing, "rejected_records")

    assert forked["key"] == f"fork:{phone.device_id}"
    assert (forked["details"]["count"], forked["details"]["seqs"]) == (1, [1])
    assert rejected["key"] == f"rejected_records:{phone.device_id}"
    assert rejected["details"]["codes"] == {"bad_signature": 1}
    assert rejected["details"]["quarantined_ever"] == 2
    assert hrefs(rejected)["device"] == [f"/api/v1/devices/{phone.device_id}"]
    assert (rejected["region_code"], rejected["department_code"]) == ("330106", "education")


def test_records_for_an_unknown_device_are_summed_up_per_officer(field, client, reviewing):
    phone = field.phone
    header = {"alg": "EdDSA", "kid": "dev_never_enrolled", "typ": "fieldcase-record"}
    stray = phone.sign(phone.payload("case.open", {"client_case_id": uid(), "institution": CENTRE}), header=header)
    assert phone.push([stray])["results"][0]["code"] == "unknown_device"

    issue = only(client, reviewing, "rejected_records")

    assert issue["key"] == f"rejected_records:officer:{field.officer.id}"
    assert issue["details"]["codes"] == {"unknown_device": 1} and issue["details"]["device_id"] is None
    assert hrefs(issue)["officer"] == [f"/api/v1/officers/{field.officer.id}"]
    marked = client.post(f"{ISSUES}/{issue['key']}/reviews", json={"comment": "旧手机"}, headers=reviewing)
    assert marked.status_code == 201 and marked.json["reviewed"] is True


def test_a_released_chain_gap_is_kept_for_the_audit(field, client, reviewer, reviewing):
    phone = field.phone
    phone.seq, phone.prev = 2, "cd" * 32  # records 1 and 2 were lost with the phone's storage
    _, three = phone.open_case(CENTRE)
    assert phone.push([three])["results"][0]["status"] == "deferred"
    released = client.post(f"/api/v1/devices/{phone.device_id}/gaps/release", json={"reason": "手机重置 phone wiped"},
                           headers=reviewing)
    assert released.status_code == 200, released.json

    issue = only(client, reviewing, "chain_gap")

    assert issue["key"].startswith("chain_gap:")
    details = issue["details"]
    assert (details["first_seq"], details["last_seq"], details["missing"]) == (1, 2, 2)
    assert (details["released_by"], details["reason"]) == (reviewer.id, "手机重置 phone wiped")
    assert hrefs(issue)["device"] == [f"/api/v1/devices/{phone.device_id}"]


# ---------------------------------------------------------------------------------------------------- cases


def test_an_open_conflict_is_listed_until_it_is_resolved(client, officers, reviewing):
    a_officer, b_officer = officers.make(), officers.make()
    a = TestPhone(client, a_officer, officers.headers(a_officer))
    b = TestPhone(client, b_officer, officers.headers(b_officer))
    cid_a, open_a = a.open_case(CENTRE)
    cid_b, open_b = b.open_case(CENTRE)
    case_id = a.push([open_a])["results"][0]["refs"]["case_id"]
    b.push([open_b])
    a.push([a.record("case.update", {"case": {"client_case_id": cid_a}, "base_version": 1,
                                     "fields": {"summary": "无证办学"}})])
    b.push([b.record("case.update", {"case": {"client_case_id": cid_b}, "base_version": 1,
                                     "fields": {"summary": "疑似无证"}})])

    issue = only(client, reviewing, "open_conflict")

    conflict_id = issue["details"]["conflict_id"]
    assert issue["key"] == f"open_conflict:{conflict_id}"
    assert (issue["details"]["server_value"], issue["details"]["phone_value"]) == ("无证办学", "疑似无证")
    assert hrefs(issue)["case"] == [f"/api/v1/cases/{case_id}"]
    resolved = client.post(hrefs(issue)["resolve"][0], json={"choice": "server", "reason": "以现场记录为准"},
                           headers=reviewing)
    assert resolved.status_code == 200
    assert listed(client, reviewing, kind="open_conflict")["items"] == []


# ---------------------------------------------------------------------------------------------------- filters


def test_filters_by_kind_region_department_and_date_and_paging(client, officers):
    city = officers.make(region="330100", roles=("reviewer",))
    headers = officers.headers(city)
    now = datetime.now(SHANGHAI).replace(microsecond=0)
    days = {}
    for name, region, department, ago in (("xihu", "330106", "education", 3), ("gongshu", "330105", "education", 2),
                                          ("market", "330106", "market", 1)):
        f = Field(client, officers, region=region, department=department)
        started = now - timedelta(days=ago)
        iid = f.start(at=started)
        f.end(iid, at=started + timedelta(minutes=30))
        f.push()
        days[name] = (iid, started + timedelta(minutes=30))

    everything = listed(client, headers, kind="no_recording")
    assert [i["key"] for i in everything["items"]] == [f"no_recording:{days[n][0]}"
                                                       for n in ("market", "gongshu", "xihu")]
    assert everything["total"] == 3
    assert [i["key"] for i in listed(client, headers, kind="no_recording", region="330105")["items"]] == [
        f"no_recording:{days['gongshu'][0]}"]
    assert [i["key"] for i in listed(client, headers, kind="no_recording", department="market")["items"]] == [
        f"no_recording:{days['market'][0]}"]
    since = days["gongshu"][1].isoformat()
    assert listed(client, headers, kind="no_recording", **{"from": since})["total"] == 2
    assert listed(client, headers, kind="no_recording", to=since)["total"] == 1
    day = days["gongshu"][1].date().isoformat()
    next_day = (days["gongshu"][1].date() + timedelta(days=1)).isoformat()
    assert [i["key"] for i in listed(client, headers, kind="no_recording",
                                     **{"from": day, "to": next_day})["items"]] == [
        f"no_recording:{days['gongshu'][0]}"]
    several = listed(client, headers, kind=["no_recording", "clock_skew"], region="330106")
    assert several["total"] == 2

    first = listed(client, headers, kind="no_recording", page_size=2)
    second = listed(client, headers, kind="no_recording", page_size=2, page=2)
    assert (first["total"], second["total"], len(first["items"]), len(second["items"])) == (3, 3, 2, 1)
    assert [i["key"] for i in first["items"] + second["items"]] == [i["key"] for i in everything["items"]]

    district = officers.make(region="330106", roles=("reviewer",))
    mine = listed(client, officers.headers(district), kind="no_recording")
    assert {i["region_code"] for i in mine["items"]} == {"330106"} and mine["total"] == 2


def test_bad_filters_are_refused(client, reviewing):
    for query in ({"colour": "red"}, {"kind": "no_such_kind"}, {"from": "yesterday"},
                  {"from": "2026-07-14T09:00:00"}, {"from": "2026-07-15", "to": "2026-07-14"}, {"page_size": 501}):
        r = client.get(ISSUES, query_string=query, headers=reviewing)
        assert r.status_code == 422, (query, r.json)
        assert r.json["code"] == 422 and "query" in r.json["errors"]


def test_hostile_input_is_refused_never_an_error(field, client, reviewing):
    iid = field.start()
    field.end(iid)
    field.push()
    for url in (f"{ISSUES}?region=33010%00", f"{ISSUES}?department=x%00", f"{ISSUES}?from=0001-01-01",
                f"{ISSUES}?to=9999-12-31T23:59:59%2B00:00", "/api/v1/audit/reviews?issue_key=a%00"):
        r = client.get(url, headers=reviewing)
        assert r.status_code == 422, (url, r.json)
    assert client.get(f"{ISSUES}/no_recording:a%00b", headers=reviewing).status_code == 422  # NUL: anywhere
    for key in ("chain_gap:99999999999999999999", "chain_gap:%C2%B2", "open_conflict:2147483648", "fork:" + "x" * 300):
        r = client.get(f"{ISSUES}/{key}", headers=reviewing)
        assert r.status_code == 404, (key, r.json)
    r = client.post(f"{ISSUES}/no_recording:{iid}/reviews", json={"comment": "a\x00b"}, headers=reviewing)
    assert r.status_code == 422


# ---------------------------------------------------------------------------------------------------- reviews


def test_a_reviewer_marks_an_issue_reviewed_and_the_mark_is_logged(field, client, officers, reviewer, reviewing):
    iid = field.start()
    field.end(iid)
    field.push()
    key = f"no_recording:{iid}"

    comment = "执法记录仪故障，已约谈 camera fault, officer interviewed"
    r = client.post(f"{ISSUES}/{key}/reviews", json={"comment": comment}, headers=reviewing)

    assert r.status_code == 201, r.json
    assert r.json["key"] == key and r.json["reviewed"] is True
    review = r.json["review"]
    assert (review["by"], review["by_name"], review["comment"]) == (reviewer.id, "审核员", comment)
    (listed_issue,) = listed(client, reviewing, kind="no_recording")["items"]
    assert listed_issue["review"] == review and listed_issue["reviewed"] is True
    assert listed(client, reviewing, reviewed="false")["total"] == 0
    assert [i["key"] for i in listed(client, reviewing, reviewed="true")["items"]] == [key]
    assert client.get(f"{ISSUES}/{key}", headers=reviewing).json["review"] == review

    log = client.get("/api/v1/audit/reviews", headers=reviewing).json
    assert log["total"] == 1
    (entry,) = log["items"]
    assert entry == {**review, "issue_key": key, "kind": "no_recording", "region_code": "330106"}

    # A second mark is appended, not written over: the issue shows the latest, the log keeps both.
    again = client.post(f"{ISSUES}/{key}/reviews", json={"comment": "复核：同意"}, headers=reviewing)
    assert again.status_code == 201 and again.json["review"]["comment"] == "复核：同意"
    log = client.get("/api/v1/audit/reviews", query_string={"issue_key": key}, headers=reviewing).json
    assert [e["comment"] for e in log["items"]] == ["复核：同意", entry["comment"]]
    tomorrow = (datetime.now(SHANGHAI).date() + timedelta(days=1)).isoformat()
    assert client.get("/api/v1/audit/reviews", query_string={"from": tomorrow}, headers=reviewing).json["total"] == 0
    assert client.get("/api/v1/audit/reviews", query_string={"to": tomorrow, "reviewed_by": reviewer.id},
                      headers=reviewing).json["total"] == 2


def test_a_review_needs_a_comment(field, client, reviewing):
    iid = field.start()
    field.end(iid)
    field.push()
    url = f"{ISSUES}/no_recording:{iid}/reviews"
    for body in ({"comment": ""}, {"comment": "   "}, {}, {"comment": "ok", "verdict": "fine"}):
        r = client.post(url, json=body, headers=reviewing)
        assert r.status_code == 422, (body, r.json)
    assert client.get("/api/v1/audit/reviews", headers=reviewing).json["total"] == 0


def test_only_reviewers_see_the_audit(field, client, officers):
    iid = field.start()
    field.end(iid)
    field.push()
    key = f"no_recording:{iid}"
    for roles in (("officer",), ("custodian",)):
        someone = officers.make(roles=roles)
        headers = officers.headers(someone)
        assert client.get(ISSUES, headers=headers).status_code == 403
        assert client.post(f"{ISSUES}/{key}/reviews", json={"comment": "x"}, headers=headers).status_code == 403
        assert client.get("/api/v1/audit/reviews", headers=headers).status_code == 403
    assert client.get(ISSUES).status_code == 401
    for roles in (("legal_reviewer",), ("admin",)):
        headers = officers.headers(officers.make(roles=roles))
        assert [i["key"] for i in listed(client, headers)["items"]] == [key]


def test_another_district_sees_nothing_and_cannot_mark(field, client, officers, reviewing):
    iid = field.start()
    field.end(iid)
    field.push()
    key = f"no_recording:{iid}"
    assert client.post(f"{ISSUES}/{key}/reviews", json={"comment": "已核实"}, headers=reviewing).status_code == 201
    stranger = officers.headers(officers.make(region="330105", roles=("reviewer",)))

    assert listed(client, stranger)["items"] == []
    assert client.get(f"{ISSUES}/{key}", headers=stranger).status_code == 404
    r = client.post(f"{ISSUES}/{key}/reviews", json={"comment": "越权"}, headers=stranger)
    assert r.status_code == 404 and r.json["code"] == 404
    assert client.get("/api/v1/audit/reviews", headers=stranger).json["total"] == 0
    # The same answer as for an issue that does not exist, or no longer does.
    for missing in (f"no_recording:{uid()}", f"coverage_gap:{iid}", "nonsense", f"chain_gap:{iid}"):
        assert client.post(f"{ISSUES}/{missing}/reviews", json={"comment": "?"}, headers=reviewing).status_code == 404


def test_new_rejections_after_a_review_reopen_the_device_issue(field, client, reviewing):
    field.push()
    phone = field.phone

    def fork():
        return phone.sign(phone.payload("case.open", {"client_case_id": uid(), "institution": CENTRE},
                                        seq=1, prev="0" * 64))

    phone.push([fork()])
    key = f"fork:{phone.device_id}"
    marked = client.post(f"{ISSUES}/{key}/reviews", json={"comment": "测试机误操作"}, headers=reviewing)
    assert marked.status_code == 201
    assert only(client, reviewing, "fork")["reviewed"] is True

    phone.push([fork()])

    issue = only(client, reviewing, "fork")
    assert issue["reviewed"] is False and issue["review"]["comment"] == "测试机误操作"
    assert issue["details"]["count"] == 2
    assert [i["key"] for i in listed(client, reviewing, reviewed="false", kind="fork")["items"]] == [key]


def test_listing_does_not_query_once_per_inspection(field, client, db, reviewing):
    def statements() -> int:
        seen: list[str] = []

        def count(_conn, _cursor, statement, *_args) -> None:
            seen.append(statement)

        event.listen(db.engine, "before_cursor_execute", count)
        try:
            listed(client, reviewing)
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
        return len(seen)

    def inspections(n: int) -> None:
        for _ in range(n):
            iid = field.start()
            field.clip(iid, "CAM-3", 1, 0, 300)
            field.clip(iid, "CAM-3", 3, 300, 600)
            field.end(iid)
        field.push()

    inspections(2)
    few = statements()
    inspections(5)
    assert len(listed(client, reviewing, kind="no_recording")["items"]) == 7
    assert statements() == few
