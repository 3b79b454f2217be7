"""PROTOCOL §5: pull pages the change feed with an opaque cursor, within jurisdiction."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import event

from backend.core.db import Database
from backend.core.models import Change, Officer, new_id
from sync import feed
from tests.conftest import PG_ENV
from tests.phones import TestPhone


def _phone(client, officers, **kw):
    officer = officers.make(**kw)
    return TestPhone(client, officer, officers.headers(officer))


def pull_all(client, headers, limit=100, cursor=None):
    changes, pages = [], 0
    while True:
        r = client.get("/api/v1/sync/pull", query_string={"limit": limit, **({"cursor": cursor} if cursor else {})},
                       headers=headers)
        assert r.status_code == 200, r.json
        changes += r.json["changes"]
        cursor = r.json["cursor"]
        pages += 1
        if not r.json["has_more"]:
            return changes, cursor, pages


def test_a_phone_pulls_its_case_alias_institution_and_evidence(client, officers):
    a = _phone(client, officers)
    cid, opened = a.open_case({"name": "星辰教育", "region": "330106"})
    iid, started = a.start(cid, [a.officer.id])
    eid, photo = a.evidence(iid)
    answer = a.push([opened, started, photo])
    case_id = answer["results"][0]["refs"]["case_id"]
    changes, _cursor, _ = pull_all(client, a.headers)
    by_kind = {}
    for c in changes:
        by_kind.setdefault(c["kind"], []).append(c)
    assert set(by_kind) == {"institution", "case", "case_alias", "evidence"}
    assert by_kind["case_alias"][0]["data"] == {"client_case_id": cid, "case_id": case_id, "merged": False}
    assert by_kind["case"][0]["id"] == case_id and by_kind["case"][0]["op"] == "upsert"
    assert by_kind["evidence"][0]["data"]["status"] == "declared"
    assert by_kind["evidence"][0]["data"]["purge_allowed"] is False


def test_paging_yields_every_change_once_and_resumes_from_the_cursor(client, officers):
    a = _phone(client, officers)
    a.push([a.open_case({"name": f"机构{i}", "region": "330106"})[1] for i in range(7)])
    everything, cursor, _ = pull_all(client, a.headers, limit=100)
    paged, cursor2, pages = pull_all(client, a.headers, limit=3)
    assert pages == 7
    assert [(c["kind"], c["id"]) for c in paged] == [(c["kind"], c["id"]) for c in everything]
    assert len(everything) == 21  # institution, case and alias for each
    # Nothing new: the cursor answers an empty page; a new write appears after it.
    r = client.get("/api/v1/sync/pull", query_string={"cursor": cursor2}, headers=a.headers).json
    assert r["changes"] == [] and r["has_more"] is False
    a.push([a.open_case({"name": "新机构", "region": "330106"})[1]])
    r = client.get("/api/v1/sync/pull", query_string={"cursor": cursor2}, headers=a.headers).json
    assert [c["kind"] for c in r["changes"]] == ["institution", "case", "case_alias"]


def test_a_district_officer_sees_their_district_and_their_own(client, officers):
    xihu = _phone(client, officers, region="330106")
    binjiang = _phone(client, officers, region="330108")
    binjiang.push([binjiang.open_case({"name": "滨江机构", "region": "330108"})[1]])
    xihu.push([xihu.open_case({"name": "西湖机构", "region": "330106"})[1]])
    # A Xihu officer working across the river: their own case stays visible to them.
    xihu.push([xihu.open_case({"name": "联合检查对象", "region": "330108"})[1]])
    seen, _, _ = pull_all(client, xihu.headers)
    names = {c["data"]["name"] for c in seen if c["kind"] == "institution"}
    assert names == {"西湖机构"}
    cases = [c for c in seen if c["kind"] == "case"]
    assert {c["data"]["region"] for c in cases} == {"330106", "330108"}
    binjiang_seen, _, _ = pull_all(client, binjiang.headers)
    assert {c["data"]["name"] for c in binjiang_seen if c["kind"] == "institution"} == {"滨江机构", "联合检查对象"}
    city = officers.make(region="330100")
    city_seen, _, _ = pull_all(client, officers.headers(city))
    assert len(city_seen) == 9


def test_a_cursor_the_server_cannot_honour_answers_410(client, officers):
    a = _phone(client, officers)
    for cursor in ("garbage!", "eyJwIjogOTk5OTk5fQ"):  # the second is {"p": 999999}
        r = client.get("/api/v1/sync/pull", query_string={"cursor": cursor}, headers=a.headers)
        assert r.status_code == 410 and r.json["code"] == 410
    assert client.get("/api/v1/sync/pull", query_string={"limit": 501}, headers=a.headers).status_code == 422
    assert client.get("/api/v1/sync/pull", query_string={"limit": 0}, headers=a.headers).status_code == 422


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason="a statement-level snapshot race: PostgreSQL's READ COMMITTED")
def test_a_change_committed_while_a_page_is_read_is_never_skipped(db, officers):
    """A district officer's page reads their district and their own changes. Were that two statements, a district
    change committed between them could be missed while a later own change moved the cursor past it for good."""
    officer = officers.make(region="330106")
    writer = Database(db.url)
    fired: list[int] = []

    def commit_two_changes(conn, cursor, statement, *args) -> None:
        if fired or "FROM changes" not in statement:
            return
        with writer.transaction() as s:
            for region, owner in (("330106", None), ("330108", officer.id)):  # a district change, then an own one
                s.add(Change(kind="institution", entity_id=new_id("ins"), op="upsert", data={}, region_code=region,
                             officer_id=owner))
                s.flush()
                fired.append(1)

    event.listen(db.engine, "after_cursor_execute", commit_two_changes)
    try:
        with db.session() as s:
            first = feed.pull(s, s.get(Officer, officer.id), None)
    finally:
        event.remove(db.engine, "after_cursor_execute", commit_two_changes)
        writer.dispose()
    assert fired
    with db.session() as s:
        second = feed.pull(s, s.get(Officer, officer.id), first["cursor"])
    assert len(first["changes"] + second["changes"]) == 2, (first, second)  # both, on one page or the next
