"""The system audit's verdict in the review console: given a server that `fieldcase verify --record` checked, when
an admin or custodian opens /console/system-audit, then they see when it ran, whether it passed and what it found,
in Chinese or English; the problems themselves only at city level, and nobody else sees the page."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import update

from backend.cli import main
from backend.core.models import Finding
from tests.casework.test_system_audit import Server, env_of
from tests.web.test_console import sign_in, text_of

PAGE = "/console/system-audit"


def record(settings) -> int:
    return CliRunner().invoke(main, ["verify", "--record"], env=env_of(settings)).exit_code


def test_custodians_see_the_latest_verdict_and_city_level_sees_its_problems(client, officers, settings, db):
    server = Server(client, officers)
    city = officers.make(region="330100", roles=("custodian",), name="市级保管员", certified=False)
    district = officers.make(region="330106", roles=("custodian",), name="区保管员", certified=False)

    sign_in(client, city)
    empty = client.get(PAGE)
    assert empty.status_code == 200 and "尚无核查结论" in text_of(empty)
    assert 'href="/console/system-audit"' in text_of(client.get("/console/custody"))  # in the navigation

    assert record(settings) == 0
    passed = text_of(client.get(PAGE))
    assert "通过：未发现问题" in passed and 'data-verdict="pass"' in passed
    assert "命令 fieldcase verify --record" in passed

    with db.engine.begin() as conn:  # an insider rewrites what the officer found
        conn.execute(update(Finding).where(Finding.id == server.finding).values(description="一切正常"))
    assert record(settings) == 1
    failed = text_of(client.get(PAGE))
    assert "未通过：发现 1 个问题" in failed and 'data-verdict="fail"' in failed
    assert server.finding in failed and "its description differs" in failed
    assert "一切正常" not in failed  # ids and field names, never the values
    assert "此前的核查" in failed  # the earlier, passing run is listed below

    english = text_of(client.get(PAGE + "?lang=en"))
    assert "Failed: 1 problem(s) found" in english and "Derived tables" in english

    client.post("/console/logout", data={"csrf_token": ""})
    client.delete_cookie("fieldcase_console", path="/console")
    sign_in(client, district)
    local = text_of(client.get(PAGE + "?lang=zh"))
    assert "未通过：发现 1 个问题" in local and "仅市级账号可见" in local
    assert server.finding not in local


def test_the_page_is_for_admins_and_custodians_only(client, officers):
    reviewer = officers.make(region="330100", roles=("reviewer",), certified=False)
    sign_in(client, reviewer)
    refused = client.get(PAGE)
    assert refused.status_code == 403
    assert 'href="/console/system-audit"' not in text_of(client.get("/console/cases"))
