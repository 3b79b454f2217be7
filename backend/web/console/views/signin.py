"""Signing in to the console and out of it: the sign-in page, its form, sign-out, and the console's front door.

Sign-in is the API's own password check and throttle (`backend.web.auth`);
only a console role (`security.CONSOLE_ROLES`) is let further, and the refresh
token pair made for anyone else is revoked at once. The session itself (its
cookie, its CSRF token, its end) is `backend.web.console.security`'s.
"""

from __future__ import annotations

from typing import Any

from flask import flash, g, redirect, render_template, request, url_for

from backend.casework.accounts import find_by_username
from backend.core.errors import TooManyRequests, Unauthorized
from backend.core.uow import settle_refusal
from backend.web import auth as auth_domain
from backend.web.api.context import client_address, now, state
from backend.web.api.context import session as db_session
from backend.web.console import security
from backend.web.console.views.frame import bp, t
from backend.web.console.views.pages import form_text


@bp.get("/login")
def login() -> Any:
    if security.signed_in(db_session(), now=now()) is not None:
        return redirect(url_for("console.cases"))
    return render_template("console/login.html", next=request.args.get("next", ""), error=None, username="")


@bp.post("/login")
def login_post() -> Any:
    """The API's password check and throttle (`backend.web.auth`); a console role is needed to go further."""
    username = form_text("username", 64)
    password = (request.form.get("password") or "")[:1024]
    target = security.safe_next(request.form.get("next"), url_for("console.cases"))

    def again(message: str, status: int, headers: dict[str, str] | None = None) -> Any:
        page = render_template("console/login.html", next=target, error=message, username=username)
        return page, status, headers or {}

    if not username or not password:
        return again(t("login.missing"), 400)
    st, db = state(), db_session()
    try:
        attempt = auth_domain.count_attempt(db, st.settings, username, client_address(), now=now())
        db.commit()  # counted before the password is checked, and counted still when the sign-in fails
        pair = auth_domain.finish_login(db, st.settings, st.issuer, attempt, password, now=now())
    except TooManyRequests as exc:
        settle_refusal(db, exc)
        return again(t("login.throttled", seconds=exc.retry_after), 429, exc.headers)
    except Unauthorized as exc:
        settle_refusal(db, exc)
        return again(t("login.bad"), 401)
    officer = find_by_username(db, username)
    row = security.token_row(db, pair["refresh_token"])
    if officer is None or row is None:  # pragma: no cover - login() just made both
        db.rollback()
        return again(t("login.bad"), 401)
    if not officer.has_role(*security.CONSOLE_ROLES):
        from backend.casework.tokens import revoke_family

        # the pair was never handed out; nothing of this sign-in stays usable
        revoke_family(db, row.family_id, now=now())
        db.commit()
        return render_template("console/refused.html", officer=officer), 403
    db.commit()
    security.start(officer, row, g.lang, now=now())
    return redirect(target, code=303)


@bp.post("/logout")
def logout() -> Any:
    security.end(db_session(), now=now())
    flash(t("logged_out"), "ok")
    return redirect(url_for("console.login"), code=303)


@bp.get("/")
def home() -> Any:
    return redirect(url_for("console.cases"))
