"""The clock is wired from the composition root: an app built on a clock of its own records that clock's time
and judges every expiry by it.

The same clock reaches the routes (`AppState.clock`), the jobs (`JobContext.clock`: the inline upload
verification), the commit-time writers (`Services.clock`: a tree head signed as a commit crosses a boundary) and
the command line (`obj=`). Time passes when the test steps the clock: nothing waits, nothing is backdated.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from backend.cli import main
from backend.core.models import RefreshToken, TreeHead
from media.custody import log as custody
from tests.clocks import SteppingClock, client, clocked, officers
from tests.conftest import PASSWORD, Officers
from tests.media.test_uploads import Field

__all__ = ["client", "clocked", "officers"]  # the fixtures: this module runs on its own clock

START = datetime(2031, 3, 4, 5, 6, 7, 123000, tzinfo=UTC)  # far from the wall clock, so nothing passes by chance
STAMP = "2031-03-04T05:06:07.123Z"  # START as the custody log writes it


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock(START)




def bearer(pair: dict) -> dict[str, str]:
    return {"Authorization": "Bearer " + pair["access_token"]}


def log_in(client, username: str, password: str = PASSWORD):
    return client.post("/api/v1/auth/token", json={"username": username, "password": password})


# --- tokens ------------------------------------------------------------------------------------------------------

def test_given_an_app_on_its_own_clock_when_an_officer_logs_in_then_the_token_pair_is_dated_by_that_clock(
        clocked, client, officers):
    officer = officers.make()
    issuer = clocked.extensions["fieldcase"].issuer

    pair = officers.login(officer)

    claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
    assert claims["iat"] == int(START.timestamp()) and claims["exp"] == claims["iat"] + issuer.access_ttl
    with clocked.extensions["fieldcase"].db.session() as s:
        row = s.scalars(select(RefreshToken).where(RefreshToken.officer_id == officer.id)).one()
    assert (row.created_at, row.expires_at) == (START, START + timedelta(seconds=issuer.refresh_ttl))
    # Issued years ahead of the wall clock, and valid: its times are judged by the app's clock, not by PyJWT's.
    assert client.get("/api/v1/me", headers=bearer(pair)).status_code == 200


def test_given_a_stepping_clock_when_the_access_ttl_passes_then_the_access_token_expires_and_a_refresh_renews_it(
        clocked, client, officers, clock):
    issuer = clocked.extensions["fieldcase"].issuer
    pair = officers.login(officers.make())

    clock.advance(seconds=issuer.access_ttl - 1)
    assert client.get("/api/v1/me", headers=bearer(pair)).status_code == 200
    clock.advance(seconds=1)
    expired = client.get("/api/v1/me", headers=bearer(pair))
    assert expired.status_code == 401 and "expired" in expired.json["message"]

    renewed = client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert renewed.status_code == 200
    assert client.get("/api/v1/me", headers=bearer(renewed.json)).status_code == 200


def test_given_a_stepping_clock_when_the_refresh_ttl_passes_then_the_refresh_token_is_refused(
        clocked, client, officers, clock):
    issuer = clocked.extensions["fieldcase"].issuer
    pair = officers.login(officers.make())

    clock.advance(seconds=issuer.refresh_ttl)

    refused = client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refused.status_code == 401 and refused.json["message"] == "invalid refresh token"


def test_given_a_throttled_username_and_address_when_the_delay_passes_on_the_clock_then_the_officer_logs_in(
        clocked, client, officers, clock):
    settings = clocked.extensions["fieldcase"].settings
    officer = officers.make()
    for _ in range(settings.login_free_failures):
        assert log_in(client, officer.username, "wrong password").status_code == 401

    blocked = log_in(client, officer.username)
    assert blocked.status_code == 429
    assert blocked.headers["Retry-After"] == str(settings.login_delay_seconds)

    clock.advance(seconds=settings.login_delay_seconds - 1)
    assert log_in(client, officer.username).status_code == 429
    clock.advance(seconds=1)
    assert log_in(client, officer.username).status_code == 200


# --- what the custody log records ----------------------------------------------------------------------------------

def test_given_an_app_on_its_own_clock_when_evidence_is_declared_and_uploaded_then_its_custody_events_carry_that_time(
        clocked, clock):
    state = clocked.extensions["fieldcase"]
    field = Field(clocked, lambda _app, client: Officers(state.db, client))
    data = os.urandom(3000)
    eid = field.declare(data)
    later = START + timedelta(minutes=5)
    clock.advance(minutes=5)

    assert field.upload(eid, data)["status"] == "verified"  # verified by the inline job, on the job's clock

    events = field.client.get(f"/api/v1/evidence/{eid}/custody", headers=field.headers).json["events"]
    assert [(e["action"], e["at"]) for e in events] == [
        ("declared", STAMP), ("upload_started", "2031-03-04T05:11:07.123Z"), ("verified", "2031-03-04T05:11:07.123Z")]
    described = field.client.get(f"/api/v1/evidence/{eid}", headers=field.headers).json
    assert datetime.fromisoformat(described["verified_at"]) == later
    head = field.client.get("/api/v1/custody/tree-head", headers=field.headers).json
    assert head["timestamp"] == "2031-03-04T05:11:07.123Z"


def test_given_a_database_on_its_own_clock_when_a_commit_crosses_a_head_boundary_then_the_head_is_dated_by_it(
        clocked):
    db = clocked.extensions["fieldcase"].db
    with db.transaction() as s:
        for n in range(custody.HEAD_EVERY):
            custody.record(s, "read", None, "tester", at=START - timedelta(days=1), purpose=f"clock test {n}")

    with db.session() as s:
        head = s.get(TreeHead, custody.HEAD_EVERY)  # signed by the commit's writer, not asked for
        assert head is not None and head.timestamp == STAMP


# --- the command line ----------------------------------------------------------------------------------------------

def test_given_a_clock_handed_to_the_command_line_when_the_custody_key_is_rotated_then_it_dates_the_retirement(
        clocked, settings, clock):
    env = {"DATABASE_URL": settings.database_url, "FIELDCASE_INSTANCE_DIR": str(settings.instance_dir)}

    rotated = CliRunner().invoke(main, ["custody", "rotate-key", "--yes"], env=env, obj=clock)

    assert rotated.exit_code == 0, rotated.output
    keyring = json.loads(settings.custody_keyring_path.read_text(encoding="utf-8"))
    assert [k["retired_at"] for k in keyring["keys"]] == [STAMP]
