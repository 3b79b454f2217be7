"""End to end: the reference phone client (sync/client/) against the real app.

The client was written from PROTOCOL.md alone; these tests drive it through a
field day, a cut-off push, a rejection and a conflict, and look at what the
server made of it (API answers and ledger rows). Most run the app in-process
through a WSGI transport; two run the real gunicorn server over HTTP.
"""

from __future__ import annotations

import io
import re
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests
from PIL import Image
from sqlalchemy import select

from backend.core.models import CaseAlias, Device, LedgerRecord, QuarantinedRecord
from backend.liveserver import running_server
from sync.client import SHANGHAI, Phone, SimulatedCutOff
from tests.conftest import PASSWORD
from tests.wsgi_transport import WSGIAdapter, session_for

BASE = "http://fieldcase.test"
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
CENTRE = {"name": "西湖区明日之星培训中心", "region": "330106", "address": "文三路 199 号 3 楼"}


# --------------------------------------------------------------------------- helpers


class FieldClock:
    """A phone clock that starts a few hours ago and ticks on every reading, so records have distinct times
    inside a plausible working day and never look ahead of the server's clock."""

    def __init__(self, start: datetime | None = None, step: timedelta = timedelta(seconds=20)) -> None:
        self.now = start or datetime.now(SHANGHAI).replace(microsecond=0) - timedelta(hours=3)
        self.step = step

    def __call__(self) -> datetime:
        self.now += self.step
        return self.now


def jpeg(colour: tuple[int, int, int] = (200, 40, 40), size: tuple[int, int] = (64, 48)) -> bytes:
    """A real (small) JPEG, so evidence declarations hash what a camera would produce."""
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def ledger(db) -> list[LedgerRecord]:
    with db.session() as s:
        return list(s.scalars(select(LedgerRecord).order_by(LedgerRecord.device_id, LedgerRecord.seq)))


def corrupt_signature(phone: Phone, op: str) -> None:
    """Tamper with one stored record as malware or a bad flash sector might: its signature no longer verifies."""
    con = sqlite3.connect(phone.dir / "outbox.sqlite3")
    try:
        (jws,) = con.execute("SELECT jws FROM records WHERE op = ?", (op,)).fetchone()
        head, payload, sig = jws.split(".")
        flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
        con.execute("UPDATE records SET jws = ? WHERE op = ?", (f"{head}.{payload}.{flipped}", op))
        con.commit()
    finally:
        con.close()


@pytest.fixture
def zhang(officers):
    return officers.make(region="330106", department="education", name="张敏")


@pytest.fixture
def wang(officers):
    return officers.make(region="330106", department="education", name="王芳")


@pytest.fixture
def li(officers):
    return officers.make(region="330106", department="market", name="李强")


@pytest.fixture
def make_phone(app, tmp_path) -> Iterator[Callable[..., Phone]]:
    """Phones that talk to the in-process app, with no real sleeping on back-off."""
    made: list[Phone] = []

    def make(officer, label: str) -> Phone:
        phone = Phone(tmp_path / "phones" / label, BASE, session=session_for(app), clock=FieldClock(),
                      sleep=lambda _s: None)
        phone.login(officer.username, PASSWORD)
        phone.enrol(label)
        made.append(phone)
        return phone

    yield make
    for phone in made:
        phone.close()


@dataclass
class Visit:
    """What one phone recorded offline at the centre."""

    phone: Phone
    client_case_id: str
    inspection_id: str
    findings: list[str]
    evidence: list[str]


def visit(phone: Phone, crew: list[str], *, categories: tuple[str, ...] = ("unlicensed", "fire_safety"),
          outcome: str = "violation_found") -> Visit:
    """Open a case, inspect with the crew, photograph and record findings, end: all offline."""
    cid = phone.open_case(CENTRE, summary="无证校外培训举报核查")
    iid = phone.start_inspection(cid, officers=crew, location={"lat": 30.2741, "lon": 120.1262, "accuracy_m": 8})
    evidence, findings = [], []
    for n, category in enumerate(categories):
        eid = phone.capture_evidence(jpeg((40 * n, 120, 200)), "photo", "image/jpeg", inspection_id=iid,
                                     location={"lat": 30.2741, "lon": 120.1262})
        evidence.append(eid)
        findings.append(phone.add_finding(iid, category, f"现场发现: {category}", evidence=[eid]))
    phone.end_inspection(iid, outcome, notes="责令停止办学")
    return Visit(phone, cid, iid, findings, evidence)


@contextmanager
def live_server(settings, log_path: Path) -> Iterator[str]:
    """The real gunicorn server (`running_server`) on the test's database."""
    env = {"DATABASE_URL": settings.database_url, "FIELDCASE_INSTANCE_DIR": str(settings.instance_dir)}
    with running_server(env, workers=2, log_path=log_path) as base:
        yield base


def statuses(summary: dict) -> Counter:
    return Counter(r["status"] for r in summary["results"])


# --------------------------------------------------------------------------- the field day


def test_given_two_education_phones_open_the_same_centre_offline_when_both_push_then_one_case_holds_both_visits(
        make_phone, officers, zhang, wang, li, db):
    morning = visit(make_phone(zhang, "zhang-phone"), [zhang.id, li.id])
    afternoon = visit(make_phone(wang, "wang-phone"), [wang.id, li.id], categories=("unlicensed",))

    first = morning.phone.push()
    second = afternoon.phone.push()

    assert statuses(first) == {"applied": 7} and statuses(second) == {"applied": 5}
    opened = {r["op"]: r for r in second["results"]}[afternoon.phone.records()[0].op]
    assert opened["refs"]["merged"] is True
    case_id = morning.phone.server_case_id(morning.client_case_id)
    assert case_id and afternoon.phone.server_case_id(afternoon.client_case_id) == case_id
    case = morning.phone.get(f"/api/v1/cases/{case_id}")
    assert case["institution"]["name"] == CENTRE["name"] and case["department"] == "education"
    assert {a["client_case_id"] for a in case["aliases"]} == {morning.client_case_id, afternoon.client_case_id}
    by_id = {i["id"]: i for i in case["inspections"]}
    assert set(by_id) == {morning.inspection_id, afternoon.inspection_id}
    assert by_id[morning.inspection_id]["officers"] == [zhang.id, li.id]
    assert by_id[afternoon.inspection_id]["officers"] == [wang.id, li.id]
    assert all(i["flags"] == [] and i["outcome"] == "violation_found" for i in by_id.values())
    assert [f["category"] for f in by_id[morning.inspection_id]["findings"]] == ["unlicensed", "fire_safety"]
    assert {e["id"] for e in case["evidence"]} == {*morning.evidence, *afternoon.evidence}
    assert all(e["status"] == "declared" for e in case["evidence"])
    for v in (morning, afternoon):
        assert v.phone.outbox() == [] and v.phone.head["seq"] == len(v.phone.records())
    cases = officers.client.get("/api/v1/cases", headers=officers.headers(li)).json
    assert cases["total"] == 1


def test_given_education_and_market_phones_open_the_same_centre_when_both_push_then_each_department_has_a_case(
        make_phone, zhang, li):
    """PROTOCOL §4 merges into an open case *of the officer's department*: a joint visit gives one per department."""
    education = visit(make_phone(zhang, "zhang-phone"), [zhang.id, li.id])
    market = visit(make_phone(li, "li-phone"), [li.id, zhang.id], categories=("unlicensed",))

    education.phone.push()
    answer = market.phone.push()

    assert statuses(answer) == {"applied": 5}
    assert "merged" not in answer["results"][0]["refs"]
    edu_case = education.phone.server_case_id(education.client_case_id)
    market_case = market.phone.server_case_id(market.client_case_id)
    assert edu_case and market_case and edu_case != market_case
    assert answer["results"][0]["refs"]["institution_id"] == education.phone.records()[0].refs["institution_id"]
    for v, case_id, dept in ((education, edu_case, "education"), (market, market_case, "market")):
        case = v.phone.get(f"/api/v1/cases/{case_id}")
        assert case["department"] == dept
        assert [i["id"] for i in case["inspections"]] == [v.inspection_id]
        assert case["inspections"][0]["flags"] == []


def test_given_a_push_cut_off_half_way_when_retried_then_every_record_is_in_the_ledger_exactly_once(
        make_phone, zhang, li, db):
    day = visit(make_phone(zhang, "zhang-phone"), [zhang.id, li.id])
    sent = day.phone.records()
    assert len(sent) == 7

    with pytest.raises(SimulatedCutOff):
        day.phone.push(batch_size=3, fail_after_batches=1)
    assert len(ledger(db)) == 3  # the server took the first batch; the phone never heard back
    assert len(day.phone.outbox()) == 7

    retry = day.phone.push(batch_size=3)

    assert statuses(retry) == {"duplicate": 3, "applied": 4}
    rows = ledger(db)
    assert [r.op for r in rows] == [r.op for r in sent]
    assert [r.seq for r in rows] == list(range(1, 8))
    assert all(r.status == "applied" for r in rows)
    assert day.phone.outbox() == [] and day.phone.stats()["acked"] == 7
    assert day.phone.server_case_id(day.client_case_id)  # the duplicate answer repeats the first refs
    assert day.phone.device_status()["head"]["seq"] == 7


def test_given_pushed_records_when_the_phone_pulls_then_it_gets_the_case_and_the_aliases(make_phone, zhang, wang, li):
    morning = visit(make_phone(zhang, "zhang-phone"), [zhang.id, li.id])
    afternoon = visit(make_phone(wang, "wang-phone"), [wang.id, li.id])
    morning.phone.push()
    afternoon.phone.push()
    reader = make_phone(li, "li-phone")  # never pushed: knows the case only from pull

    changes = reader.pull(limit=2)

    kinds = Counter(c["kind"] for c in changes)
    assert kinds["case"] >= 1 and kinds["case_alias"] == 2 and kinds["institution"] >= 1
    case_id = morning.phone.server_case_id(morning.client_case_id)
    assert reader.server_case_id(morning.client_case_id) == case_id
    assert reader.server_case_id(afternoon.client_case_id) == case_id
    (case,) = reader.changes("case")
    assert case["id"] == case_id and case["data"]["institution_id"]
    assert reader.pull() == []  # the saved cursor continues where it stopped


def test_given_a_tampered_record_when_pushed_then_it_is_dropped_and_the_rest_is_rechained_and_applied(
        make_phone, zhang, li, db):
    day = visit(make_phone(zhang, "zhang-phone"), [zhang.id, li.id])
    records = day.phone.records()
    tampered = records[3]  # the first finding
    assert tampered.type == "inspection.finding"
    corrupt_signature(day.phone, tampered.op)

    answer = day.phone.push(batch_size=100)

    assert answer["dropped"] == [tampered.op]
    assert answer["rechained"] == 3
    assert answer["counts"]["rejected"] == 1
    assert day.phone.outbox() == []
    assert [d["op"] for d in day.phone.dropped()] == [tampered.op]
    assert day.phone.dropped()[0]["code"] == "bad_signature"
    rows = ledger(db)
    assert [r.op for r in rows] == [r.op for r in records if r.op != tampered.op]
    assert [r.seq for r in rows] == list(range(1, 7))
    assert all(r.status == "applied" for r in rows)
    with db.session() as s:
        codes = Counter(q.code for q in s.scalars(select(QuarantinedRecord)))
    assert codes["bad_signature"] == 1
    status = day.phone.device_status()
    assert status["deferred"]["count"] == 0 and status["head"]["seq"] == 6
    inspection = day.phone.get(f"/api/v1/inspections/{day.inspection_id}")
    assert [f["category"] for f in inspection["findings"]] == ["fire_safety"]
    assert inspection["outcome"] == "violation_found"


def test_given_two_phones_update_the_same_field_from_one_version_when_both_push_then_one_conflicts(
        make_phone, officers, zhang, wang, li):
    morning = visit(make_phone(zhang, "zhang-phone"), [zhang.id, li.id])
    afternoon = visit(make_phone(wang, "wang-phone"), [wang.id, li.id])
    morning.phone.push()
    afternoon.phone.push()
    afternoon.phone.pull()
    case_id = morning.phone.server_case_id(morning.client_case_id)
    version = morning.phone.get(f"/api/v1/cases/{case_id}")["version"]

    morning.phone.update_case(morning.client_case_id, version, {"summary": "无证办学, 已责令停止"})
    afternoon.phone.update_case(case_id, version, {"summary": "无证办学, 消防通道堵塞"})
    first = morning.phone.push()
    second = afternoon.phone.push()

    assert statuses(first) == {"applied": 1}
    assert statuses(second) == {"conflict": 1}
    assert second["results"][0]["refs"]["conflicts"] == ["summary"]
    assert afternoon.phone.outbox() == []  # a conflict is in the ledger: nothing to send again
    headers = officers.headers(li)
    listed = officers.client.get("/api/v1/conflicts", query_string={"case_id": case_id}, headers=headers).json
    (conflict,) = listed["items"]
    assert (conflict["server_value"], conflict["phone_value"]) == ("无证办学, 已责令停止", "无证办学, 消防通道堵塞")
    assert conflict["officer_id"] == wang.id

    resolved = officers.client.post(f"/api/v1/conflicts/{conflict['id']}/resolve", headers=headers, json={
        "choice": "custom", "value": "无证办学; 消防通道堵塞; 已责令停止", "reason": "两次检查均属实"})

    assert resolved.status_code == 200, resolved.json
    assert resolved.json["status"] == "resolved"
    case = morning.phone.get(f"/api/v1/cases/{case_id}")
    assert case["summary"] == "无证办学; 消防通道堵塞; 已责令停止" and case["open_conflicts"] == 0
    assert officers.client.get("/api/v1/conflicts", headers=headers).json["total"] == 0
    pulled = {c["id"]: c["data"] for c in afternoon.phone.pull() if c["kind"] == "conflict"}
    assert pulled[conflict["id"]]["status"] == "resolved"


def test_given_the_real_server_when_two_phones_push_over_http_then_the_case_is_merged(
        app, settings, officers, zhang, wang, li, tmp_path, db):
    with live_server(settings, tmp_path / "server.log") as base:
        phones = [Phone(tmp_path / label, base, clock=FieldClock(), sleep=lambda _s: None)
                  for label in ("zhang-phone", "wang-phone")]
        try:
            for phone, officer in zip(phones, (zhang, wang), strict=True):
                phone.login(officer.username, PASSWORD)
                phone.enrol(f"{officer.name}的手机")
            morning = visit(phones[0], [zhang.id, li.id])
            afternoon = visit(phones[1], [wang.id, li.id])
            with pytest.raises(SimulatedCutOff):
                morning.phone.push(batch_size=3, fail_after_batches=1)
            first = morning.phone.push(batch_size=3)
            second = afternoon.phone.push(batch_size=3)
            afternoon.phone.pull()
            case_id = morning.phone.server_case_id(morning.client_case_id)
            assert case_id and afternoon.phone.server_case_id(afternoon.client_case_id) == case_id
            assert morning.phone.outbox() == [] and afternoon.phone.outbox() == []
            assert len(afternoon.phone.changes("case_alias")) == 2
        finally:
            for phone in phones:
                phone.close()
    assert statuses(first) == {"duplicate": 3, "applied": 4}
    assert statuses(second) == {"applied": 7}
    assert len(ledger(db)) == 14
    with db.session() as s:
        aliases = list(s.scalars(select(CaseAlias).order_by(CaseAlias.created_at)))
    assert [(a.case_id, a.merged) for a in aliases] == [(case_id, False), (case_id, True)]
    assert "Booting worker" in (tmp_path / "server.log").read_text()


def test_given_two_phones_push_at_once_to_the_real_server_when_they_open_the_same_centres_then_one_case_each(
        app, settings, zhang, wang, tmp_path, db):
    """PROTOCOL §4: two phones merging at once, on any database, still give one case (gunicorn, 2 workers)."""
    centres = [{"name": f"明日之星培训中心第{n}分部", "region": "330106"} for n in range(6)]
    with live_server(settings, tmp_path / "server.log") as base:
        phones = [Phone(tmp_path / o.username, base, clock=FieldClock(), sleep=lambda _s: None) for o in (zhang, wang)]
        try:
            for phone, officer in zip(phones, (zhang, wang), strict=True):
                phone.login(officer.username, PASSWORD)
                phone.enrol(officer.username)
                for centre in centres:
                    phone.open_case(centre)
            barrier = threading.Barrier(len(phones))

            def push(phone: Phone) -> dict:
                barrier.wait()
                return phone.push(batch_size=1)

            with ThreadPoolExecutor(len(phones)) as pool:
                answers = list(pool.map(push, phones))
            assert all(statuses(a) == {"applied": len(centres)} for a in answers)
            assert all(p.outbox() == [] for p in phones)
        finally:
            for phone in phones:
                phone.close()
    with db.session() as s:
        aliases = list(s.scalars(select(CaseAlias)))
    per_case = Counter(a.case_id for a in aliases)
    assert len(per_case) == len(centres) and set(per_case.values()) == {2}
    assert Counter(a.merged for a in aliases) == {True: len(centres), False: len(centres)}


def test_given_a_pushed_inspection_when_its_case_is_read_then_every_timestamp_is_rfc3339(make_phone, zhang, li):
    """PROTOCOL: timestamps are RFC 3339 with an offset (these once came out as RFC 1123 HTTP dates)."""
    day = visit(make_phone(zhang, "zhang-phone"), [zhang.id, li.id])
    day.phone.push()
    case = day.phone.get(f"/api/v1/cases/{day.phone.server_case_id(day.client_case_id)}")
    inspection = day.phone.get(f"/api/v1/inspections/{day.inspection_id}")

    stamps = [case["inspections"][0]["started_at"], case["inspections"][0]["ended_at"],
              *(f["recorded_at"] for f in case["inspections"][0]["findings"]),
              *(f["recorded_at"] for f in inspection["findings"])]

    bad = [s for s in stamps if not RFC3339.match(s)]
    assert bad == []


class _LosesFirstEnrolAnswer(WSGIAdapter):
    """The server enrols the key, then the connection drops before the 201 reaches the phone."""

    lost = False

    def send(self, request, **kwargs):
        resp = super().send(request, **kwargs)
        if request.method == "POST" and request.url.endswith("/api/v1/devices") and not self.lost:
            self.lost = True
            raise requests.ConnectionError("connection reset before the answer arrived")
        return resp


def test_given_the_enrol_answer_is_lost_when_the_phone_enrols_then_it_still_ends_up_with_a_working_device(
        app, tmp_path, officers, zhang, li, db):
    session = requests.Session()
    session.mount(BASE, _LosesFirstEnrolAnswer(app))
    phone = Phone(tmp_path / "phone", BASE, session=session, clock=FieldClock(), sleep=lambda _s: None)
    phone.login(zhang.username, PASSWORD)

    phone.enrol("张敏的手机")

    assert phone.device_id
    device = phone.device_status()
    assert device["officer_id"] == zhang.id and device["status"] == "active"
    with db.session() as s:
        keys = {d.id: d.public_key for d in s.scalars(select(Device).where(Device.officer_id == zhang.id))}
    assert len(keys) == 2 and keys[phone.device_id] == phone.public_key  # the orphan stays, revocable
    day = visit(phone, [zhang.id, li.id])
    assert statuses(day.phone.push()) == {"applied": 7}
    phone.close()
