"""Repair, never orphan (docs/protocol.md, "Corrections"): a slip in the field is flagged and corrected, not lost.

A case.open whose institution cannot be matched still opens its case, so the records chained after it land in it;
a finding whose category the catalogue lacks is kept as sent. Both are flagged `needs_correction`, until the
officer's signed `record.correct` or a reviewer's correction at the desk sets them right. The ledger is never
edited, and a package of the corrected case still verifies.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from backend.cli import main
from backend.core.models import Case, Correction, CustodyEvent, Finding, Institution, LedgerRecord, utcnow
from media import verify_html
from media.custody import log as custody
from media.custody.encoding import fact_digest
from media.package_verify import corrections, server_facts, verify_package
from tests.casework.test_system_audit import verify
from tests.media.test_package import rewrite
from tests.media.verify_page import driver, in_python, open_and_pick, shot
from tests.phones import TestPhone, uid

__all__ = ["driver"]  # the browser, for the verify.html tests

REGISTERED_CODE = "91330100799655058B"
MISTYPED_CODE = "91330100799655058C"  # the check character should be B
CENTRE = {"name": "星辰教育培训学校", "region": "330106", "credit_code": MISTYPED_CODE}
PURPOSE = "移送法制审核"


@pytest.fixture
def admin(officers):
    return officers.make(region="330100", roles=("officer", "admin"))


@pytest.fixture
def registered(client, officers, admin):
    r = client.post("/api/v1/institutions", headers=officers.headers(admin),
                    json={"name": "星辰教育培训学校", "region": "330106", "credit_code": REGISTERED_CODE})
    assert r.status_code == 201, r.json
    return r.json


@pytest.fixture
def reviewer(officers):
    return officers.make(region="330100", roles=("officer", "reviewer"))  # sees every district of the city


def phone_for(client, officers, **kw) -> TestPhone:
    officer = officers.make(**kw)
    return TestPhone(client, officer, officers.headers(officer))


class Inspection:
    """One inspection as a phone pushes it whole: case.open, start, finding, capture, end."""

    def __init__(self, phone: TestPhone, partner, institution: dict, category: str = "unlicnesed") -> None:
        self.phone = phone
        self.client_case_id, opened = phone.open_case(institution)
        self.inspection_id, started = phone.start(self.client_case_id, [phone.officer.id, partner.id])
        finding = phone.finding(self.inspection_id, category)
        self.evidence_id, captured = phone.evidence(self.inspection_id)
        ended = phone.end(self.inspection_id)
        self.records = [opened, started, finding, captured, ended]
        self.results = phone.push(self.records)["results"]
        self.open_op, self.finding_op = (json.loads(_payload(r))["op"] for r in (opened, finding))
        self.finding_id = json.loads(_payload(finding))["body"]["finding_id"]
        self.case_id = self.results[0]["refs"]["case_id"]

    def view(self, client) -> dict:
        r = client.get(f"/api/v1/cases/{self.case_id}", headers=self.phone.headers)
        assert r.status_code == 200, r.json
        return r.json

    def correct(self, op: str, fields: dict, reason: str = "营业执照核对后更正", **kw) -> dict:
        text = self.phone.record("record.correct", {"op": op, "fields": fields, "reason": reason}, **kw)
        (result,) = self.phone.push([text])["results"]
        return result


def _payload(jws: str) -> str:
    part = jws.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode()


def _leaves(db, case_id: str, action: str) -> list[dict]:
    with db.session() as s:
        return [json.loads(e.leaf) for e in s.scalars(select(CustodyEvent).where(
            CustodyEvent.case_id == case_id, CustodyEvent.action == action).order_by(CustodyEvent.leaf_index))]


@pytest.fixture
def bad(client, officers) -> Inspection:
    """A phone whose case.open has a mistyped credit code and whose finding a misspelt category."""
    phone = phone_for(client, officers)
    return Inspection(phone, officers.make(department="market"), CENTRE)


def test_given_a_bad_credit_code_and_a_misspelt_category_when_the_whole_inspection_is_pushed_then_it_lands_flagged(
        client, db, bad):
    assert [r["status"] for r in bad.results] == ["applied"] * 5  # nothing orphaned: no unknown_case
    opened, _started, finding, _captured, _ended = bad.results
    assert opened["flags"] == ["needs_correction"]
    (need,) = opened["refs"]["needs_correction"]
    assert (need["code"], need["field"]) == ("bad_credit_code", "institution") and MISTYPED_CODE in need["detail"]
    assert finding["flags"] == ["needs_correction"]
    assert finding["refs"]["needs_correction"] == [{"code": "unknown_category", "field": "category",
                                                    "detail": "no violation category 'unlicnesed'"}]

    view = bad.view(client)
    assert view["flags"] == ["needs_correction"]
    assert [(n["subject"], n["code"]) for n in view["needs_correction"]] == [
        ("case", "bad_credit_code"), ("finding", "unknown_category")]
    (inspection,) = view["inspections"]
    (kept,) = inspection["findings"]
    assert kept["category"] == "unlicnesed" and kept["flags"] == ["needs_correction"]
    assert [e["id"] for e in view["evidence"]] == [bad.evidence_id] and inspection["outcome"] == "violation_found"
    institution = view["institution"]
    assert (institution["name"], institution["region"], institution["credit_code"]) == (
        CENTRE["name"], "330106", None)  # what the phone said, never a failing code in the registry
    assert institution["unmatched"] is True and institution["provisional"] is True
    assert view["corrections"] == []
    (leaf,) = _leaves(db, bad.case_id, "needs_correction")
    assert (leaf["corrects"], leaf["codes"], leaf["fields"]) == (bad.open_op, ["bad_credit_code"], ["institution"])


def test_given_an_unmatched_institution_when_another_phone_names_the_same_centre_then_it_is_not_merged_into_it(
        client, officers, bad):
    other = phone_for(client, officers)
    (result,) = other.push([other.open_case({"name": CENTRE["name"], "region": "330106"})[1]])["results"]
    assert result["status"] == "applied" and result["refs"]["case_id"] != bad.case_id
    assert "merged" not in result["refs"] and "flags" not in result


def test_given_the_flagged_inspection_when_the_officer_signs_corrections_then_its_rows_are_set_right_and_flag_clears(
        client, db, bad, registered):
    case_fix = bad.correct(bad.open_op, {"institution": {"name": CENTRE["name"], "region": "330106",
                                                          "credit_code": REGISTERED_CODE}})
    assert case_fix["status"] == "applied", case_fix
    assert case_fix["refs"]["institution_id"] == registered["id"]
    assert case_fix["refs"]["changed"] == ["institution_id"]
    view = bad.view(client)
    assert view["institution_id"] == registered["id"] and view["flags"] == []
    assert [n["subject"] for n in view["needs_correction"]] == ["finding"]  # the finding still needs it

    finding_fix = bad.correct(bad.finding_op, {"category": "unlicensed"}, reason="类别拼写错误")
    assert (finding_fix["status"], finding_fix["refs"]["finding_id"]) == ("applied", bad.finding_id)
    view = bad.view(client)
    assert view["needs_correction"] == [] and view["flags"] == []
    (kept,) = view["inspections"][0]["findings"]
    assert kept["category"] == "unlicensed" and kept["flags"] == []
    first, second = view["corrections"]
    assert (first["source"], first["subject"], first["corrects"], first["by"]) == (
        "phone", "case", bad.open_op, bad.phone.officer.id)
    assert first["changed"]["institution_id"][1] == registered["id"]
    assert (second["subject"], second["subject_id"], second["changed"], second["reason"]) == (
        "finding", bad.finding_id, {"category": ["unlicnesed", "unlicensed"]}, "类别拼写错误")

    with db.session() as s:  # the ledger keeps what was signed
        signed = s.scalars(select(LedgerRecord).where(LedgerRecord.op == bad.finding_op)).one()
        assert json.loads(_payload(signed.jws))["body"]["category"] == "unlicnesed"
        assert s.get(Finding, bad.finding_id).category == "unlicensed"
    corrected = _leaves(db, bad.case_id, "corrected")
    assert [(c["subject"], c["corrects"], c["op"]) for c in corrected] == [
        ("case", bad.open_op, case_fix["op"]), ("finding", bad.finding_op, finding_fix["op"])]
    assert corrected[1]["fields"] == {"category": fact_digest("unlicensed")}
    changed = _leaves(db, bad.case_id, "case_changed")[-1]
    assert changed["facts"]["institution_id"] == fact_digest(registered["id"])


def test_given_a_correction_in_the_same_push_as_the_slip_then_both_apply(client, officers, registered):
    phone = phone_for(client, officers)
    cid, opened = phone.open_case(CENTRE)
    op = json.loads(_payload(opened))["op"]
    fix = phone.record("record.correct", {"op": op, "reason": "更正信用代码", "fields": {
        "institution": {"credit_code": REGISTERED_CODE, "name": CENTRE["name"], "region": "330106"}}})
    iid, started = phone.start(cid, [phone.officer.id])
    finding = phone.finding(iid, "fire-safety")
    fix_finding = phone.record("record.correct", {"op": json.loads(_payload(finding))["op"], "reason": "拼写",
                                                  "fields": {"category": "fire_safety",
                                                             "description": "消防通道堵塞"}})
    results = phone.push([opened, fix, started, finding, fix_finding])["results"]
    assert [r["status"] for r in results] == ["applied"] * 5, results
    assert results[1]["refs"]["institution_id"] == registered["id"]
    case = client.get(f"/api/v1/cases/{results[0]['refs']['case_id']}", headers=phone.headers).json
    (kept,) = case["inspections"][0]["findings"]
    assert (kept["category"], kept["description"]) == ("fire_safety", "消防通道堵塞")
    assert case["needs_correction"] == [] and case["region"] == "330106"


@pytest.mark.parametrize(("make", "code"), [
    (lambda bad, other: (uid(), {"category": "unlicensed"}), "unknown_record"),
    (lambda bad, other: (bad.finding_op, {"category": "parking"}), "unknown_category"),
    (lambda bad, other: (bad.finding_op, {"institution": {"name": "甲", "region": "330106"}}), "not_correctable"),
    (lambda bad, other: (bad.open_op, {"category": "unlicensed"}), "not_correctable"),
    (lambda bad, other: (bad.open_op, {"institution": {"name": "甲", "region": "339999"}}), "unknown_region"),
    (lambda bad, other: (bad.open_op, {"institution": {**CENTRE, "credit_code": "91330100799655058D"}}),
     "bad_credit_code"),
    (lambda bad, other: (other, {"category": "unlicensed"}), "not_signer"),
    (lambda bad, other: (bad.open_op, {"summary": "x"}), "bad_body"),
])
def test_given_a_correction_that_cannot_be_applied_then_it_is_invalid_with_its_code_and_changes_nothing(
        client, officers, bad, make, code):
    colleague = phone_for(client, officers)
    theirs = Inspection(colleague, officers.make(department="market"), {"name": "另一家", "region": "330106"})
    op, fields = make(bad, theirs.finding_op)
    result = bad.correct(op, fields)
    assert (result["status"], result["code"]) == ("invalid", code), result
    assert result["detail"]
    view = bad.view(client)
    assert len(view["needs_correction"]) == 2 and view["corrections"] == []


def test_given_a_record_that_is_not_correctable_then_its_correction_is_refused(client, bad):
    start_op = json.loads(_payload(bad.records[1]))["op"]
    result = bad.correct(start_op, {"category": "unlicensed"})
    assert (result["status"], result["code"]) == ("invalid", "not_correctable")
    assert "inspection.start" in result["detail"]


def test_given_an_institution_with_an_open_case_when_a_correction_names_it_then_it_is_refused(client, officers,
                                                                                              bad, registered):
    other = phone_for(client, officers)  # same department: the registered centre now has an open case
    (opened,) = other.push([other.open_case({"id": registered["id"]})[1]])["results"]
    result = bad.correct(bad.open_op, {"institution": {"id": registered["id"]}})
    assert (result["status"], result["code"]) == ("invalid", "open_case_exists")
    assert opened["refs"]["case_id"] in result["detail"]


def test_given_another_case_with_an_unknown_region_when_a_reviewer_corrects_it_then_it_is_a_custody_event(
        client, officers, db, reviewer):
    phone = phone_for(client, officers)
    slip = Inspection(phone, officers.make(department="market"), {"name": "晨曦书院", "region": "330199"},
                      category="unlicensed")
    assert slip.results[0]["refs"]["needs_correction"][0]["code"] == "unknown_region"
    headers = officers.headers(reviewer)
    body = {"subject": "case", "fields": {"institution": {"name": "晨曦书院", "region": "330108"}},
            "reason": "区划代码录入错误，经核实为滨江区"}
    r = client.post(f"/api/v1/cases/{slip.case_id}/corrections", json=body, headers=headers)
    assert r.status_code == 201, r.json
    assert (r.json["source"], r.json["by"], r.json["corrects"], r.json["op"]) == (
        "reviewer", reviewer.id, slip.open_op, None)
    assert r.json["changed"]["region_code"] == ["330106", "330108"]

    (leaf,) = _leaves(db, slip.case_id, "corrected")
    assert (leaf["actor"], leaf["evidence_id"], leaf["subject"], leaf["subject_id"], leaf["reason"]) == (
        reviewer.id, None, "case", slip.case_id, body["reason"])
    assert leaf["fields"] == {"institution": fact_digest(body["fields"]["institution"])} and "op" not in leaf
    with db.session() as s:
        case = s.get(Case, slip.case_id)
        institution = s.get(Institution, case.institution_id)
        assert (case.region_code, institution.name, institution.unmatched) == ("330108", "晨曦书院", False)
    changed = _leaves(db, slip.case_id, "case_changed")[-1]
    assert changed["actor"] == reviewer.id and changed["facts"]["region_code"] == fact_digest("330108")

    view = client.get(f"/api/v1/cases/{slip.case_id}", headers=headers).json
    assert [n["subject"] for n in view["needs_correction"]] == []  # its finding's category was known
    assert [c["source"] for c in view["corrections"]] == ["reviewer"]
    assert client.get(f"/api/v1/inspections/{slip.inspection_id}", headers=headers).json["case_id"] == slip.case_id


def test_a_reviewer_corrects_a_finding_and_only_reviewers_may(client, officers, db, bad, reviewer):
    url = f"/api/v1/cases/{bad.case_id}/corrections"
    body = {"subject": "finding", "subject_id": bad.finding_id, "fields": {"category": "unlicensed"},
            "reason": "类别拼写错误"}
    assert client.post(url, json=body, headers=bad.phone.headers).status_code == 403
    headers = officers.headers(reviewer)
    for wrong, status in (({**body, "fields": {"category": "parking"}}, 422),
                          ({**body, "fields": {"institution": {"id": "x"}}}, 422),
                          ({**body, "fields": {}}, 422),
                          ({**body, "reason": "  "}, 422),
                          ({**body, "subject_id": uid()}, 404),
                          ({**body, "subject": "inspection"}, 422)):
        r = client.post(url, json=wrong, headers=headers)
        assert r.status_code == status, (wrong, r.json)
    assert client.post("/api/v1/cases/case_nope/corrections", json=body, headers=headers).status_code == 404
    r = client.post(url, json=body, headers=headers)
    assert r.status_code == 201, r.json
    view = bad.view(client)
    assert [n["subject"] for n in view["needs_correction"]] == ["case"]
    (leaf,) = _leaves(db, bad.case_id, "corrected")
    assert (leaf["subject_id"], leaf["corrects"], leaf["fields"]) == (
        bad.finding_id, bad.finding_op, {"category": fact_digest("unlicensed")})


def _package(client, officers, case_id: str) -> bytes:
    custodian = officers.make(roles=("custodian",))
    r = client.get(f"/api/v1/cases/{case_id}/package", query_string={"purpose": PURPOSE},
                   headers=officers.headers(custodian))
    assert r.status_code == 200, r.data[:500]
    return r.data


def test_given_a_flagged_case_when_it_is_exported_before_correction_then_its_package_verifies(client, officers, bad):
    report = verify_package(io.BytesIO(_package(client, officers, bad.case_id)))
    assert report.problems == []
    assert any("could not match the institution" in n and "(bad_credit_code)" in n for n in report.notes)


def test_the_verifiers_know_the_custody_logs_correction_leaves():
    assert server_facts.CORRECTION_ACTIONS == corrections.CORRECTION_ACTIONS == custody.CORRECTION_ACTIONS


@pytest.fixture
def corrected(app, client, officers, bad, registered, reviewer) -> SimpleNamespace:
    """The bad inspection corrected: its case.open and finding by the officer's signed records, the finding's
    description once more by a reviewer; then exported."""
    bad.correct(bad.open_op, {"institution": {"name": CENTRE["name"], "region": "330106",
                                              "credit_code": REGISTERED_CODE}})
    bad.correct(bad.finding_op, {"category": "unlicensed", "description": "无证开展学科类培训"})
    r = client.post(f"/api/v1/cases/{bad.case_id}/corrections", headers=officers.headers(reviewer),
                    json={"subject": "finding", "subject_id": bad.finding_id, "reason": "经审核更正描述",
                          "fields": {"description": "无证开展学科类培训（初中数学）"}})
    assert r.status_code == 201, r.json
    return SimpleNamespace(zip=_package(client, officers, bad.case_id), signer=app.extensions["fieldcase"].signer,
                           key=client.get("/api/v1/custody/public-key").json["public_key"], bad=bad)


def test_given_a_corrected_case_when_it_is_exported_then_verify_package_holds_it_against_the_corrections(
        corrected, tmp_path):
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(corrected.zip)).read("manifest.json"))
    assert [r["type"] for r in manifest["records"]].count("record.correct") == 2
    assert [json.loads(e["leaf"])["action"] for e in manifest["case"]["custody_events"]].count("corrected") == 3
    (finding,) = manifest["findings"]
    assert (finding["category"], finding["description"]) == ("unlicensed", "无证开展学科类培训（初中数学）")
    assert manifest["case"]["institution"]["credit_code"] == REGISTERED_CODE

    path = tmp_path / "package.zip"
    path.write_bytes(corrected.zip)
    result = CliRunner().invoke(main, ["verify-package", str(path), "--public-key", corrected.key])
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith(": OK")


def test_given_a_package_of_one_item_then_it_carries_the_correction_of_the_finding_citing_it(client, officers):
    phone = phone_for(client, officers)
    cid, opened = phone.open_case(CENTRE)
    iid, started = phone.start(cid, [phone.officer.id, officers.make(department="market").id])
    eid, captured = phone.evidence(iid)
    finding = phone.record("inspection.finding", {"inspection_id": iid, "finding_id": uid(), "category": "unlicnesed",
                                                  "description": "现场发现无证培训", "evidence": [eid]})
    fix = phone.record("record.correct", {"op": json.loads(_payload(finding))["op"], "reason": "类别拼写错误",
                                          "fields": {"category": "unlicensed"}})
    results = phone.push([opened, started, captured, finding, phone.end(iid), fix])["results"]
    assert [r["status"] for r in results] == ["applied"] * 6
    custodian = officers.make(roles=("custodian",))
    r = client.get(f"/api/v1/cases/{results[0]['refs']['case_id']}/package", headers=officers.headers(custodian),
                   query_string={"purpose": PURPOSE, "evidence": eid})
    assert r.status_code == 200, r.data[:300]
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(r.data)).read("manifest.json"))
    assert sorted(rec["type"] for rec in manifest["records"]) == sorted(
        ["inspection.start", "evidence.capture", "inspection.finding", "inspection.end", "record.correct"])
    assert manifest["findings"][0]["category"] == "unlicensed"
    report = verify_package(io.BytesIO(r.data))
    assert report.problems == []  # the case.open's needs_correction leaf names a record this part does not carry


def _finding_record_moved_out(m: dict) -> None:
    rec = next(r for r in m["records"] if r["type"] == "record.correct"
               and json.loads(_payload(r["jws"]))["body"]["fields"].get("category"))
    m["records"].remove(rec)
    m["devices"][rec["device"]]["other_records"].append({"seq": rec["seq"], "hash": rec["hash"]})


# What an insider holding the custody key might change and reseal, and the problem both verifiers name.
TAMPERED = {
    "category-by-phone": (lambda m: m["findings"][0].update(category="fire_safety"),
                          "category 'fire_safety' differs from the signed record ('unlicensed')"),
    "description-by-reviewer": (lambda m: m["findings"][0].update(description="现场未发现问题"),
                                "description '现场未发现问题' is not the value a reviewer's correction bound at leaf"),
    "correction-moved-out": (_finding_record_moved_out, "which is not in the package"),
    "institution-code": (lambda m: m["case"]["institution"].update(credit_code="91330100799655059X"),
                         "institution.credit_code '91330100799655059X' differs from the signed record"),
}


@pytest.mark.parametrize("kind", sorted(TAMPERED))
def test_given_a_corrected_case_whose_manifest_was_edited_and_resealed_then_verify_package_names_it(corrected, kind):
    change, says = TAMPERED[kind]
    data = rewrite(corrected.zip, change, reseal=corrected.signer)
    problems = verify_package(io.BytesIO(data), corrected.key).problems
    assert any(says in p for p in problems), problems


def _page(data: bytes, tmp_path) -> SimpleNamespace:
    """What open_and_pick needs of a package: the verify.html it carries, unzipped as a clerk would, and a folder."""
    page = tmp_path / verify_html.NAME
    page.write_bytes(zipfile.ZipFile(io.BytesIO(data)).read(verify_html.NAME))
    return SimpleNamespace(page=page, folder=tmp_path)


def test_given_a_corrected_case_when_a_clerk_picks_it_in_verify_html_then_it_verifies_as_verify_package_does(
        driver, corrected, tmp_path):
    seen = open_and_pick(driver, _page(corrected.zip, tmp_path), corrected.zip, key=corrected.key)
    shot(driver, "corrected-case")
    assert (seen.verdict, seen.problems) == ("ok", [])
    for kind in sorted(TAMPERED):
        change, says = TAMPERED[kind]
        data = rewrite(corrected.zip, change, reseal=corrected.signer)
        seen = open_and_pick(driver, _page(corrected.zip, tmp_path), data, key=corrected.key, name=f"{kind}.zip")
        assert seen.verdict == "fail", kind
        assert any(says in p for p in seen.problems), (kind, seen.problems)
        assert seen.problems == in_python(data, corrected.key), kind


def test_given_a_flagged_case_when_a_clerk_picks_it_in_verify_html_then_it_verifies_with_the_same_note(
        driver, client, officers, tmp_path):
    phone = phone_for(client, officers)
    slip = Inspection(phone, officers.make(department="market"), {"id": "ins_nowhere"}, category="unlicensed")
    data = _package(client, officers, slip.case_id)
    report = verify_package(io.BytesIO(data))
    assert report.problems == []
    note = next(n for n in report.notes if "awaits correction" in n)
    assert "(unknown_institution)" in note
    seen = open_and_pick(driver, _page(data, tmp_path), data)
    assert (seen.verdict, seen.problems) == ("ok", [])
    assert note in seen.notes


def test_given_corrected_cases_when_the_system_audit_runs_then_all_is_consistent(corrected, settings):
    code, report = verify(settings)
    assert code == 0, report["problems"]
    assert report["counts"]["corrections"] == 3


def test_given_a_corrected_finding_edited_behind_the_servers_back_when_the_audit_runs_then_it_is_named(
        corrected, settings, db):
    finding_id = corrected.bad.finding_id
    with db.transaction() as s:
        s.execute(update(Finding).where(Finding.id == finding_id).values(category="fire_safety"))
        s.add(Correction(case_id=corrected.bad.case_id, subject="finding", subject_id=finding_id, corrects=None,
                         fields={"category": "fire_safety"}, changed={}, reason="悄悄改", source="reviewer", op=None,
                         device_id=None, by="ofc_insider", at=utcnow(), created_at=utcnow()))
    code, report = verify(settings)
    assert code == 1
    named = {(p["check"], p["kind"], p["object"]) for p in report["problems"]}
    assert ("derived", "finding", finding_id) not in named  # the forged correction makes the row agree...
    assert any(p["kind"] == "correction" and "no 'corrected' custody leaf" in p["message"]
               for p in report["problems"])  # ...but nothing bound it


def test_given_a_flagged_case_when_a_reviewer_corrects_it_in_the_console_then_the_page_shows_the_correction(
        client, officers, bad, reviewer):
    from tests.web.test_console import post_form, sign_in

    sign_in(client, reviewer)
    page_url = f"/console/cases/{bad.case_id}"
    page = client.get(page_url).get_data(as_text=True)
    assert 'id="needs-correction"' in page and "bad_credit_code" in page and "unknown_category" in page
    r = post_form(client, page_url, f"/console/cases/{bad.case_id}/corrections",
                  {"subject": "finding", "subject_id": bad.finding_id, "category": "unlicensed", "description": "",
                   "reason": "违法类别拼写错误"}, follow_redirects=True)
    assert r.status_code == 200 and "已更正" in r.get_data(as_text=True)
    r = post_form(client, page_url, f"/console/cases/{bad.case_id}/corrections",
                  {"subject": "case", "name": CENTRE["name"], "region": "330106", "credit_code": MISTYPED_CODE,
                   "reason": "再核对"}, follow_redirects=True)
    assert "bad_credit_code" in r.get_data(as_text=True)  # refused, saying why
    r = post_form(client, page_url, f"/console/cases/{bad.case_id}/corrections",
                  {"subject": "case", "name": CENTRE["name"], "region": "330106", "credit_code": REGISTERED_CODE[:17]
                   + "B", "reason": "营业执照核对"}, follow_redirects=True)
    page = r.get_data(as_text=True)
    assert 'id="corrections-made"' in page and "营业执照核对" in page and 'id="needs-correction"' not in page
    assert bad.view(client)["needs_correction"] == []


def test_given_slips_when_a_reviewer_reads_the_audit_then_each_needs_correction_until_corrected(
        client, officers, bad, reviewer):
    headers = officers.headers(reviewer)

    def issues() -> dict[str, dict]:
        r = client.get("/api/v1/audit/issues", query_string={"kind": "needs_correction"}, headers=headers)
        assert r.status_code == 200, r.json
        return {i["key"]: i for i in r.json["items"]}

    found = issues()
    assert set(found) == {f"needs_correction:{bad.open_op}", f"needs_correction:{bad.finding_op}"}
    finding = found[f"needs_correction:{bad.finding_op}"]
    assert (finding["details"]["subject_id"], finding["details"]["case_id"]) == (bad.finding_id, bad.case_id)
    assert [n["code"] for n in finding["details"]["needs"]] == ["unknown_category"]
    bad.correct(bad.finding_op, {"category": "unlicensed"})
    assert set(issues()) == {f"needs_correction:{bad.open_op}"}
    one = client.get(f"/api/v1/audit/issues/needs_correction:{bad.open_op}", headers=headers)
    assert one.status_code == 200 and one.json["details"]["needs"][0]["code"] == "bad_credit_code"
