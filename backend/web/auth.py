"""Logging in: password check, throttling of repeated failures, and the token pair.

The throttle slows the guesser, not the owner. Failures are counted per
username *and client address*: from one address, a username gets
`login_free_failures` wrong passwords, then every further attempt must wait
`login_delay_seconds`·2^k after the previous failure (k = failures beyond
the free ones, the wait capped at `login_delay_max_seconds`), for as long
as those failures are remembered (`login_memory_seconds`). An attacker
hammering a username from one address so waits longer and longer, while its
officer, from any other address, logs in as usual: nobody can lock an
account by guessing at it. Across usernames, an address that failed
`login_max_failures_per_address` times in `login_window_seconds` is refused
every login until enough of them leave the window (password spraying).
Refreshing a token pair is not a login and is never throttled: a phone
holding a refresh token keeps working whatever is guessed at its officer's
name. The counters are rows in the database, so every process sees them.

A login is two steps with a commit between them, made by the edge (the API's
`POST /auth/token`, the console's sign-in form): `count_attempt` records the
attempt as a failure, and once that is committed `finish_login` asks the
throttle again counting it (but not waiting for it) and checks the (slow)
password. A burst of concurrent guesses so cannot all pass the throttle
before any of them has been counted, and a failed login stays counted. A
success removes that username's failures from that address, this one
included; an attempt the throttle refuses in the second step is removed
again (the refusal carries `commit_first`), so refused attempts do not
extend a block or grow the delay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from backend.casework.accounts import find_by_username
from backend.casework.tokens import TokenIssuer, issue_pair
from backend.core.config import Settings
from backend.core.crypto.passwords import hash_password, needs_rehash, verify_password
from backend.core.errors import TooManyRequests, Unauthorized
from backend.core.models import LoginFailure, Officer

BAD_LOGIN = "wrong username or password"


@dataclass(frozen=True)
class Attempt:
    """A counted login attempt, between the commit that made it durable and its password check."""

    username: str
    address: str
    failure: LoginFailure


def login_delay(settings: Settings, beyond: int) -> int:
    """Seconds to wait after the (free failures + `beyond` + 1)-th failure: base·2^beyond, capped."""
    return min(settings.login_delay_max_seconds, settings.login_delay_seconds * 2 ** min(beyond, 40))


def _pair_blocked_until(session: Session, settings: Settings, username: str, address: str, *, now: datetime,
                        skip: int | None) -> datetime | None:
    """When this username may next be tried from this address, if later than now (`skip`: this request's row)."""
    query = select(func.count(), func.max(LoginFailure.at)).where(
        LoginFailure.username == username, LoginFailure.address == address,
        LoginFailure.at > now - timedelta(seconds=settings.login_memory_seconds))
    if skip is not None:
        query = query.where(LoginFailure.id != skip)
    count, last = session.execute(query).one()
    beyond = count - settings.login_free_failures
    if beyond < 0 or last is None:
        return None
    until = last + timedelta(seconds=login_delay(settings, beyond))
    return until if until > now else None


def _address_blocked_until(session: Session, settings: Settings, address: str, *, now: datetime,
                           skip: int | None) -> datetime | None:
    """When this address is under its ceiling of failures again (whatever the usernames), if later than now."""
    window = timedelta(seconds=settings.login_window_seconds)
    where = [LoginFailure.address == address, LoginFailure.at > now - window]
    if skip is not None:
        where.append(LoginFailure.id != skip)
    count = session.scalar(select(func.count()).where(*where)) or 0
    over = count - settings.login_max_failures_per_address
    if over < 0:
        return None
    # The address is under the ceiling once `over + 1` of its failures have left the window: the last of them goes
    # a window after it happened.
    leaves = session.scalar(select(LoginFailure.at).where(*where).order_by(LoginFailure.at).offset(over).limit(1))
    return leaves + window if leaves is not None else None


def _check_throttle(session: Session, settings: Settings, username: str, address: str, *, now: datetime,
                    skip: int | None = None, commit_first: bool = False) -> None:
    """Refuse (429, `Retry-After` the seconds until both counts allow it) an attempt that must wait."""
    blocked = [until for until in (
        _pair_blocked_until(session, settings, username, address, now=now, skip=skip),
        _address_blocked_until(session, settings, address, now=now, skip=skip),
    ) if until is not None]
    if blocked:
        retry = math.ceil((max(blocked) - now).total_seconds())
        raise TooManyRequests(f"too many failed logins; try again in {max(retry, 1)} s", retry_after=retry,
                              commit_first=commit_first)


def count_attempt(session: Session, settings: Settings, username: str, address: str, *,
                  now: datetime) -> Attempt:
    """The first step: refuse when already throttled (nothing written), else record the attempt as a failure
    (and forget failures older than both counts look back). The edge commits before `finish_login`."""
    username, address = username.strip().lower(), address[:64]
    _check_throttle(session, settings, username[:64], address, now=now)
    failure = LoginFailure(username=username[:64], address=address, at=now)
    session.add(failure)
    remembered = max(settings.login_memory_seconds, settings.login_window_seconds)
    session.execute(delete(LoginFailure).where(LoginFailure.at < now - timedelta(seconds=remembered)))
    return Attempt(username=username, address=address, failure=failure)


def finish_login(session: Session, settings: Settings, issuer: TokenIssuer, attempt: Attempt, password: str, *,
                 now: datetime) -> dict[str, Any]:
    """The second step, once the attempt is committed: the throttle counting it, the password, the token pair."""
    try:
        _check_throttle(session, settings, attempt.username[:64], attempt.address, now=now,
                        skip=attempt.failure.id, commit_first=True)
    except TooManyRequests:
        session.delete(attempt.failure)  # refused, not failed: committed with the refusal
        raise
    officer: Officer | None = find_by_username(session, attempt.username)
    ok = verify_password(officer, password, settings.password_kdf)
    if not ok or officer is None or not officer.active:
        raise Unauthorized(BAD_LOGIN)  # the failure is already counted
    session.execute(delete(LoginFailure).where(LoginFailure.username == attempt.username[:64],
                                               LoginFailure.address == attempt.address))
    if needs_rehash(officer.password_hash, settings.password_kdf):
        officer.password_hash = hash_password(password, settings.password_kdf)
    return issue_pair(session, issuer, officer, now=now)
