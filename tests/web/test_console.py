"""The review console (/console/), through Flask's test client: given what phones pushed and uploaded, when a
custodian or reviewer works in the browser, then they see it, within their jurisdiction, in their language.

The data comes from real phones (Ed25519 keys, hash chains) pushing through the API and real uploads to the
local store, as in the audit tests; the console is driven as a browser would: GET a page, read the CSRF token
from its form, POST the form, follow the redirect.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from datetime import timedelta
from html import unescape

import pytest
from sqlalchemy import select, update

from backend.core.models import AuditReview, CustodyEvent, Officer
from media.custody.merkle import leaf_hash
from media.custody.proofs import verify_inclusion
from tests import images
from tests.casework.test_audit import Field
from tests.conftest import PASSWORD
from tests.phones import TestPhone

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def text_of(response) -> str:
    return unescape(response.get_data(as_text=True))


def sign_in(client, officer, *, password: str = PASSWORD, follow: bool = False, **extra):
    page = client.get("/console/login")
    assert page.status_code == 200
    return client.post("/console/login", data={"csrf_token": csrf_of(page.get_data(as_text=True)),
                                               "username": officer.username, "password": password, **extra},
                       follow_redirects=follow)


def post_form(client, page_url: str, action: str, data: dict, **kwargs):
    """Submit a form of the page at `page_url` with that page's CSRF token, as a browser does."""
    page = client.get(page_url)
    assert page.status_code == 200, page.get_data(as_text=True)[:500]
    return client.post(action, data={"csrf_token": csrf_of(page.get_data(as_text=True)), **data}, **kwargs)


class Scene:
    """A Xihu inspection with two clips of CAM-7 (#1 0–200 s, #3 260–600 s: a 60 s gap, #2 missing) and a photo
    whose EXIF agrees with its declaration; all uploaded and verified."""

    def __init__(self, client, officers) -> None:
        self.field = f = Field(client, officers)
        self.iid = f.start()
        self.first = f.clip(self.iid, "CAM-7", 1, 0, 200)
        self.third = f.clip(self.iid, "CAM-7", 3, 260, 600)
        taken = f.at(100)
        self.photo_bytes = images.jpeg_with_exif(size=(96, 72), taken=taken.replace(tzinfo=None))
        self.photo = f.declare(self.photo_bytes, captured_at=taken, inspection_id=self.iid,
                               location={"lat": images.WEST_LAKE[0], "lon": images.WEST_LAKE[1], "accuracy_m": 10})
        f.end(self.iid, 600)
        f.push()
        for eid, data in (self.first, self.third, (self.photo, self.photo_bytes)):
            assert f.upload(eid, data)["status"] == "verified"
        self.case_id = f.case_id
        self.reviewer = officers.make(roles=("reviewer",), name="审核员周", certified=False)
        self.custodian = officers.make(roles=("custodian",), name="保管员陈", certified=False)


@pytest.fixture
def scene(client, officers) -> Scene:
    return Scene(client, officers)


# ---------------------------------------------------------------------------------------------- signing in


def test_a_reviewer_signs_in_sees_the_cases_and_signs_out(client, scene):
    signed = sign_in(client, scene.reviewer)
    assert signed.status_code == 303 and signed.headers["Location"] == "/console/cases"

    cases = client.get("/console/cases")
    assert cases.status_code == 200
    assert scene.case_id in text_of(cases) and "西湖区启航培训中心" in text_of(cases)
    cookie = client.get_cookie("fieldcase_console", path="/console")
    assert cookie is not None

    out = post_form(client, "/console/cases", "/console/logout", {})
    assert out.status_code == 303 and out.headers["Location"] == "/console/login"
    assert client.get("/console/cases").headers["Location"].startswith("/console/login")

    # The signed cookie as it was before signing out is dead too: its sign-in was revoked on the server.
    client.set_cookie(cookie.key, cookie.value, path="/console")
    assert client.get("/console/cases").status_code == 302


def test_signing_in_uses_the_api_password_check_and_throttle(client, officers, scene):
    wrong = sign_in(client, scene.reviewer, password="not the password")
    assert wrong.status_code == 401 and "用户名或密码错误" in text_of(wrong)
    for _ in range(4):
        assert sign_in(client, scene.reviewer, password="still wrong").status_code == 401

    throttled = sign_in(client, scene.reviewer)  # the right password, past the limit
    assert throttled.status_code == 429 and "登录失败次数过多" in text_of(throttled)
    assert int(throttled.headers["Retry-After"]) > 0
    # One throttle for both doors: the API refuses this username too.
    api = client.post("/api/v1/auth/token", json={"username": scene.reviewer.username, "password": PASSWORD})
    assert api.status_code == 429


def test_an_officer_gets_a_clear_refusal_and_no_session(client, scene):
    refused = sign_in(client, scene.field.officer)
    assert refused.status_code == 403
    body = text_of(refused)
    assert "审查台供证据保管员、审核员、法制审核员和管理员使用" in body and "执法人员" in body
    assert client.get("/console/cases").status_code == 302


def test_after_signing_in_the_browser_goes_where_it_was_asked_but_never_off_site(client, scene):
    assert client.get(f"/console/cases/{scene.case_id}").headers["Location"] == \
        f"/console/login?next=/console/cases/{scene.case_id}"
    went = sign_in(client, scene.reviewer, next=f"/console/cases/{scene.case_id}")
    assert went.headers["Location"] == f"/console/cases/{scene.case_id}"
    post_form(client, "/console/cases", "/console/logout", {})
    for hostile in ("//evil.example/", "https://evil.example/", "/api/v1/me"):
        assert sign_in(client, scene.reviewer, next=hostile).headers["Location"] == "/console/cases"
        post_form(client, "/console/cases", "/console/logout", {})


def test_the_session_cookie_is_httponly_samesite_lax_scoped_and_secure_over_tls(app, scene):
    plain = app.test_client()
    assert sign_in(plain, scene.reviewer).status_code == 303
    cookie = plain.get_cookie("fieldcase_console", path="/console")
    assert cookie.http_only and cookie.same_site == "Lax" and cookie.path == "/console" and not cookie.secure

    tls = app.test_client()
    page = tls.get("/console/login", base_url="https://console.example")
    signed = tls.post("/console/login", base_url="https://console.example",
                      data={"csrf_token": csrf_of(page.get_data(as_text=True)), "username": scene.reviewer.username,
                            "password": PASSWORD})
    assert signed.status_code == 303
    assert "Secure" in signed.headers["Set-Cookie"] and "HttpOnly" in signed.headers["Set-Cookie"]


def test_deactivating_the_officer_ends_their_console_session_at_once(client, db, scene):
    sign_in(client, scene.reviewer)
    assert client.get("/console/cases").status_code == 200
    with db.transaction() as s:
        s.execute(update(Officer).where(Officer.id == scene.reviewer.id).values(active=False))

    assert client.get("/console/cases").status_code == 302


# ---------------------------------------------------------------------------------------------- CSRF


def test_every_post_needs_the_sessions_csrf_token(client, db, scene):
    page = client.get("/console/login")
    assert client.post("/console/login", data={"username": scene.reviewer.username,
                                                "password": PASSWORD}).status_code == 403
    assert client.post("/console/login", data={"csrf_token": "forged", "username": scene.reviewer.username,
                                               "password": PASSWORD}).status_code == 403
    assert sign_in(client, scene.reviewer).status_code == 303
    key = f"coverage_gap:{scene.iid}"
    for token in (None, "forged", csrf_of(page.get_data(as_text=True))):  # the last is the pre-sign-in token
        data = {"key": key, "comment": "looks fine"} | ({"csrf_token": token} if token else {})
        refused = client.post("/console/audit/review", data=data)
        assert refused.status_code == 403 and "安全令牌" in text_of(refused)
    with db.session() as s:
        assert s.scalars(select(AuditReview)).all() == []
    assert client.get("/console/cases").status_code == 200  # still signed in: a refusal is not a sign-out


# ---------------------------------------------------------------------------------------------- jurisdiction


def test_another_districts_case_inspection_and_evidence_are_not_found(client, officers, scene):
    binjiang = officers.make(region="330108", roles=("reviewer",), certified=False)
    sign_in(client, binjiang)

    assert scene.case_id not in text_of(client.get("/console/cases"))
    for url in (f"/console/cases/{scene.case_id}", f"/console/inspections/{scene.iid}",
                f"/console/evidence/{scene.photo}", f"/console/evidence/{scene.photo}/thumbnail"):
        page = client.get(url)
        assert page.status_code == 404, url
        assert "没有找到，或不在您的管辖范围内" in text_of(page)
    api = client.get(f"/console/api/evidence/{scene.photo}/custody")
    assert api.status_code == 404 and api.json["code"] == 404
    marked = post_form(client, "/console/audit", "/console/audit/review",
                       {"key": f"coverage_gap:{scene.iid}", "comment": "not mine"})
    assert marked.status_code == 303
    assert "no audit issue" in text_of(client.get(marked.headers["Location"]))


def test_unknown_console_paths_answer_the_consoles_own_page(client):
    page = client.get("/console/no-such-page")
    assert page.status_code == 404 and page.mimetype == "text/html"


# ---------------------------------------------------------------------------------------------- language


def test_chinese_by_default_english_on_request_and_the_choice_is_kept(client, scene):
    sign_in(client, scene.reviewer)
    zh = client.get("/console/cases")
    assert '<html lang="zh-CN">' in text_of(zh) and "案件" in text_of(zh) and "Cases" not in text_of(zh)

    en = client.get("/console/cases?lang=en")
    assert '<html lang="en">' in text_of(en) and ">Cases<" in text_of(en) and "registered" in text_of(en)
    assert "Sign out" in text_of(client.get(f"/console/cases/{scene.case_id}"))  # kept in the session
    assert "退出登录" in text_of(client.get("/console/cases?lang=zh"))


# ---------------------------------------------------------------------------------------------- pages


def test_the_case_list_filters_by_status_district_department_and_institution(client, officers, scene):
    market = officers.make(department="market")
    phone = TestPhone(client, market, officers.headers(market))
    _, opened = phone.open_case({"name": "西湖区远航艺术学校", "region": "330106"})
    other = phone.push([opened])["results"][0]["refs"]["case_id"]
    sign_in(client, scene.reviewer)

    listed = text_of(client.get("/console/cases"))
    assert scene.case_id in listed and other in listed
    by_department = text_of(client.get("/console/cases?department=market"))
    assert other in by_department and scene.case_id not in by_department
    by_status = text_of(client.get("/console/cases?status=closed"))
    assert scene.case_id not in by_status and "没有记录" in by_status
    by_name = text_of(client.get("/console/cases?q=远航"))
    assert other in by_name and scene.case_id not in by_name and "仅显示机构" in by_name
    several = text_of(client.get("/console/cases?q=西湖区"))
    assert "有 2 个机构符合" in several and several.count("/console/cases?institution_id=") == 2
    elsewhere = text_of(client.get("/console/cases?region=330108"))
    assert scene.case_id not in elsewhere


def test_the_case_page_shows_institution_lifecycle_inspections_findings_and_the_ledger(client, officers, scene):
    f = scene.field
    f.records = [f.phone.finding(scene.iid, "fire_safety")]
    f.push()
    admin = officers.make(region="330106", roles=("admin",), certified=False)
    sign_in(client, admin)

    step = post_form(client, f"/console/cases/{scene.case_id}", f"/console/cases/{scene.case_id}/transitions",
                     {"to": "investigating", "reason": "立案调查 start investigating"})
    assert step.status_code == 303
    page = text_of(client.get(step.headers["Location"]))

    assert "西湖区启航培训中心" in page
    assert "立案调查 start investigating" in page and "调查取证" in page  # the transition, with its status name
    assert scene.iid and f"/console/inspections/{scene.iid}" in page
    assert "有缺口" in page  # the inspection's coverage status
    assert "消防" in page  # the finding's category, named from the reference data
    ledger = page.split('id="ledger"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<tr data-signature="(\w+)" data-chain="(\w+)">', ledger)
    assert len(rows) == 7  # case.open, inspection.start, 2 clips and a photo declared, inspection.end, the finding
    assert {sig for sig, _ in rows} == {"valid"} and {chain for _, chain in rows} <= {"first", "linked"}
    assert "inspection.finding" in ledger and f.officer.name in ledger


def test_a_step_the_lifecycle_refuses_is_shown_not_taken(client, scene):
    sign_in(client, scene.reviewer)  # a reviewer may close, not investigate
    step = post_form(client, f"/console/cases/{scene.case_id}", f"/console/cases/{scene.case_id}/transitions",
                     {"to": "investigating", "reason": "try"})
    page = text_of(client.get(step.headers["Location"]))
    assert "(403)" in page and "立案" in page


def test_the_inspection_page_draws_the_gap_the_missing_clip_and_the_photo_at_its_exif_time(client, scene):
    sign_in(client, scene.reviewer)
    page = text_of(client.get(f"/console/inspections/{scene.iid}"))

    svg = page.split('<svg id="timeline-svg"', 1)[1].split("</svg>", 1)[0]
    gaps = re.findall(r'<g class="gap" data-seconds="([\d.]+)"', svg)
    assert gaps == ["60.0"]
    assert ">60.0 s</text>" in svg
    assert "缺 #2" in svg  # CAM-7's missing clip number
    assert len(re.findall(r'<a href="/console/evidence/[^"]+" class="clip">', svg)) == 2
    assert f'href="/console/evidence/{scene.photo}/thumbnail"' in svg
    photo_at = (scene.field.at(100)).strftime("%Y-%m-%d %H:%M:%S")
    assert f'class="photo" data-at="{photo_at}" data-exif="yes"' in svg
    assert 'data-status="gaps"' in page
    # Every verified file can be played or downloaded from the page, through the logged read.
    assert page.count('name="file" value="') == 6


def test_the_thumbnail_streams_the_derived_jpeg(client, scene):
    sign_in(client, scene.reviewer)
    thumb = client.get(f"/console/evidence/{scene.photo}/thumbnail")
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg" and thumb.data[:2] == b"\xff\xd8"


def test_the_evidence_page_sets_exif_against_the_declaration_and_lists_the_custody_history(client, scene):
    sign_in(client, scene.reviewer)
    page = text_of(client.get(f"/console/evidence/{scene.photo}"))

    exif = page.split('id="exif"', 1)[1].split("</table>", 1)[0]
    taken = scene.field.at(100).strftime("%Y-%m-%d %H:%M:%S")
    assert exif.count(taken) == 2 and "0.0 秒" in exif and "HUAWEI P60 Pro" in exif
    history = page.split('id="custody-events"', 1)[1].split("</table>", 1)[0]
    for action in ("申报", "开始上传", "核验通过", "生成缩略图"):
        assert action in history
    assert f'data-events-url="/console/api/evidence/{scene.photo}/custody"' in page
    assert 'data-key-url="/api/v1/custody/public-key"' in page and "verify.js" in page


def test_the_verification_data_proves_each_event_against_the_signed_head(client, scene):
    """What the browser fetches is enough to check every event; the in-browser check itself is the browser test."""
    sign_in(client, scene.reviewer)
    events = client.get(f"/console/api/evidence/{scene.photo}/custody").json["events"]
    head = client.get("/console/api/custody/tree-head").json
    assert events and {"tree_size", "root_hash", "timestamp", "signature", "key_id"} <= set(head)
    for event in events:
        proof = client.get("/console/api/custody/proofs/inclusion",
                           query_string={"leaf_index": event["leaf_index"], "tree_size": head["tree_size"]}).json
        assert verify_inclusion(leaf_hash(event["leaf"].encode()), event["leaf_index"], head["tree_size"],
                                [bytes.fromhex(p) for p in proof["proof"]], bytes.fromhex(head["root_hash"]))
    bad = client.get("/console/api/custody/proofs/inclusion", query_string={"leaf_index": "x", "tree_size": 1})
    assert bad.status_code == 422 and bad.json["code"] == 422
    client.post("/console/logout")  # no token: refused, still signed in
    anonymous = client.application.test_client().get("/console/api/custody/tree-head")
    assert anonymous.status_code == 401 and anonymous.json["code"] == 401


def test_playing_a_file_is_a_logged_read_with_its_purpose(client, db, scene):
    sign_in(client, scene.reviewer)
    eid, data = scene.first
    missing = post_form(client, f"/console/evidence/{eid}", "/console/files", {"file": f"{eid}|inline"})
    assert missing.status_code == 303
    assert "请填写读取用途" in text_of(client.get(missing.headers["Location"]))

    played = post_form(client, f"/console/evidence/{eid}", "/console/files",
                       {"file": f"{eid}|inline", "purpose": "复核执法过程 review of the inspection"})
    assert played.status_code == 200 and played.data == data and played.mimetype == "video/mp4"
    assert played.headers["Content-Disposition"].startswith("inline;")
    assert played.headers["Content-Security-Policy"].startswith("sandbox")
    downloaded = post_form(client, f"/console/evidence/{eid}", "/console/files",
                           {"file": f"{eid}|attachment", "purpose": "归档 archive"})
    assert downloaded.headers["Content-Disposition"].startswith("attachment;") and downloaded.data == data
    with db.session() as s:
        reads = s.scalars(select(CustodyEvent).where(CustodyEvent.evidence_id == eid,
                                                     CustodyEvent.action == "read")
                          .order_by(CustodyEvent.leaf_index)).all()
    assert [(r.actor, '"purpose":"复核执法过程 review of the inspection"' in r.leaf) for r in reads] == [
        (scene.reviewer.id, True), (scene.reviewer.id, False)]


def test_the_audit_queue_lists_filters_and_marks_issues_reviewed(client, db, scene):
    sign_in(client, scene.reviewer)
    queue = text_of(client.get("/console/audit"))
    assert f'data-key="coverage_gap:{scene.iid}"' in queue and "1 unexplained gap" in queue
    only_exif = text_of(client.get("/console/audit?kind=exif_disagreement"))
    assert "coverage_gap:" not in only_exif

    empty = post_form(client, "/console/audit", "/console/audit/review",
                      {"key": f"coverage_gap:{scene.iid}", "comment": "   ", "next": "/console/audit?reviewed=no"})
    assert "comment" in text_of(client.get(empty.headers["Location"]))
    marked = post_form(client, "/console/audit", "/console/audit/review",
                       {"key": f"coverage_gap:{scene.iid}", "comment": "换电池 45 秒，已约谈",
                        "next": "/console/audit?reviewed=no"})
    assert marked.status_code == 303 and marked.headers["Location"].startswith("/console/audit?reviewed=no#issue-")
    after = text_of(client.get(marked.headers["Location"].split("#")[0]))
    assert "已记录审查意见" in after and f"coverage_gap:{scene.iid}" not in after
    reviewed = text_of(client.get("/console/audit?reviewed=yes"))
    assert f"coverage_gap:{scene.iid}" in reviewed and "换电池 45 秒，已约谈" in reviewed
    with db.session() as s:
        (review,) = s.scalars(select(AuditReview)).all()
    assert (review.issue_key, review.reviewed_by) == (f"coverage_gap:{scene.iid}", scene.reviewer.id)
    assert "YYYY-MM-DD" in text_of(client.get("/console/audit?from=yesterday"))


def test_custodians_do_not_get_the_audit_queue(client, scene):
    sign_in(client, scene.custodian)
    assert client.get("/console/audit").status_code == 403
    assert "/console/audit" not in text_of(client.get("/console/cases"))


def test_a_custodian_accepts_a_hand_over_passes_it_on_and_exports_the_package(client, officers, db, scene):
    f = scene.field
    asked = client.post(f"/api/v1/custody/holdings/{scene.photo}/transfer", headers=f.headers,
                        json={"to": scene.custodian.id, "reason": "入库保管"})
    assert asked.status_code == 200, asked.json
    colleague = officers.make(roles=("custodian",), name="保管员李", certified=False)
    sign_in(client, scene.custodian)

    waiting = text_of(client.get("/console/custody"))
    assert scene.photo[:8] in waiting and "入库保管" in waiting
    accepted = post_form(client, "/console/custody", "/console/custody/acknowledge",
                         {"evidence_id": scene.photo, "answer": "accept", "note": "已入库"})
    assert "已处理移交" in text_of(client.get(accepted.headers["Location"]))
    handed = post_form(client, "/console/custody", "/console/custody/transfer",
                       {"evidence_id": scene.photo, "to": colleague.id, "reason": "移交法制审核"})
    assert "已申请移交" in text_of(client.get(handed.headers["Location"]))
    assert "保管员李" in text_of(client.get("/console/custody"))

    exported = post_form(client, "/console/custody", "/console/package",
                         {"case_id": scene.case_id, "purpose": "移送法制审核"})
    assert exported.status_code == 200 and exported.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(exported.data)) as zf:
        assert zf.read("manifest.json")
    with db.session() as s:
        actions = [e.action for e in s.scalars(select(CustodyEvent).where(CustodyEvent.evidence_id == scene.photo)
                                              .order_by(CustodyEvent.leaf_index))]
    assert actions[-4:] == ["transfer_requested", "transferred", "transfer_requested", "exported"]
    refused = post_form(client, "/console/custody", "/console/package", {"case_id": scene.case_id, "purpose": ""})
    assert "请填写案件编号和导出用途" in text_of(client.get(refused.headers["Location"]))


def test_a_custodian_exports_one_clip_ticked_on_the_case_page_and_the_package_holds_just_it(client, db, scene):
    """A court asks for one clip: the case page offers each item to tick, and the package holds that item with just
    the records and proofs it needs, verified by the same tool as a whole case."""
    from media.package_verify import verify_package

    sign_in(client, scene.custodian)
    html = client.get(f"/console/cases/{scene.case_id}").get_data(as_text=True)
    assert "只导出选中的证据" in html
    clip = scene.third[0]  # (evidence id, bytes)
    assert f'name="items" value="{clip}"' in html
    exported = post_form(client, f"/console/cases/{scene.case_id}", "/console/package",
                         {"case_id": scene.case_id, "purpose": "法院调取", "items": [clip]})
    assert exported.status_code == 200 and exported.mimetype == "application/zip"
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(exported.data)).read("manifest.json"))
    assert manifest["package"]["items"] == [clip]
    assert [item["id"] for item in manifest["evidence"]] == [clip]
    assert verify_package(io.BytesIO(exported.data)).problems == []
    with db.session() as s:
        exports = {e.evidence_id for e in s.scalars(select(CustodyEvent).where(CustodyEvent.action == "exported"))}
    assert exports == {clip}  # the export is logged for the chosen item only


def test_console_pages_forbid_framing_and_caching(client, scene):
    sign_in(client, scene.reviewer)
    page = client.get(f"/console/cases/{scene.case_id}")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store" and page.headers["X-Content-Type-Options"] == "nosniff"


def test_a_session_older_than_the_maximum_has_to_sign_in_again(client, scene, monkeypatch):
    from backend.web.console import security

    sign_in(client, scene.reviewer)
    assert client.get("/console/cases").status_code == 200
    monkeypatch.setattr(security, "SESSION_MAX", timedelta(seconds=-1))
    expired = client.get("/console/cases")
    assert expired.status_code == 302
    assert "会话已过期" in text_of(client.get(expired.headers["Location"]))


def _luminance(colour: str) -> float:
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(foreground: str, background: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours."""
    light, dark = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_the_timelines_text_colours_have_at_least_4_5_to_1_contrast():
    """SVG text is checked here, from the palette the template draws with (the browser test checks the HTML)."""
    from backend.web.console.present import CONTRASTS, PALETTE

    ratios = {(fg, bg): round(contrast(PALETTE[fg], PALETTE[bg]), 2) for fg, bg in CONTRASTS}
    assert all(ratio >= 4.5 for ratio in ratios.values()), ratios


def test_demo_serve_says_where_the_console_is_and_how_a_reviewer_signs_in(tmp_path, capsys):
    """The banner `fieldcase demo --serve` prints once the story has played (the browser test runs the real one)."""
    from backend import demo

    waited = []
    demo.serve_demo("http://127.0.0.1:8123", tmp_path, wait=lambda: waited.append(True))

    out = capsys.readouterr().out.splitlines()
    assert "review console: http://127.0.0.1:8123/console/" in out
    assert f"reviewer login: zhou.hui / {demo.PASSWORD}  (周慧 Zhou Hui)" in out
    assert f"database: {tmp_path / 'instance' / 'fieldcase.db'}" in out
    assert out[-1] == "press Ctrl-C to stop" and waited == [True]
