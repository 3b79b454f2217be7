"""Per-request plumbing: the database session, the caller, the request's time, and role checks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any

from flask import current_app, g, request
from sqlalchemy.orm import Session

from backend.core.errors import Forbidden, Unauthorized
from backend.core.models import Officer
from backend.core.uow import commit_retrying
from backend.web.state import AppState

BEARER = [{"bearerAuth": []}]
ROLES_EXTENSION = "x-roles"  # OpenAPI extension on an operation: the caller needs one of these roles


def state() -> AppState:
    return current_app.extensions["fieldcase"]


def session() -> Session:
    if "db_session" not in g:
        g.db_session = state().db.session()
    return g.db_session


def now() -> datetime:
    """The request's time: the app's clock, read once per request, so everything one request records carries
    one instant (and a test's clock decides it)."""
    if "now" not in g:
        g.now = state().clock()
    return g.now


def close_session(_exc: BaseException | None = None) -> None:
    s = g.pop("db_session", None)
    if s is not None:
        s.close()


def client_address() -> str:
    return request.remote_addr or "unknown"


def current_officer() -> Officer:
    officer = g.get("officer")
    if officer is None:
        raise Unauthorized("authentication required")
    return officer


def _authenticate() -> Officer:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("a Bearer access token is required",
                           headers={"WWW-Authenticate": 'Bearer realm="fieldcase"'})
    claims = state().issuer.decode_access(token.strip(), now=now())
    officer = session().get(Officer, claims["sub"])
    if officer is None or not officer.active:
        raise Unauthorized("invalid access token")
    return officer


def authenticated(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Require a valid access token and, when roles are given, one of them."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            officer = _authenticate()
            if roles and not officer.has_role(*roles):
                raise Forbidden("this needs one of the roles: " + ", ".join(roles))
            g.officer = officer
            return view(*args, **kwargs)

        doc = getattr(wrapper, "_apidoc", {})
        manual = {**doc.get("manual_doc", {}), "security": BEARER}
        if roles:  # the document says who may call, so a client (and the schema fuzz test) need not guess
            manual[ROLES_EXTENSION] = list(roles)
        wrapper._apidoc = {**doc, "manual_doc": manual}
        return wrapper

    return decorator


def committed(view: Callable[..., Any] | None = None, *, attempts: int = 1) -> Any:
    """Commit the request's transaction once the domain call has succeeded. With `attempts`, a call that lost a
    race (a deadlock, a key another request wrote first) runs again whole (`backend.core.uow.commit_retrying`)."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return commit_retrying(session(), lambda _session: view(*args, **kwargs), attempts=attempts)

        return wrapper

    return decorator(view) if view is not None else decorator
