"""Statistics: given a week of field work in two districts, when a reviewer asks, then every figure is exact.

The records come from real phones (Ed25519 keys, hash chains) pushing through
the API, real uploads to the local store and lifecycle steps through the
API. Only what the server stamps with its own clock (when a case was opened,
a step taken, an item declared or verified, a record received) is then moved
into the week under test, so each expected figure is a constant worked out
by hand. Clue triage is not built yet: a clue's status and case are set on
its row, which are the only columns the statistics read.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import update

from backend.core.models import Case, CaseTransition, Clue, Evidence, LedgerRecord, QuarantinedRecord, Upload
from backend.core.times import utc_iso
from tests.phones import SHANGHAI, TestPhone, uid

STATS = "/api/v1/stats"
XIHU, BINJIANG = "330106", "330108"
DAY = datetime.now(SHANGHAI).date() - timedelta(days=20)
WEEK = {"from": DAY.isoformat(), "to": (DAY + timedelta(days=6)).isoformat()}


def at(day: int, hour: float = 0, minute: float = 0, second: float = 0) -> datetime:
    """A time `day` days after the first day of the week under test, in Hangzhou."""
    return (datetime.combine(DAY + timedelta(days=day), time(0), SHANGHAI)
            + timedelta(hours=hour, minutes=minute, seconds=second))


@dataclass
class District:
    """An education officer's phone and a market officer's phone in one district, and what they pushed."""

    client: Any
    db: Any
    region: str
    edu: TestPhone
    market: TestPhone
    cases: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (client case id, case id)
    camera_index: int = 0

    def push(self, phone: TestPhone, records: list[str]) -> list[dict[str, Any]]:
        results = phone.push(records)["results"]
        assert {r["status"] for r in results} == {"applied"}, results
        return results

    def open(self, name: str, institution: str, *, created: datetime, phone: TestPhone | None = None) -> str:
        phone = phone or self.edu
        cid, record = phone.open_case({"name": institution, "region": self.region})
        case_id = self.push(phone, [record])[0]["refs"]["case_id"]
        self.cases[name] = (cid, case_id)
        self.pin(update(Case).where(Case.id == case_id).values(created_at=created))
        return case_id

    def inspect(self, case: str, start: datetime, end: datetime | None, *, clips: tuple[tuple[float, float], ...] = (),
                findings: tuple[str, ...] = (), interruptions: tuple[tuple[float, float], ...] = ()
                ) -> tuple[str, list[tuple[str, bytes]]]:
        """An inspection of the case with body-camera clips (seconds from its start), uploaded and verified."""
        phone = self.edu
        iid, started = phone.start(self.cases[case][0], [phone.officer.id, self.market.officer.id], at=start)
        records = [started]
        records += [phone.finding(iid, category, at=start + timedelta(seconds=30)) for category in findings]
        files = []
        for begin, finish in clips:
            self.camera_index += 1
            data = f"clip {self.region} #{self.camera_index} {uid()}".encode()
            eid = uid()
            clip = {"camera_serial": f"CAM-{self.region}", "clip_index": self.camera_index,
                    "started_at": (start + timedelta(seconds=begin)).isoformat(),
                    "ended_at": (start + timedelta(seconds=finish)).isoformat()}
            records.append(phone.record("evidence.capture", {
                "evidence_id": eid, "inspection_id": iid, "kind": "video", "media_type": "video/mp4",
                "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "captured_at": clip["started_at"],
                "clip": clip}, at=start + timedelta(seconds=finish + 1)))
            files.append((eid, data))
        for begin, finish in interruptions:
            records.append(phone.record("recording.interruption", {
                "inspection_id": iid, "camera_serial": f"CAM-{self.region}",
                "started_at": (start + timedelta(seconds=begin)).isoformat(),
                "ended_at": (start + timedelta(seconds=finish)).isoformat(), "reason": "电池耗尽 (battery flat)"},
                at=start + timedelta(seconds=finish)))
        if end is not None:
            records.append(phone.end(iid, at=end))
        self.push(phone, records)
        for eid, data in files:
            assert self.upload(eid, data) == "verified"
        return iid, files

    def photo(self, iid: str | None, data: bytes) -> str:
        eid, record = self.edu.evidence(iid, data)
        self.push(self.edu, [record])
        return eid

    def upload(self, eid: str, data: bytes) -> str:
        headers = self.edu.headers
        plan = self.client.post(f"/api/v1/evidence/{eid}/uploads", headers=headers)
        assert plan.status_code == 200, plan.json
        put = self.client.put(urlsplit(plan.json["url"]).path, data=data, headers={**headers, **plan.json["headers"]})
        assert put.status_code == 200, put.json
        done = self.client.post(f"/api/v1/evidence/{eid}/complete", json={}, headers=headers)
        assert done.status_code == 200, done.json
        return done.json["status"]

    def timed(self, eid: str, declared: datetime, delay_seconds: float) -> None:
        self.pin(update(Evidence).where(Evidence.id == eid)
                 .values(declared_at=declared, verified_at=declared + timedelta(seconds=delay_seconds)))

    def clue(self, reported: datetime, status: str = "new", **row: Any) -> str:
        """A clue from the phone, then where triage took it (every column the statistics read, set here)."""
        clue_id = uid()
        record = self.edu.record("clue.report", {
            "clue_id": clue_id, "source": "complaint", "description": "家长投诉周末违规培训",
            "institution": {"name": f"{self.region}线索机构", "region": self.region}}, at=reported)
        self.push(self.edu, [record])
        self.pin(update(Clue).where(Clue.id == clue_id).values(
            **{"status": status, "case_id": None, "duplicate_of": None, "department_code": None, **row}))
        return clue_id

    def step(self, case: str, to: str, when: datetime, **body: Any) -> None:
        case_id = self.cases[case][1]
        r = self.client.post(f"/api/v1/cases/{case_id}/transitions", json={"to": to, "reason": f"→ {to}", **body},
                             headers=self.edu.headers if case != "market" else self.market.headers)
        assert r.status_code == 201, r.json
        self.pin(update(CaseTransition).where(CaseTransition.case_id == case_id, CaseTransition.to_status == to)
                 .values(at=when))

    def pin(self, statement: Any) -> None:
        with self.db.transaction() as s:
            assert s.execute(statement).rowcount >= 1


def _district(client, db, officers, region: str) -> District:
    edu = officers.make(region=region, department="education")
    market = officers.make(region=region, department="market")
    return District(client, db, region, TestPhone(client, edu, officers.headers(edu)),
                    TestPhone(client, market, officers.headers(market)))


@pytest.fixture
def week(client, db, officers) -> dict[str, District]:
    """The week under test, worked out by hand; every expected figure below follows from it."""
    xihu = _district(client, db, officers, XIHU)
    # Cases: C6 was opened ten days before the week; C7 closes after it.
    xihu.open("C1", "西湖区启航培训中心", created=at(0, 15))
    xihu.open("market", "西湖区启航培训中心", created=at(0, 16), phone=xihu.market)
    xihu.open("C3", "西湖区明德学堂", created=at(1, 10))
    xihu.open("C4", "西湖区博学书院", created=at(2, 8))
    xihu.open("C5", "西湖区优学艺术", created=at(2, 12))
    xihu.open("C6", "西湖区睿思教育", created=at(-10, 12))
    xihu.open("C7", "西湖区远航科创", created=at(5, 9))
    xihu.step("C3", "investigating", at(3, 10))
    xihu.step("C3", "not_penalised", at(4, 10))  # 3 days
    xihu.step("C4", "dismissed", at(3, 8))  # 1 day
    xihu.step("C5", "investigating", at(2, 18))
    xihu.step("C5", "not_penalised", at(3, 0))  # 0.5 day
    xihu.step("C6", "dismissed", at(1, 12))  # 11 days
    xihu.step("C7", "dismissed", at(9, 9))  # after the week
    # Inspections: complete, explained, gaps; one still open; one ended before the week.
    _, (c1,) = xihu.inspect("C1", at(1, 9), at(1, 9, 10), clips=((0, 600),), findings=("unlicensed", "fire_safety"))
    _, (c2, c3) = xihu.inspect("C1", at(2, 9), at(2, 9, 10), clips=((0, 200), (400, 600)),
                               interruptions=((190, 410),))
    gappy, (c4,) = xihu.inspect("C1", at(3, 9), at(3, 9, 10), clips=((0, 300),))
    xihu.inspect("C1", at(4, 9), None)
    xihu.inspect("C3", at(-1, 9), at(-1, 9, 10), findings=("unlicensed",))
    for (eid, _), delay in zip((c1, c2, c3, c4), (10, 20, 30, 100), strict=True):
        xihu.timed(eid, at(4, 12), delay)
    late = xihu.photo(gappy, b"photo verified after the week")
    assert xihu.upload(late, b"photo verified after the week") == "verified"
    xihu.timed(late, at(8, 12), 1)
    mismatched = xihu.photo(gappy, b"declared photo")
    assert xihu.upload(mismatched, b"DECLARED photo") == "mismatch"  # same size, other bytes
    xihu.pin(update(Upload).where(Upload.evidence_id == mismatched).values(completed_at=at(2, 12)))
    assert xihu.upload(xihu.photo(gappy, b"another declared photo"), b"ANOTHER declared photo") == "mismatch"  # today
    # Clues: converted K1 (6 h), K2 (2 h), K8 (9 h); K3 linked to C1 opened before it; K4 a duplicate of K1
    # that followed it into its case; K5b a duplicate of K5, still waiting with it.
    case = {name: case_id for name, (_, case_id) in xihu.cases.items()}
    k1 = xihu.clue(at(0, 9), status="case", case_id=case["C1"], department_code="education")
    xihu.clue(at(1, 8), status="case", case_id=case["C3"], department_code="education")
    xihu.clue(at(2, 0), status="case", case_id=case["C1"], department_code="education")
    xihu.clue(at(2, 1), status="case", duplicate_of=k1, case_id=case["C1"], department_code="education")
    k5 = xihu.clue(at(3, 0), status="triaged", department_code="market")
    xihu.clue(at(3, 1), status="duplicate", duplicate_of=k5, department_code="market")
    xihu.clue(at(4, 0))
    xihu.clue(at(-3, 0), status="case", case_id=case["C4"], department_code="education")
    xihu.clue(at(5, 0), status="closed", case_id=case["C7"], department_code="education")
    # Rejected and invalid records: one of each kind inside the week, and more today.
    phone = xihu.edu
    forged = phone.sign(phone.payload("case.open", {"client_case_id": uid(), "institution": {"name": "x"}}),
                        key=Ed25519PrivateKey.generate())
    assert [r["code"] for r in phone.push([forged, "not a jws"])["results"]] == ["bad_signature", "malformed"]
    invalid = phone.record("inspection.start", {"inspection_id": uid(), "case": {"client_case_id": uid()},
                                                "officers": [phone.officer.id]})
    assert phone.push([invalid])["results"][0]["code"] == "unknown_case"
    xihu.pin(update(QuarantinedRecord).values(received_at=at(1, 12)))
    xihu.pin(update(LedgerRecord).where(LedgerRecord.status == "invalid").values(received_at=at(1, 12)))
    assert phone.push(["still not a jws"])["results"][0]["code"] == "malformed"
    assert phone.push([phone.end(uid())])["results"][0]["code"] == "unknown_inspection"

    binjiang = _district(client, db, officers, BINJIANG)
    binjiang.open("C8", "滨江区星火培训", created=at(2, 10))
    quiet, _ = binjiang.inspect("C8", at(2, 14), at(2, 14, 10), findings=("hours",))
    photo = binjiang.photo(quiet, b"binjiang photo")
    assert binjiang.upload(photo, b"binjiang photo") == "verified"
    binjiang.timed(photo, at(2, 15), 5)
    binjiang.clue(at(1, 10))
    assert binjiang.edu.push(["nope"])["results"][0]["code"] == "malformed"
    binjiang.pin(update(QuarantinedRecord).where(QuarantinedRecord.officer_id == binjiang.edu.officer.id)
                 .values(received_at=at(3, 12)))
    return {"xihu": xihu, "binjiang": binjiang}


def ask(client, headers: dict[str, str], **query: Any):
    return client.get(STATS, query_string={**WEEK, **query}, headers=headers)


def figures(client, headers: dict[str, str], **query: Any) -> dict[str, Any]:
    r = ask(client, headers, **query)
    assert r.status_code == 200, r.json
    return r.json


def zeros(region: str, name_zh: str | None = None, name_en: str | None = None, **figures: Any) -> dict[str, Any]:
    row = {"region": region, "name_zh": name_zh, "name_en": name_en, "clues_received": 0, "clues_converted": 0,
           "conversion_rate": None, "cases_opened": 0, "cases_closed": 0, "inspections_ended": 0,
           "inspections_recorded": 0, "recording_share": None, "evidence_verified": 0, "evidence_mismatch": 0,
           "rejected_records": 0, "invalid_records": 0}
    return {**row, **figures}


XIHU_ROW = zeros(XIHU, "西湖区", "Xihu District", clues_received=8, clues_converted=4, conversion_rate=0.6667,
                 cases_opened=6, cases_closed=4, inspections_ended=3, inspections_recorded=2, recording_share=0.6667,
                 evidence_verified=4, evidence_mismatch=1, rejected_records=2, invalid_records=1)
BINJIANG_ROW = zeros(BINJIANG, "滨江区", "Binjiang District", clues_received=1, conversion_rate=0.0, cases_opened=1,
                     inspections_ended=1, recording_share=0.0, evidence_verified=1, rejected_records=1)
NO_CASE_STATUS = dict.fromkeys(("clue", "registered", "investigating", "legal_review", "notified", "decided",
                                "executed", "closed", "not_penalised", "transferred", "dismissed"), 0)


def test_given_a_week_of_field_work_when_the_district_reviewer_asks_then_every_figure_is_exact(week, client,
                                                                                                officers):
    reviewer = officers.make(region=XIHU, roles=("reviewer",))

    stats = figures(client, officers.headers(reviewer))

    assert stats["period"] == {"from": WEEK["from"], "to": WEEK["to"], "start": utc_iso(at(0)),
                               "end": utc_iso(at(7)), "timezone": "Asia/Shanghai"}
    assert stats["scope"] == {"jurisdiction": [XIHU], "region": None, "department": None}
    assert stats["clues"] == {
        "received": 8, "duplicates": 2, "converted": 4, "conversion_rate": 0.6667,
        "by_status": {"new": 1, "triaged": 1, "case": 4, "closed": 1, "duplicate": 1, "transferred": 0},
        "to_case_hours": {"count": 3, "median": 6.0, "mean": 5.667}, "linked_to_earlier_case": 1}
    assert stats["cases"] == {
        "opened": 6,
        "by_status": {**NO_CASE_STATUS, "registered": 2, "not_penalised": 2, "dismissed": 2},
        "by_category": {"fire_safety": 1, "unlicensed": 2}, "without_findings": 4,
        "by_region": {XIHU: 6}, "by_department": {"education": 5, "market": 1},
        "closed": 4, "closed_by_status": {"closed": 0, "not_penalised": 2, "transferred": 0, "dismissed": 2},
        "to_close_days": {"count": 4, "median": 2.0, "mean": 3.875}}
    assert stats["recording"] == {"inspections_ended": 3,
                                  "by_status": {"complete": 1, "explained": 1, "gaps": 1, "none": 0},
                                  "complete_or_explained": 2, "share": 0.6667}
    assert stats["evidence"] == {"verified": 4, "mismatch": 1,
                                 "verification_delay_seconds": {"count": 4, "median": 25.0, "p90": 79.0,
                                                                "mean": 40.0}}
    assert stats["rejected"] == {"quarantined": 2, "quarantined_by_code": {"bad_signature": 1, "malformed": 1},
                                 "invalid": 1, "invalid_by_code": {"unknown_case": 1}}
    assert stats["regions"] == [XIHU_ROW]


def test_given_two_districts_when_the_city_admin_asks_then_the_city_adds_up_and_each_district_has_its_row(
        week, client, officers):
    admin = officers.make(region="330100", roles=("admin",))

    stats = figures(client, officers.headers(admin))

    assert stats["scope"]["jurisdiction"] is None
    assert (stats["clues"]["received"], stats["clues"]["converted"], stats["clues"]["conversion_rate"]) == (9, 4,
                                                                                                             0.5714)
    assert stats["cases"]["opened"] == 7 and stats["cases"]["by_region"] == {XIHU: 6, BINJIANG: 1}
    assert stats["cases"]["by_category"] == {"fire_safety": 1, "hours": 1, "unlicensed": 2}
    assert stats["cases"]["without_findings"] == 4
    assert stats["recording"]["by_status"] == {"complete": 1, "explained": 1, "gaps": 1, "none": 1}
    assert stats["recording"]["share"] == 0.5
    assert stats["evidence"]["verification_delay_seconds"] == {"count": 5, "median": 20.0, "p90": 72.0, "mean": 33.0}
    assert stats["rejected"]["quarantined_by_code"] == {"bad_signature": 1, "malformed": 2}
    rows = {row["region"]: row for row in stats["regions"]}
    assert len(stats["regions"]) == 14 and stats["regions"][0]["region"] == "330100"
    assert rows[XIHU] == XIHU_ROW and rows[BINJIANG] == BINJIANG_ROW
    assert all(row == zeros(code, row["name_zh"], row["name_en"]) for code, row in rows.items()
               if code not in (XIHU, BINJIANG))

    only_binjiang = figures(client, officers.headers(admin), region=BINJIANG)
    assert only_binjiang["regions"] == [BINJIANG_ROW] and only_binjiang["cases"]["opened"] == 1
    assert only_binjiang["clues"]["received"] == 1 and only_binjiang["evidence"]["verified"] == 1


def test_given_another_district_when_a_district_reviewer_names_it_then_nothing_of_it_is_counted(week, client,
                                                                                                 officers):
    reviewer = officers.headers(officers.make(region=XIHU, roles=("legal_reviewer",)))

    stats = figures(client, reviewer, region=BINJIANG)

    assert stats["regions"] == []
    assert stats["cases"]["opened"] == stats["clues"]["received"] == stats["recording"]["inspections_ended"] == 0
    assert stats["evidence"]["verified"] == stats["rejected"]["quarantined"] == 0
    assert figures(client, reviewer, region=XIHU)["regions"] == [XIHU_ROW]


def test_given_a_department_when_the_reviewer_asks_for_it_then_only_its_records_count(week, client, officers):
    reviewer = officers.headers(officers.make(region=XIHU, roles=("reviewer",)))

    market = figures(client, reviewer, department="market")

    assert market["scope"]["department"] == "market"
    assert market["cases"]["opened"] == 1 and market["cases"]["by_department"] == {"market": 1}
    assert market["cases"]["without_findings"] == 1 and market["cases"]["closed"] == 0
    # The clue triaged to market regulation and its duplicate; untriaged clues belong to no department yet.
    clues = market["clues"]
    assert (clues["received"], clues["duplicates"], clues["converted"], clues["conversion_rate"]) == (2, 1, 0, 0.0)
    assert market["recording"]["inspections_ended"] == 0 and market["evidence"]["verified"] == 0
    assert market["rejected"]["quarantined"] == 0
    education = figures(client, reviewer, department="education")
    assert education["cases"]["opened"] == 5 and education["recording"]["inspections_ended"] == 3


def test_given_the_same_question_when_asked_for_csv_then_it_holds_exactly_the_json_figures(week, client, officers):
    headers = officers.headers(officers.make(region="330100", roles=("admin",)))
    answer = figures(client, headers)

    by_parameter = ask(client, headers, format="csv")
    by_accept = ask(client, {**headers, "Accept": "text/csv"})

    expected = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        elif prefix == "regions":
            for row in value:
                walk(f"regions.{row['region']}", {k: v for k, v in row.items() if k != "region"})
        elif isinstance(value, list):
            expected[prefix] = " ".join(value)
        else:
            expected[prefix] = "" if value is None else str(value)

    walk("", answer)
    for r in (by_parameter, by_accept):
        assert r.status_code == 200 and r.mimetype == "text/csv"
        assert r.headers["Content-Disposition"] == f'attachment; filename="stats-{WEEK["from"]}-{WEEK["to"]}.csv"'
        text = r.data.decode("utf-8")
        assert text.startswith("\ufeff")
        rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
        assert rows[0] == ["figure", "value"]
        assert dict(rows[1:]) == expected and len(rows) == len(expected) + 1
    assert expected["cases.opened"] == "7" and expected["regions.330106.name_zh"] == "西湖区"
    assert ask(client, {**headers, "Accept": "text/csv"}, format="json").mimetype == "application/json"


def test_given_an_empty_period_when_asked_then_zeros_and_nulls_not_errors(client, officers):
    headers = officers.headers(officers.make(region=XIHU, roles=("reviewer",)))

    stats = figures(client, headers, **{"from": "2001-01-01", "to": "2001-01-31"})

    assert stats["clues"] == {"received": 0, "duplicates": 0, "converted": 0, "conversion_rate": None,
                              "by_status": {"new": 0, "triaged": 0, "case": 0, "closed": 0, "duplicate": 0,
                                            "transferred": 0},
                              "to_case_hours": {"count": 0, "median": None, "mean": None},
                              "linked_to_earlier_case": 0}
    assert stats["cases"]["opened"] == 0 and stats["cases"]["by_category"] == {}
    assert stats["cases"]["to_close_days"] == {"count": 0, "median": None, "mean": None}
    assert stats["recording"]["share"] is None and stats["recording"]["inspections_ended"] == 0
    assert stats["evidence"] == {"verified": 0, "mismatch": 0,
                                 "verification_delay_seconds": {"count": 0, "median": None, "p90": None, "mean": None}}
    assert stats["rejected"] == {"quarantined": 0, "quarantined_by_code": {}, "invalid": 0, "invalid_by_code": {}}
    assert stats["regions"] == [zeros(XIHU, "西湖区", "Xihu District")]
    assert ask(client, headers, **{"from": "2001-01-01", "to": "2001-01-31"}, format="csv").status_code == 200


def test_given_no_dates_when_asked_then_the_period_is_this_month_so_far(client, officers):
    headers = officers.headers(officers.make(region=XIHU, roles=("admin",)))

    r = client.get(STATS, headers=headers)

    today = datetime.now(SHANGHAI).date()
    assert r.status_code == 200, r.json
    assert (r.json["period"]["from"], r.json["period"]["to"]) == (today.replace(day=1).isoformat(), today.isoformat())
    one_day = client.get(STATS, query_string={"from": "2026-02-28", "to": "2026-02-28"}, headers=headers).json
    # Midnight to midnight in Hangzhou, written as every instant is: UTC to the millisecond.
    assert (one_day["period"]["start"], one_day["period"]["end"]) == ("2026-02-27T16:00:00.000Z",
                                                                      "2026-02-28T16:00:00.000Z")


@pytest.mark.parametrize(("query", "field"), [
    ({"from": "2026-02-30"}, "from"),
    ({"from": "yesterday"}, "from"),
    ({"to": "2026-13-01"}, "to"),
    ({"from": "2026-03-02", "to": "2026-03-01"}, "to"),
    ({"from": "0001-01-01", "to": "0001-01-02"}, "from"),
    ({"to": "9999-12-31"}, "to"),
    ({"from": "2026-03-01T00:00:00+08:00"}, "from"),
    ({"region": "33010"}, "region"),
    ({"region": "999999"}, "region"),
    ({"department": "police"}, "department"),
    ({"department": "Edu\x00"}, None),  # refused before any schema sees it
    ({"format": "xlsx"}, "format"),
    ({"page": "1"}, "page"),
])
def test_given_a_bad_question_when_asked_then_422_naming_the_field(client, officers, query, field):
    headers = officers.headers(officers.make(region=XIHU, roles=("reviewer",)))

    r = client.get(STATS, query_string=query, headers=headers)

    assert r.status_code == 422, r.json
    if field is not None:
        errors = r.json["errors"]
        assert field in errors.get("query", errors), errors


@pytest.mark.parametrize("roles", [("officer",), ("custodian",)])
def test_given_an_officer_without_a_reviewing_role_when_asking_then_403(client, officers, roles):
    headers = officers.headers(officers.make(region="330100", roles=roles))

    r = client.get(STATS, query_string=WEEK, headers=headers)

    assert r.status_code == 403 and "reviewer" in r.json["message"]
    assert client.get(STATS).status_code == 401

