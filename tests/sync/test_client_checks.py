"""The reference phone checks before it signs (issue #17), against the real server's reference data.

Each test drives `sync.client.Phone` against the in-process app: the phone downloads the reference data and the
crew's certificates, refuses a record an officer can still put right (saying how, in Chinese and English), signs
over it only with an explicit override that the record then carries, and the server keeps and shows that
override. A phone offline works from what it downloaded; a phone that never downloaded anything says which checks
it could not make.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import select, update

from backend.core.models import Inspection, Institution, LedgerRecord, Officer
from media.package_verify import verify_package
from sync.client import SHANGHAI, Override, Phone, RecordRefused
from sync.credit_code import check_character
from tests.casework.test_system_audit import named, verify
from tests.conftest import PASSWORD
from tests.phones import TestPhone, uid
from tests.wsgi_transport import session_for

BASE = "http://fieldcase.test"
FIRST17 = "91330106MA2B3C4D5"
GOOD_CODE = FIRST17 + check_character(FIRST17)
WRONG_CHECK = "0" if check_character(FIRST17) != "0" else "1"
CENTRE = {"name": "西湖区启明星培训中心", "region": "330106", "address": "文三路 88 号", "credit_code": GOOD_CODE}


class FieldClock:
    """The phone's clock: this morning in Hangzhou, ticking on every reading, never ahead of the server."""

    def __init__(self) -> None:
        now = datetime.now(SHANGHAI).replace(microsecond=0)
        self.now = max(now - timedelta(hours=2), now.replace(hour=0, minute=0, second=1))
        self.day = self.now.date()

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=5)
        return self.now


@pytest.fixture
def clock() -> FieldClock:
    return FieldClock()


@pytest.fixture
def make_phone(app, tmp_path, clock) -> Iterator[Callable[..., Phone]]:
    made: list[Phone] = []

    def make(officer, label: str = "phone", *, reference: bool = True, base_url: str = BASE) -> Phone:
        online = base_url == BASE
        phone = Phone(tmp_path / label, base_url, session=session_for(app) if online else None, clock=clock,
                      sleep=lambda _s: None, max_attempts=1)
        made.append(phone)
        if online:
            phone.login(officer.username, PASSWORD)
            phone.enrol(label)
            if reference:
                phone.fetch_reference()
        return phone

    yield make
    for phone in made:
        phone.close()


@pytest.fixture
def zhang(officers):
    return officers.make(region="330106", department="education", name="张敏")


@pytest.fixture
def wang(officers):
    return officers.make(region="330106", department="education", name="王芳")


def certificate(db, officer, *, number: str | None = "keep", valid_from: date | None = None,
                valid_until: date | None = None) -> None:
    """Give `officer` the certificate the registry holds for them (the admin's console would, too)."""
    with db.transaction() as s:
        row = s.get(Officer, officer.id)
        if number != "keep":
            row.cert_number = number
        row.cert_valid_from, row.cert_valid_until = valid_from, valid_until


def refused(call: Callable[[], object]) -> RecordRefused:
    with pytest.raises(RecordRefused) as caught:
        call()
    return caught.value


# --------------------------------------------------------------------------- what is refused, and how it is said


def test_given_a_licence_whose_check_character_is_wrong_when_the_phone_opens_a_case_then_it_refuses_and_says_which(
        make_phone, zhang):
    phone = make_phone(zhang)
    wrong = FIRST17 + WRONG_CHECK

    refusal = refused(lambda: phone.open_case({**CENTRE, "credit_code": wrong}))

    (problem,) = refusal.problems
    expected = check_character(FIRST17)
    assert problem.code == "bad_credit_code" and problem.subject == "institution.credit_code"
    assert problem.message_zh == f"统一社会信用代码第18位校验码应为 {expected}（现为 {WRONG_CHECK}），请核对营业执照"
    assert f"the 18th character (the check character) should be {expected}, not {WRONG_CHECK}" in problem.message_en
    assert "[bad_credit_code]" in str(refusal)
    assert phone.records() == []  # nothing was signed


@pytest.mark.parametrize(("code", "zh", "en"), [
    (FIRST17, "应为18位，现为17位", "has 17 characters, not 18"),
    ("91330106MA2B3C4DO" + "0", "不使用的字符 O", "contains O, which codes never use"),
])
def test_given_a_credit_code_of_the_wrong_shape_when_the_phone_opens_a_case_then_it_refuses(
        make_phone, zhang, code, zh, en):
    phone = make_phone(zhang)

    (problem,) = refused(lambda: phone.open_case({**CENTRE, "credit_code": code})).problems

    assert problem.code == "bad_credit_code" and zh in problem.message_zh and en in problem.message_en


def test_given_a_region_code_not_in_the_reference_data_when_the_phone_reports_a_clue_then_it_refuses(
        make_phone, zhang):
    phone = make_phone(zhang)

    (problem,) = refused(lambda: phone.report_clue("complaint", {**CENTRE, "region": "330199"},
                                                   "家长举报周末违规培训")).problems

    assert problem.code == "unknown_region"
    assert problem.message_zh == "区划代码 330199 不在参考数据中，请从列表中选择所在区县"
    assert problem.message_en == "region code 330199 is not in the reference data: choose the district from the list"


def test_given_a_category_not_in_the_catalogue_when_the_phone_records_a_finding_then_it_refuses(
        make_phone, zhang, wang):
    phone = make_phone(zhang)
    iid = phone.start_inspection(phone.open_case(CENTRE), [wang.id])

    (problem,) = refused(lambda: phone.add_finding(iid, "parking", "门口违规停车")).problems

    assert problem.code == "unknown_category" and problem.subject == "category"
    assert "违法类别 parking 不在违法行为目录中" in problem.message_zh
    assert "violation category parking is not in the catalogue" in problem.message_en
    assert [r.type for r in phone.records()] == ["case.open", "inspection.start"]


def test_given_an_officer_whose_certificate_expired_yesterday_when_the_phone_signs_an_inspection_start_then_it_refuses(
        make_phone, zhang, wang, db, clock):
    yesterday = clock.day - timedelta(days=1)
    certificate(db, wang, valid_from=clock.day - timedelta(days=700), valid_until=yesterday)
    phone = make_phone(zhang)
    case = phone.open_case(CENTRE)

    refusal = refused(lambda: phone.start_inspection(case, [wang.id]))

    expired, too_few = refusal.problems
    assert expired.code == "certificate_expired" and expired.subject == wang.id
    assert expired.message_zh == (f"王芳 的执法证（{wang.cert_number}）已于 {yesterday} 过期，"
                                  "请由持有效执法证的人员参加检查")
    assert expired.message_en.startswith(f"王芳's certificate {wang.cert_number} expired on {yesterday}")
    assert too_few.code == "fewer_than_two_certified"
    assert "只有 1 名" in too_few.message_zh and "《行政处罚法》第四十二条" in too_few.message_zh
    assert "only 1 officer(s) with a valid certificate present" in too_few.message_en
    assert [r.type for r in phone.records()] == ["case.open"]


@pytest.mark.parametrize(("given", "code", "said"), [
    ({"number": None, "valid_until": None}, "no_certificate", "没有执法证"),
    ({"valid_from": "tomorrow", "valid_until": "next year"}, "certificate_not_yet_valid", "起才生效"),
])
def test_given_an_officer_without_a_valid_certificate_today_when_the_phone_starts_an_inspection_then_it_refuses(
        make_phone, zhang, wang, officers, db, clock, given, code, said):
    days = {"tomorrow": clock.day + timedelta(days=1), "next year": clock.day + timedelta(days=365)}
    certificate(db, wang, **{k: days.get(v, v) for k, v in given.items()})
    li = officers.make(name="李强")
    phone = make_phone(zhang)

    problems = refused(lambda: phone.start_inspection(phone.open_case(CENTRE), [wang.id, li.id])).problems

    (problem,) = problems  # zhang and li are certified: two are present, only wang's certificate is wrong
    assert problem.code == code and problem.subject == wang.id and said in problem.message_zh


def test_given_an_officer_alone_when_the_phone_starts_an_inspection_then_it_asks_for_a_second_certified_officer(
        make_phone, zhang):
    phone = make_phone(zhang)

    (problem,) = refused(lambda: phone.start_inspection(phone.open_case(CENTRE), [])).problems

    assert problem.code == "fewer_than_two_certified" and "只有 1 名" in problem.message_zh


def test_given_an_officer_of_another_district_when_the_phone_starts_an_inspection_then_it_cannot_vouch_for_them(
        make_phone, zhang, wang, officers):
    """The crew list is scoped to the jurisdiction: a Binjiang officer is unknown to a Xihu phone."""
    stranger = officers.make(region="330108", name="赵六")
    phone = make_phone(zhang)

    (problem,) = refused(lambda: phone.start_inspection(phone.open_case(CENTRE), [wang.id, stranger.id])).problems

    assert problem.code == "unknown_officer" and problem.subject == stranger.id
    assert "请联网更新参考数据或核实在场人员" in problem.message_zh


# --------------------------------------------------------------------------- what passes


def test_given_a_correct_field_visit_when_the_phone_signs_it_then_every_check_passes_and_the_server_applies_it(
        make_phone, zhang, wang, officers):
    city = officers.make(region="330100", name="市局钱七")  # the city's officers inspect in every district
    phone = make_phone(zhang)

    case = phone.open_case(CENTRE)
    iid = phone.start_inspection(case, [wang.id, city.id])
    assert phone.last_check.ok and phone.last_check.unchecked == []
    phone.add_finding(iid, "unlicensed", "未取得办学许可证")
    phone.end_inspection(iid, "violation_found")
    answer = phone.push()

    assert answer["counts"] == {"applied": 4}
    assert all("override" not in r.body for r in phone.records())
    inspection = phone.get(f"/api/v1/inspections/{iid}")
    assert inspection["flags"] == [] and inspection["overrides"] == []


# --------------------------------------------------------------------------- override


def test_given_an_expired_certificate_when_the_officer_signs_over_it_then_the_record_carries_the_override_and_the_server_shows_it(  # noqa: E501
        make_phone, zhang, wang, db, clock):
    certificate(db, wang, valid_from=clock.day - timedelta(days=700), valid_until=clock.day - timedelta(days=1))
    phone = make_phone(zhang)
    case = phone.open_case(CENTRE)
    reason = "王芳执法证已提交换证申请，市局同意先行检查"

    iid = phone.start_inspection(case, [wang.id], override=reason)
    fid = phone.add_finding(iid, "fire_safety", "安全出口堵塞")
    answer = phone.push()

    signed = phone.records()[1]
    assert signed.body["override"] == {"codes": ["certificate_expired", "fewer_than_two_certified"],
                                       "reason": reason}
    assert answer["counts"] == {"applied": 3}
    start = {r["op"]: r for r in answer["results"]}[signed.op]
    assert "override" in start["flags"] and "fewer_than_two_certified" in start["flags"]
    inspection = phone.get(f"/api/v1/inspections/{iid}")
    assert set(inspection["flags"]) == {"fewer_than_two_certified", "override"}
    (shown,) = inspection["overrides"]
    assert shown["op"] == signed.op and shown["type"] == "inspection.start" and shown["by"] == zhang.id
    assert shown["codes"] == ["certificate_expired", "fewer_than_two_certified"] and shown["reason"] == reason
    assert [f["flags"] for f in inspection["findings"] if f["id"] == fid] == [[]]
    case_view = phone.get(f"/api/v1/cases/{phone.server_case_id(case)}")
    assert [o["op"] for o in case_view["overrides"]] == [signed.op]


def test_given_an_override_naming_only_some_problems_when_the_phone_signs_then_it_still_refuses_the_others(
        make_phone, zhang, wang, db, clock):
    certificate(db, wang, valid_from=clock.day - timedelta(days=700), valid_until=clock.day - timedelta(days=1))
    phone = make_phone(zhang)
    case = phone.open_case(CENTRE)

    (left,) = refused(lambda: phone.start_inspection(
        case, [wang.id], override=Override("证件过期已报备", codes=["certificate_expired"]))).problems
    assert left.code == "fewer_than_two_certified"
    with pytest.raises(ValueError, match="reason"):
        phone.start_inspection(case, [wang.id], override="   ")
    assert [r.type for r in phone.records()] == ["case.open"]


def test_given_a_misprinted_licence_when_the_officer_signs_over_the_credit_code_then_the_server_opens_the_case_by_name(
        make_phone, zhang, db, client, officers):
    """A code failing GB 32100-2015 is `invalid` on the server, unless the officer overrode the phone's check:
    then it is set aside and the institution is matched by name within its region, and the case's package still
    verifies (the verifier, too, never matches by a failing code)."""
    phone = make_phone(zhang)
    misprinted = FIRST17 + WRONG_CHECK

    case = phone.open_case({**CENTRE, "credit_code": misprinted}, override={"reason": "营业执照印刷有误，已拍照留存",
                                                                            "codes": ["bad_credit_code"]})
    answer = phone.push()

    assert answer["counts"] == {"applied": 1}
    assert phone.records()[0].body["institution"]["credit_code"] == misprinted  # signed as the officer wrote it
    case_view = phone.get(f"/api/v1/cases/{phone.server_case_id(case)}")
    assert case_view["institution"]["name"] == CENTRE["name"] and case_view["institution"]["credit_code"] is None
    assert [o["codes"] for o in case_view["overrides"]] == [["bad_credit_code"]]
    with db.session() as s:
        assert s.scalars(select(Institution.credit_code)).all() == [None]  # no registry entry holds a bad code
    package = client.get(f"/api/v1/cases/{case_view['id']}/package", query_string={"purpose": "移送法制审核"},
                         headers=officers.headers(officers.make(roles=("custodian",))))
    assert package.status_code == 200
    assert verify_package(io.BytesIO(package.data)).problems == []


def test_given_a_bad_credit_code_without_override_when_a_phone_pushes_it_then_the_case_needs_correction(
        client, officers, zhang):
    """Only a signed override sets a failing code aside and matches by name; without one the case still opens (so
    nothing chained after it is orphaned), on an unmatched institution, flagged until corrected (docs/protocol.md,
    "Corrections")."""
    phone = TestPhone(client, zhang, officers.headers(zhang))
    _cid, text = phone.open_case({**CENTRE, "credit_code": FIRST17 + WRONG_CHECK})

    (result,) = phone.push([text])["results"]

    assert (result["status"], result["flags"]) == ("applied", ["needs_correction"])
    assert [n["code"] for n in result["refs"]["needs_correction"]] == ["bad_credit_code"]


@pytest.mark.parametrize(("override", "detail"), [
    ({"codes": [], "reason": "x"}, "override.codes"),
    ({"codes": ["bad_credit_code"], "reason": " "}, "override.reason"),
    ({"codes": ["Bad Code"], "reason": "x"}, "override.codes"),
    ({"codes": ["bad_credit_code"], "reason": "x", "by": "me"}, "override.by"),
])
def test_given_a_malformed_override_when_a_phone_pushes_it_then_the_record_is_invalid(
        client, officers, zhang, override, detail):
    phone = TestPhone(client, zhang, officers.headers(zhang))
    text = phone.record("case.open", {"client_case_id": uid(), "institution": CENTRE, "override": override})

    (result,) = phone.push([text])["results"]

    assert (result["status"], result["code"]) == ("invalid", "bad_body") and detail in result["detail"]


# --------------------------------------------------------------------------- offline, and without reference data


def test_given_reference_data_downloaded_when_the_phone_restarts_offline_then_it_still_checks(
        make_phone, zhang, wang, db, clock, tmp_path):
    make_phone(zhang, "zhang").close()  # online: enrolled, reference data downloaded
    certificate(db, wang, valid_from=clock.day - timedelta(days=700), valid_until=clock.day - timedelta(days=1))
    offline = make_phone(zhang, "zhang", base_url="http://127.0.0.1:9")  # the same phone, no network

    case = offline.open_case(CENTRE)
    assert offline.last_check.ok and offline.last_check.unchecked == []

    assert offline.check("inspection.finding", {"category": "parking"}).codes == ["unknown_category"]
    # wang's certificate was still valid when the phone downloaded it: the copy is what the phone knows
    offline.start_inspection(case, [wang.id])
    assert offline.last_check.ok and offline.last_check.reference_fetched_at


def test_given_no_reference_data_when_the_phone_signs_then_it_reports_the_checks_it_could_not_make(
        make_phone, zhang, wang):
    phone = make_phone(zhang, reference=False)

    case = phone.open_case(CENTRE)
    assert [u.check for u in phone.last_check.unchecked] == ["region"]
    assert "本机没有参考数据，未能核对区划代码" in phone.last_check.unchecked[0].message_zh
    iid = phone.start_inspection(case, [wang.id])
    assert [u.check for u in phone.last_check.unchecked] == ["certificates"]
    assert phone.check("inspection.finding", {"category": "parking"}).unchecked[0].message_en == (
        "no reference data on this phone: the violation category could not be checked; connect once to download it")
    # the credit code needs no reference data: GB 32100-2015 is checked all the same
    assert refused(lambda: phone.open_case({**CENTRE, "credit_code": FIRST17 + WRONG_CHECK})).report.unchecked
    assert [r.type for r in phone.records()] == ["case.open", "inspection.start"] and iid


# --------------------------------------------------------------------------- the officers' reference data


def test_given_officers_of_several_districts_when_a_district_phone_asks_for_the_crew_then_it_gets_its_own_and_the_city(
        client, officers, db, zhang):
    city = officers.make(region="330100", name="市局钱七")
    other = officers.make(region="330108", name="滨江赵六")
    gone = officers.make(region="330106", name="已停用")
    with db.transaction() as s:
        s.get(Officer, gone.id).active = False

    answer = client.get("/api/v1/reference/officers", headers=officers.headers(zhang))

    assert answer.status_code == 200
    listed = {o["id"]: o for o in answer.json["officers"]}
    assert zhang.id in listed and city.id in listed and other.id not in listed and gone.id not in listed
    assert listed[zhang.id] == {"id": zhang.id, "name": "张敏", "department": "education", "region": "330106",
                                "certificate": {"number": zhang.cert_number,
                                                "valid_from": zhang.cert_valid_from.isoformat(),
                                                "valid_until": zhang.cert_valid_until.isoformat()}}
    city_view = client.get("/api/v1/reference/officers", headers=officers.headers(city)).json
    assert other.id in {o["id"] for o in city_view["officers"]}
    assert client.get("/api/v1/reference/officers").status_code == 401


def test_given_overridden_records_when_the_ledger_is_read_then_the_override_is_as_signed(make_phone, zhang, db):
    phone = make_phone(zhang)
    phone.open_case({**CENTRE, "region": "330199"}, override="新设区划，参考数据未更新")
    phone.push()

    with db.session() as s:
        (row,) = s.scalars(select(LedgerRecord)).all()
    assert row.status == "applied" and row.code is None  # the server judges by its own data: not matched,
    assert row.flags == ["needs_correction", "override"]  # so the case needs correction
    assert row.refs["needs_correction"][0]["code"] == "unknown_region" and row.jws == phone.records()[0].jws


def test_given_an_overridden_inspection_when_the_system_audit_runs_then_its_flag_follows_from_the_signed_records(
        make_phone, zhang, wang, db, clock, settings):
    certificate(db, wang, valid_from=clock.day - timedelta(days=700), valid_until=clock.day - timedelta(days=1))
    phone = make_phone(zhang)
    iid = phone.start_inspection(phone.open_case(CENTRE), [wang.id], override="换证期间经批准先行检查")
    phone.end_inspection(iid, "no_violation")
    phone.push()

    code, report = verify(settings)
    assert code == 0, report["problems"]

    with db.transaction() as s:  # someone hides the override from the inspection's flags
        s.execute(update(Inspection).values(flags=["fewer_than_two_certified"]))
    code, report = verify(settings)
    assert code == 1 and named(report, "derived", "inspection", iid)


def test_given_a_case_opened_offline_in_an_unknown_region_when_the_officer_corrects_it_then_the_phone_checks_first(
        make_phone, zhang):
    """docs/protocol.md, "Corrections": a phone without reference data signs a region the server lacks; the case
    still opens, needing correction; the officer's record.correct is checked as a case.open would be."""
    phone = make_phone(zhang, reference=False)
    case = phone.open_case({**CENTRE, "credit_code": GOOD_CODE, "region": "330199"})
    answer = phone.push()
    (result,) = answer["results"]
    assert (result["status"], result["flags"]) == ("applied", ["needs_correction"])
    opened = phone.records()[0].op

    phone.fetch_reference()
    still_wrong = refused(lambda: phone.correct_record(opened, {"institution": {**CENTRE, "region": "330199"}},
                                                       "区划代码更正"))
    assert still_wrong.problems[0].code == "unknown_region"
    phone.correct_record(opened, {"institution": CENTRE}, "区划代码更正：西湖区")
    (fixed,) = phone.push()["results"]
    assert fixed["status"] == "applied" and fixed["refs"]["corrects"] == opened
    view = phone.get(f"/api/v1/cases/{phone.server_case_id(case)}")
    assert view["region"] == "330106" and view["needs_correction"] == [] and view["institution"]["unmatched"] is False
