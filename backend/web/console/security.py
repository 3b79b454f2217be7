"""Who is at the desk: the console's signed session cookie, its server-side handle, and CSRF tokens.

Signing in goes through `backend.web.auth`, the API's own password check
and failed-login throttle (per username and per address), so a browser gets
no more guesses than a phone. That call also issues a refresh-token pair: the
console never hands the tokens to anyone, but keeps the *row* of the refresh
token in the session as the server-side handle of this sign-in. Each request
checks that row, so signing out (its family is revoked), deactivating the
officer (which revokes all their tokens) and the token's own expiry end a
console session at once, although the cookie itself is stateless.

The cookie is Flask's signed session (secret from the instance folder, like
every other secret): HttpOnly, SameSite=Lax, path `/console`, and Secure
whenever the request came over TLS (directly, or at a trusted proxy with
FIELDCASE_TRUST_PROXY). Every POST carries the session's CSRF token in a
hidden field, compared in constant time.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, g, has_request_context, request, session
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.casework import tokens
from backend.core.crypto import digests
from backend.core.models import Officer, RefreshToken

CONSOLE_ROLES = ("custodian", "reviewer", "legal_reviewer", "admin")
SESSION_IDLE = timedelta(hours=8)  # the cookie's own lifetime, renewed by every request: a working day idle
SESSION_MAX = timedelta(hours=12)  # from sign-in, however busy
CSRF_FIELD = "csrf_token"
COOKIE_NAME = "fieldcase_console"


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session, Secure whenever the request itself arrived over TLS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        configured = bool(app.config.get("SESSION_COOKIE_SECURE"))
        return configured or (has_request_context() and request.is_secure)


def configure(app: Flask, secret: bytes) -> None:
    """Session settings for the console; the API never reads the cookie (it is scoped to /console)."""
    app.secret_key = secret
    app.session_interface = ConsoleSessionInterface()
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_PATH="/console",
        PERMANENT_SESSION_LIFETIME=SESSION_IDLE,
    )


def csrf_token() -> str:
    """The session's CSRF token, made on first use (also before sign-in: the sign-in form carries one too)."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok() -> bool:
    expected = session.get("csrf")
    given = request.form.get(CSRF_FIELD, "")
    return bool(expected) and digests.equal(expected.encode(), given.encode())


def token_row(db: Session, refresh_token: str) -> RefreshToken | None:
    """The stored row of a refresh token that the sign-in just issued (stored by its digest only)."""
    digest = tokens.digest(refresh_token)
    return db.scalars(select(RefreshToken).where(RefreshToken.token_hash == digest)).first()


def start(officer: Officer, row: RefreshToken, language: str, *, now: datetime) -> None:
    """A fresh session for this sign-in: nothing carried over from before it, a new CSRF token."""
    session.clear()
    session.permanent = True
    session.update({"officer": officer.id, "sid": row.id, "at": now.isoformat(), "lang": language,
                    "csrf": secrets.token_urlsafe(32)})


def end(db: Session, *, now: datetime) -> None:
    """Sign out: revoke the sign-in's token family (so a copied cookie is dead too) and forget the session."""
    sid = session.get("sid")
    if sid is not None:
        row = db.get(RefreshToken, sid)
        if row is not None:
            tokens.revoke_family(db, row.family_id, now=now)
            db.commit()
    language = session.get("lang")
    session.clear()
    if language:
        session["lang"] = language


def signed_in(db: Session, *, now: datetime) -> Officer | None:
    """The officer of this session if it still stands: token row live, officer active, a console role, in time."""
    officer_id, sid, started = session.get("officer"), session.get("sid"), session.get("at")
    if not officer_id or sid is None or not started:
        return None
    try:
        since = datetime.fromisoformat(started)
    except (TypeError, ValueError):
        return None
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    if now - since > SESSION_MAX:
        return None
    row = db.get(RefreshToken, sid)
    if row is None or row.officer_id != officer_id or row.revoked_at is not None or row.expires_at <= now:
        return None
    officer = db.get(Officer, officer_id)
    if officer is None or not officer.active or not officer.has_role(*CONSOLE_ROLES):
        return None
    return officer


def viewer() -> Officer:
    return g.viewer


def fingerprint(value: str) -> str:
    """A short, stable, non-reversible tag (for element ids built from keys that hold ':' and such)."""
    return digests.sha256_hex(value.encode())[:12]


def safe_next(target: Any, default: str) -> str:
    """Only a path inside the console: never another host (`//evil`, `https://...`) after signing in."""
    if isinstance(target, str) and target.startswith("/console/") and not target.startswith("//") \
            and "\\" not in target and "\n" not in target and "\r" not in target:
        return target
    return default
