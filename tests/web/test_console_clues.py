"""The console's clue pages (COMPLIANCE §3): given a clue with a complainant, when a handler opens it, then the
complainant is masked; when they state a purpose, then they see it in clear and the unmasking is on record for
reviewers; and no clear value reaches the application's log, over the test client or under gunicorn."""

from __future__ import annotations

import io
import json

import pytest
import requests
from sqlalchemy import select

from backend.core import logs
from backend.core.models import ComplainantUnmasking
from tests.conftest import PASSWORD
from tests.live import live_server
from tests.web.test_console import csrf_of, post_form, sign_in, text_of

CENTRE = {"name": "启航学科辅导中心", "region": "330106", "address": "西湖区文三路 100 号"}
COMPLAINANT = {"name": "王晓梅", "phone": "139-0000-1111", "email": "wxm@example.cn", "address": "文三路 8 号 2 单元"}
CLEAR = ["王晓梅", "13900001111", "139-0000-1111", "wxm@example.cn", "文三路 8 号"]
PURPOSE = "电话回访举报人"


class Desk:
    """A Xihu education clue with a complainant, taken at the hotline; a handler who also reviews (officer and
    reviewer of education, so the console lets them in), a reviewer who does not handle it, and Xiaoshan's admin."""

    def __init__(self, client, officers) -> None:
        hotline = officers.make(department="education", region="330106", name="热线员甲")
        taken = client.post("/api/v1/clues", headers=officers.headers(hotline), json={
            "source": "hotline", "institution": CENTRE, "description": "周末在居民楼内开展培训",
            "complainant": COMPLAINANT})
        assert taken.status_code == 201, taken.json
        self.clue = taken.json
        self.page = f"/console/clues/{self.clue['id']}"
        self.action = f"{self.page}/unmask"
        self.handler = officers.make(department="education", region="330106", roles=("officer", "reviewer"),
                                     name="科长钱")
        self.reviewer = officers.make(department="education", region="330106", roles=("reviewer",), name="审核员周")
        self.far_admin = officers.make(department="education", region="330109", roles=("officer", "admin"))


@pytest.fixture
def desk(client, officers) -> Desk:
    return Desk(client, officers)


def records(db) -> list[tuple[str, str, list[str], str]]:
    with db.transaction() as session:
        return [(r.clue_id, r.viewed_by, r.fields, r.purpose)
                for r in session.scalars(select(ComplainantUnmasking).order_by(ComplainantUnmasking.id))]


def clear_in(text: str) -> list[str]:
    return [value for value in CLEAR if value in text]


def test_given_a_handler_when_the_clue_page_opens_then_the_complainant_is_masked_with_an_unmask_form(client, desk):
    sign_in(client, desk.handler)

    listed = client.get("/console/clues")
    assert listed.status_code == 200 and desk.page in text_of(listed)
    page = client.get(desk.page)

    assert page.status_code == 200
    html = text_of(page)
    assert "王＊＊" in html and "139****1111" in html and "w＊＊＊＊" in html and 'data-masked="yes"' in html
    assert clear_in(html) == []
    assert 'id="unmask-form"' in html and f'action="{desk.action}"' in html and 'name="purpose"' in html


def test_given_a_purpose_when_the_handler_unmasks_then_the_page_shows_clear_values_and_the_view_is_recorded(
        client, db, desk):
    sign_in(client, desk.handler)

    shown = post_form(client, desk.page, desk.action, {"purpose": PURPOSE})

    assert shown.status_code == 200 and shown.headers["Cache-Control"] == "no-store"
    html = text_of(shown)
    assert 'data-masked="no"' in html and "王晓梅" in html and "139-0000-1111" in html and PURPOSE in html
    assert records(db) == [(desk.clue["id"], desk.handler.id, ["name", "phone", "email", "address"], PURPOSE)]
    assert clear_in(text_of(client.get(desk.page))) == []  # the next view is masked again
    assert "王晓梅" not in str(client.get_cookie("fieldcase_console", path="/console").value)


def test_given_no_purpose_when_unmasking_then_the_page_asks_for_one_and_nothing_is_shown_or_recorded(client, db, desk):
    sign_in(client, desk.handler)

    refused = post_form(client, desk.page, desk.action, {"purpose": "   "})

    assert refused.status_code == 303 and refused.headers["Location"].endswith(f"{desk.page}#complainant")
    after = client.get(desk.page)
    assert "请填写查看用途" in text_of(after) and clear_in(text_of(after)) == []
    assert records(db) == []


def test_given_viewers_who_do_not_handle_the_clue_then_they_cannot_unmask_it(client, db, desk):
    sign_in(client, desk.reviewer)  # same district, not a handler: the page, without the complainant
    page = text_of(client.get(desk.page))
    assert "仅对承办该线索的人员显示" in page and 'id="unmask-form"' not in page and clear_in(page) == []
    refused = client.post(desk.action, data={"csrf_token": csrf_of(page), "purpose": PURPOSE})
    assert refused.status_code == 303
    assert "(403)" in text_of(client.get(desk.page)) and records(db) == []

    client.post("/console/logout", data={"csrf_token": csrf_of(page)})
    sign_in(client, desk.far_admin)  # another district: not found, as an unknown clue is
    cases = text_of(client.get("/console/cases"))
    assert client.get(desk.page).status_code == 404
    assert client.get("/console/clues/00000000-0000-4000-8000-000000000000").status_code == 404
    outside = client.post(desk.action, data={"csrf_token": csrf_of(cases), "purpose": PURPOSE})
    assert outside.status_code == 404 and clear_in(text_of(outside)) == []
    assert records(db) == []


def test_given_unmaskings_when_a_reviewer_opens_the_log_then_they_see_who_saw_what_and_why(client, officers, desk):
    sign_in(client, desk.handler)
    post_form(client, desk.page, desk.action, {"purpose": PURPOSE})
    page = text_of(client.get("/console/cases"))
    client.post("/console/logout", data={"csrf_token": csrf_of(page)})

    sign_in(client, desk.reviewer)
    log = client.get("/console/unmaskings")
    assert log.status_code == 200
    html = text_of(log)
    assert "科长钱" in html and PURPOSE in html and "姓名, 电话, 电子邮箱, 地址" in html
    assert f"/console/clues/{desk.clue['id']}" in html and clear_in(html) == []

    custodian = officers.make(roles=("custodian",), region="330106")
    client.post("/console/logout", data={"csrf_token": csrf_of(html)})
    sign_in(client, custodian)
    assert client.get("/console/unmaskings").status_code == 403


# -- no personal data in the logs


@pytest.fixture
def log_text():
    buffer = io.StringIO()
    logs.configure("DEBUG", "json", buffer)
    yield buffer.getvalue
    logs.configure("WARNING", "json")


def test_given_a_day_of_looking_up_and_unmasking_when_the_log_is_read_then_it_holds_no_clear_value(
        client, officers, desk, log_text):
    headers = officers.headers(desk.handler)
    assert client.post("/api/v1/clues/lookup", json={"complainant_phone": "139 0000 1111"},
                       headers=headers).json["items"][0]["id"] == desk.clue["id"]
    api = client.post(f"/api/v1/clues/{desk.clue['id']}/complainant/unmask", json={"purpose": PURPOSE},
                      headers=headers)
    assert api.json["complainant"]["name"] == "王晓梅"
    client.post(f"/api/v1/clues/{desk.clue['id']}/complainant/unmask", json={"purpose": ""}, headers=headers)
    assert client.get("/api/v1/clues/unmaskings", headers=headers).json["total"] == 1
    sign_in(client, desk.handler)
    assert "王晓梅" in text_of(post_form(client, desk.page, desk.action, {"purpose": PURPOSE}))

    # Whatever the app logged at DEBUG (the access lines are gunicorn's: the next test) names nobody.
    assert all(json.loads(line)["level"] for line in log_text().splitlines())
    assert clear_in(log_text()) == []


def test_under_gunicorn_the_access_log_has_the_look_up_path_but_never_the_number(settings, officers, db, tmp_path):
    hotline = officers.make(department="education", region="330106")
    log = tmp_path / "server.log"
    with live_server(settings, log, workers=1, FIELDCASE_LOG_FORMAT="json", FIELDCASE_LOG_LEVEL="DEBUG") as base:
        token = requests.post(f"{base}/api/v1/auth/token", json={"username": hotline.username, "password": PASSWORD},
                              timeout=30).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        taken = requests.post(f"{base}/api/v1/clues", headers=auth, timeout=30, json={
            "source": "hotline", "institution": CENTRE, "description": "周末在居民楼内开展培训",
            "complainant": COMPLAINANT}).json()
        found = requests.post(f"{base}/api/v1/clues/lookup", headers=auth, timeout=30,
                              json={"complainant_phone": "13900001111"}).json()
        assert [c["id"] for c in found["items"]] == [taken["id"]]
        shown = requests.post(f"{base}/api/v1/clues/{taken['id']}/complainant/unmask", headers=auth, timeout=30,
                              json={"purpose": PURPOSE}).json()
        assert shown["complainant"]["phone"] == "139-0000-1111"
    text = log.read_text(encoding="utf-8")
    paths = [line.get("path") for line in map(json.loads, filter(None, text.splitlines())) if line.get("path")]
    assert "/api/v1/clues/lookup" in paths and f"/api/v1/clues/{taken['id']}/complainant/unmask" in paths
    assert clear_in(text) == []
