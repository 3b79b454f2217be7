"""The login throttle slows the guesser, not the owner (docs/protocol.md "Authentication", "Security, as built").

Failures are counted per username and client address: after the free ones, each further attempt of that username
from that address waits base·2^k after the last failure (capped); one address failing across many usernames meets
a ceiling. Nobody can lock an officer out by guessing at their name, and a phone's refresh token is never
throttled. Time passes on the app's own clock (tests/clocks.py): nothing sleeps.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from backend.core.models import LoginFailure
from tests.clocks import SteppingClock, client, clocked, officers
from tests.conftest import PASSWORD

__all__ = ["client", "clocked", "officers"]  # the fixtures: this module runs on its own clock

START = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
ATTACKER, OFFICE, ELSEWHERE = "203.0.113.66", "10.20.30.40", "198.51.100.9"


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock(START)




@pytest.fixture
def limits(clocked):
    return clocked.extensions["fieldcase"].settings


def log_in(client, username: str, address: str, password: str = PASSWORD):
    return client.post("/api/v1/auth/token", json={"username": username, "password": password},
                       environ_base={"REMOTE_ADDR": address})


def guess(client, username: str, address: str = ATTACKER):
    return log_in(client, username, address, "not-the-password")


def refused(r) -> int:
    """A 429 in the error shape; its Retry-After."""
    assert r.status_code == 429, (r.status_code, r.get_data(as_text=True)[:300])
    assert r.json["code"] == 429 and r.json["message"]
    return int(r.headers["Retry-After"])


def test_given_an_attacker_hammering_a_username_from_one_address_then_the_officer_logs_in_from_another_and_the_attacker_waits_longer_each_time(  # noqa: E501
        client, officers, clock, limits):
    officer = officers.make()
    # Given the attacker's free guesses, spent
    for _ in range(limits.login_free_failures):
        assert guess(client, officer.username).status_code == 401
    # Then their next attempt waits, even with the right password: it is not even checked
    waits = [refused(guess(client, officer.username))]
    assert waits == [limits.login_delay_seconds]
    assert refused(log_in(client, officer.username, ATTACKER)) == waits[0]
    # When the attacker goes on, guessing each time the wait is over
    while waits[-1] < limits.login_delay_max_seconds:
        clock.advance(seconds=waits[-1] - 1)
        assert refused(guess(client, officer.username)) == 1  # not yet; and asking did not make it longer
        clock.advance(seconds=1)
        assert guess(client, officer.username).status_code == 401
        waits.append(refused(guess(client, officer.username)))
        # and throughout, the officer signs in from the office as on any other day
        assert log_in(client, officer.username, OFFICE).status_code == 200
    # Then the waits doubled, up to the cap, and stay there
    assert waits == [min(limits.login_delay_seconds * 2 ** k, limits.login_delay_max_seconds)
                     for k in range(len(waits))]
    clock.advance(seconds=waits[-1])
    assert guess(client, officer.username).status_code == 401
    assert refused(guess(client, officer.username)) == limits.login_delay_max_seconds
    assert log_in(client, officer.username, ELSEWHERE).status_code == 200


def test_given_a_phone_holding_a_refresh_token_then_it_keeps_working_while_its_officer_is_guessed_at(
        client, officers, clock, limits):
    officer = officers.make()
    pair = log_in(client, officer.username, ATTACKER).json  # the phone shares the attacker's address (carrier NAT)
    # Given the username and the address both throttled: the pair's delay, and the address's ceiling
    for i in range(limits.login_max_failures_per_address):
        assert guess(client, officer.username if i < limits.login_free_failures else f"other{i}").status_code in (
            401, 429)
    refused(log_in(client, officer.username, ATTACKER))
    # When the phone refreshes its tokens, again and again over the hours
    for _ in range(4):
        r = client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]},
                        environ_base={"REMOTE_ADDR": ATTACKER})
        # Then it is never throttled
        assert r.status_code == 200, r.json
        pair = r.json
        assert client.get("/api/v1/me", headers={"Authorization": "Bearer " + pair["access_token"]}).status_code == 200
        clock.advance(seconds=600)


def test_given_one_address_spraying_one_guess_at_many_usernames_then_it_meets_the_ceiling_and_nobody_else_does(
        client, officers, clock, limits):
    officer = officers.make()
    for i in range(limits.login_max_failures_per_address):
        assert guess(client, f"someone{i}").status_code == 401
    # Then every login from that address waits until the first failures leave the window, even a right one
    assert refused(guess(client, "someone-else")) == limits.login_window_seconds
    assert refused(log_in(client, officer.username, ATTACKER)) == limits.login_window_seconds
    # and the officer, anywhere else, is not touched
    assert log_in(client, officer.username, OFFICE).status_code == 200
    clock.advance(seconds=limits.login_window_seconds - 1)
    assert refused(log_in(client, officer.username, ATTACKER)) == 1
    clock.advance(seconds=1)
    assert log_in(client, officer.username, ATTACKER).status_code == 200


def test_given_the_officers_own_typos_then_their_success_forgets_them_but_not_the_attackers_failures(
        client, officers, clocked, limits):
    officer = officers.make()
    for _ in range(limits.login_free_failures):
        assert guess(client, officer.username).status_code == 401
    for _ in range(limits.login_free_failures - 1):
        assert guess(client, officer.username, OFFICE).status_code == 401
    assert log_in(client, officer.username, OFFICE).status_code == 200
    with clocked.extensions["fieldcase"].db.session() as s:
        left = s.execute(select(LoginFailure.address, func.count()).group_by(LoginFailure.address)).all()
    assert dict(left) == {ATTACKER: limits.login_free_failures}
    refused(log_in(client, officer.username, ATTACKER))
    # The office starts afresh: its free failures are all there again
    for _ in range(limits.login_free_failures):
        assert guess(client, officer.username, OFFICE).status_code == 401


def test_given_a_day_without_guesses_then_the_failures_are_forgotten(client, officers, clock, limits):
    officer = officers.make()
    for _ in range(limits.login_free_failures + 3):
        clock.advance(seconds=limits.login_delay_max_seconds)  # each guess once its wait is over
        assert guess(client, officer.username).status_code == 401
    refused(guess(client, officer.username))
    clock.advance(seconds=limits.login_memory_seconds)
    for _ in range(limits.login_free_failures):
        assert guess(client, officer.username).status_code == 401
