"""Logging in: password check, throttling of repeated failures, and the token pair."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from backend.casework.accounts import find_by_username
from backend.casework.tokens import TokenIssuer, issue_pair
from backend.core.config import Settings
from backend.core.errors import TooManyRequests, Unauthorized
from backend.core.models import LoginFailure, Officer, utcnow
from backend.core.passwords import verify_password

BAD_LOGIN = "wrong username or password"


def _check_throttle(session: Session, settings: Settings, username: str, address: str, *, own: int = 0) -> None:
    """Refuse when the window already holds the limit of failures; `own` of them are this request's."""
    now = utcnow()
    since = now - timedelta(seconds=settings.login_window_seconds)
    for column, value, limit in (
        (LoginFailure.username, username, settings.login_max_failures_per_user),
        (LoginFailure.address, address, settings.login_max_failures_per_address),
    ):
        count, oldest = session.execute(
            select(func.count(), func.min(LoginFailure.at)).where(column == value, LoginFailure.at > since)
        ).one()
        if count - own >= limit:
            retry = int((oldest + timedelta(seconds=settings.login_window_seconds) - now).total_seconds())
            raise TooManyRequests("too many failed logins; try again later", retry_after=retry + 1)


def login(session: Session, settings: Settings, issuer: TokenIssuer, username: str, password: str,
          address: str) -> dict[str, Any]:
    """Exchange credentials for a token pair.

    The attempt is recorded as a failure and committed before the (slow)
    password check, and the throttle is asked again counting it: a burst of
    concurrent guesses cannot all pass the check before any of them has been
    counted. A success removes the username's failures, this one included;
    an attempt the throttle refuses is not left counted, so refused attempts
    do not extend a block.
    """
    username = username.strip().lower()
    _check_throttle(session, settings, username, address)
    now = utcnow()
    attempt = LoginFailure(username=username[:64], address=address[:64], at=now)
    session.add(attempt)
    session.execute(delete(LoginFailure).where(
        LoginFailure.at < now - timedelta(seconds=settings.login_window_seconds)))
    session.commit()
    try:
        _check_throttle(session, settings, username, address, own=1)
    except TooManyRequests:
        session.delete(attempt)
        session.commit()
        raise
    officer: Officer | None = find_by_username(session, username)
    ok = verify_password(officer, password, settings.password_kdf)
    if not ok or officer is None or not officer.active:
        raise Unauthorized(BAD_LOGIN)  # the failure is already counted
    session.execute(delete(LoginFailure).where(LoginFailure.username == username))
    return issue_pair(session, issuer, officer)
