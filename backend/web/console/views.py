"""The console's pages and forms: server-rendered, each a thin call into the domain modules.

Every read goes through the function the API uses for the same thing (and so
through `backend.core.jurisdiction`): a case of another district is a 404 page
here exactly as it is a 404 answer there. Every write is a POST with the
session's CSRF token, calls the domain function, commits, and redirects
(303) back with a message, so reloading a page never repeats an action.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Any, TypeVar
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Response,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)
from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from backend.casework import audit, conflicts, lifecycle, procedure, queries
from backend.casework.accounts import find_by_username
from backend.casework.institutions import search_institutions
from backend.core.errors import DomainError, Forbidden, Invalid, NotFound, TooManyRequests, Unauthorized
from backend.core.json_text import contains_lone_surrogate, contains_nul
from backend.core.jurisdiction import regions_of
from backend.core.models import CASE_STATUSES, CustodyHolder, Department, Evidence, Officer, Region, ViolationCategory
from backend.core.reference import CITY
from backend.web import auth as auth_domain
from backend.web.api.context import client_address, state
from backend.web.api.context import session as db_session
from backend.web.api.errors import error_body
from backend.web.api.packages import ROLES as PACKAGE_ROLES
from backend.web.console import present, security
from backend.web.console.i18n import DEFAULT_LANGUAGE, HTML_LANG, LANGUAGES, code, translate
from media import holders, package, uploads
from media.coverage import inspection_coverage
from media.custody import log as custody
from media.store import blocks

log = logging.getLogger("fieldcase.console")
T = TypeVar("T")
bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates", static_folder="static",
               static_url_path="/static")

PUBLIC_ENDPOINTS = {"console.login", "console.login_post", "console.static", "console.not_found"}
PAGE_SIZE = 25
MAX_PURPOSE = 500
MAX_REASON = 2000
# Decisions and transfers need structured data (fine, benchmark, target); the console offers the plain steps.
STRUCTURED_STEPS = ("decided", "transferred")
INLINE_TYPES = ("image/", "video/", "audio/")


# ---------------------------------------------------------------------------------------------- plumbing


def t(key: str, **values: Any) -> str:
    return translate(key, g.get("lang", DEFAULT_LANGUAGE), **values)


def _language() -> str:
    wanted = request.args.get("lang")
    if wanted in LANGUAGES:
        session["lang"] = wanted
        return wanted
    stored = session.get("lang")
    return stored if stored in LANGUAGES else DEFAULT_LANGUAGE


def _is_api() -> bool:
    return request.path.startswith("/console/api/")


def _error_page(status: int, message: str, detail: str | None = None) -> tuple[str, int]:
    return render_template("console/error.html", status=status, message=message, detail=detail), status


@bp.before_request
def _frame() -> Any:
    """Language, form hygiene, CSRF, and the signed-in viewer, before any console view runs."""
    g.lang = _language()
    if request.method == "POST":
        values = [v for _k, vs in request.form.lists() for v in vs]
        if any(contains_nul(v) or contains_lone_surrogate(v) for v in values):
            return _error_page(422, t("error.422"), "NUL or a lone surrogate in a form field")
        if not security.csrf_ok():
            return _error_page(403, t("error.csrf"))
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    g.viewer = security.signed_in(db_session())
    if g.viewer is None:
        if _is_api():
            return jsonify(error_body(401, "sign in to the console first")), 401
        if session.get("officer"):  # it was signed in: the sign-in ended (signed out elsewhere, expired, ...)
            security.end(db_session())
            flash(t("login.expired"), "error")
        target = request.full_path if request.method == "GET" else url_for("console.cases")
        return redirect(url_for("console.login", next=target.rstrip("?")))
    return None


@bp.after_request
def _headers(response: Response) -> Response:
    """No framing, no third-party anything, nothing cached: these pages hold case files and personal data."""
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(DomainError)
def _domain_error(exc: DomainError) -> Any:
    if _is_api():
        response = jsonify(error_body(exc.status, exc.message, exc.errors))
        response.status_code = exc.status
        return response
    messages = {404: "error.404", 403: "error.403", 422: "error.422"}
    return _error_page(exc.status, t(messages.get(exc.status, "error.generic")), exc.message)


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Any:
    """A console page never answers the API's JSON 500; the error is logged like any other."""
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        if _is_api():
            return jsonify(error_body(status, exc.description or "error")), status
        return _error_page(status, t("error.404") if status == 404 else t("error.generic"), exc.description)
    log.exception("console: unhandled error")
    if _is_api():
        return jsonify(error_body(500, "internal error; it has been logged")), 500
    return _error_page(500, t("error.generic"))


@bp.route("/<path:rest>")
def not_found(rest: str) -> Any:
    """Unknown console paths answer the console's own 404 page, not the API's JSON."""
    raise NotFound(f"no page {rest!r}")


class Names:
    """Reference names (regions, departments, categories) in the page's language, read once per request."""

    def __init__(self) -> None:
        s = db_session()
        self.regions = {r.code: r for r in s.scalars(select(Region).order_by(Region.sort, Region.code))}
        self.departments = {d.code: d for d in s.scalars(select(Department).order_by(Department.sort))}
        self.categories = {c.code: c for c in s.scalars(select(ViolationCategory).order_by(ViolationCategory.sort))}

    @staticmethod
    def _name(row: Any, fallback: str | None) -> str:
        if row is None:
            return fallback or ""
        return row.name_zh if g.lang == "zh" else row.name_en

    def region(self, value: str | None) -> str:
        return self._name(self.regions.get(value or ""), value)

    def department(self, value: str | None) -> str:
        return self._name(self.departments.get(value or ""), value)

    def category(self, value: str | None) -> str:
        return self._name(self.categories.get(value or ""), value)


def names() -> Names:
    if "console_names" not in g:
        g.console_names = Names()
    return g.console_names


@bp.context_processor
def _template_globals() -> dict[str, Any]:
    other = "en" if g.get("lang", DEFAULT_LANGUAGE) == "zh" else "zh"
    args = {k: v for k, v in request.args.items(multi=True) if k != "lang"}
    switch = request.path + "?" + urlencode([*args.items(), ("lang", other)])
    return {
        "t": t, "code": lambda prefix, value: code(prefix, value, g.lang), "lang": g.get("lang", DEFAULT_LANGUAGE),
        "html_lang": HTML_LANG[g.get("lang", DEFAULT_LANGUAGE)], "viewer": g.get("viewer"),
        "csrf_token": security.csrf_token, "csrf_field": security.CSRF_FIELD, "local": present.local,
        "names": names, "switch_language_url": switch, "is_reviewer": _is_reviewer, "fingerprint": security.fingerprint,
    }


def _is_reviewer() -> bool:
    viewer = g.get("viewer")
    return viewer is not None and viewer.has_role(*audit.REVIEWER_ROLES)


def _pages(total: int, page: int, page_size: int = PAGE_SIZE) -> dict[str, Any]:
    pages = max(1, math.ceil(total / page_size))
    return {"page": page, "pages": pages, "total": total, "has_prev": page > 1, "has_next": page < pages}


def _page_arg() -> int:
    try:
        return max(1, min(int(request.args.get("page", "1")), 100_000))
    except ValueError:
        return 1


def _form(name: str, limit: int) -> str:
    return (request.form.get(name) or "").strip()[:limit]


def _back(default: str) -> str:
    return security.safe_next(request.form.get("next"), default)


def _tolerance() -> timedelta:
    return timedelta(seconds=float(state().settings.coverage_tolerance_seconds))


def _audit_settings() -> audit.AuditSettings:
    app = state()
    return audit.AuditSettings(upload_deadline=app.media.upload_deadline, coverage_tolerance=_tolerance())


def _scoped_page(template: str, fetch: Callable[[Session, Officer, str], T]) \
        -> Callable[[Callable[[Session, Officer, str, T], dict[str, Any]]], Callable[..., str]]:
    """A page about one object, fetched through the API's own scoped read before anything else is gathered.

    `fetch` raises NotFound for an object outside the viewer's jurisdiction, so
    such a page is the console's 404 (like the API's answer) and nothing about
    the object is read; the decorated function only gathers what the template
    shows, from the object the viewer may see.
    """
    def decorate(gather: Callable[[Session, Officer, str, T], dict[str, Any]]) -> Callable[..., str]:
        @functools.wraps(gather)
        def view(**url_values: str) -> str:
            (ident,) = url_values.values()
            viewer, s = security.viewer(), db_session()
            found = fetch(s, viewer, ident)
            return render_template(template, **gather(s, viewer, ident, found))
        return view
    return decorate


def _domain_flash(exc: DomainError) -> None:
    """A refused action: the domain's own reason, kept as it is (it names the rule that refused)."""
    flash(f"{t('error.generic')} ({exc.status}) {exc.message}", "error")


# ---------------------------------------------------------------------------------------------- signing in


@bp.get("/login")
def login() -> Any:
    if security.signed_in(db_session()) is not None:
        return redirect(url_for("console.cases"))
    return render_template("console/login.html", next=request.args.get("next", ""), error=None, username="")


@bp.post("/login")
def login_post() -> Any:
    """The API's password check and throttle (`backend.web.auth.login`); a console role is needed to go further."""
    username = _form("username", 64)
    password = (request.form.get("password") or "")[:1024]
    target = security.safe_next(request.form.get("next"), url_for("console.cases"))

    def again(message: str, status: int, headers: dict[str, str] | None = None) -> Any:
        page = render_template("console/login.html", next=target, error=message, username=username)
        return page, status, headers or {}

    if not username or not password:
        return again(t("login.missing"), 400)
    st, db = state(), db_session()
    try:
        pair = auth_domain.login(db, st.settings, st.issuer, username, password, client_address())
    except TooManyRequests as exc:
        db.rollback()
        return again(t("login.throttled", seconds=exc.retry_after), 429, exc.headers)
    except Unauthorized:
        db.rollback()
        return again(t("login.bad"), 401)
    officer = find_by_username(db, username)
    row = security.token_row(db, pair["refresh_token"])
    if officer is None or row is None:  # pragma: no cover - login() just made both
        db.rollback()
        return again(t("login.bad"), 401)
    if not officer.has_role(*security.CONSOLE_ROLES):
        from backend.casework.tokens import revoke_family

        revoke_family(db, row.family_id)  # the pair was never handed out; nothing of this sign-in stays usable
        db.commit()
        return render_template("console/refused.html", officer=officer), 403
    db.commit()
    security.start(officer, row, g.lang)
    return redirect(target, code=303)


@bp.post("/logout")
def logout() -> Any:
    security.end(db_session())
    flash(t("logged_out"), "ok")
    return redirect(url_for("console.login"), code=303)


@bp.get("/")
def home() -> Any:
    return redirect(url_for("console.cases"))


# ---------------------------------------------------------------------------------------------- cases


@bp.get("/cases")
def cases() -> Any:
    viewer, s = security.viewer(), db_session()
    page = _page_arg()
    status = request.args.get("status") or None
    region = request.args.get("region") or None
    department = request.args.get("department") or None
    institution_id = request.args.get("institution_id") or None
    q = (request.args.get("q") or "").strip()[:100]
    status = status if status in CASE_STATUSES else None
    region = region if region and region.isdigit() and len(region) == 6 else None
    department = department if department in names().departments else None
    matches: list[Any] = []
    chosen = None
    rows: list[dict[str, Any]] = []
    total = 0
    if institution_id:
        found = present.institutions(s, [institution_id]).get(institution_id)
        chosen = found if found is not None and (regions_of(viewer) is None
                                                 or found.region_code in regions_of(viewer)) else None
        if chosen is None:
            institution_id = None
    elif q:
        matches, match_total = search_institutions(s, viewer, q=q, page=1, page_size=20)
        if match_total == 1:
            chosen, institution_id, matches = matches[0], matches[0].id, []
    if not (q and chosen is None):
        rows, total = queries.list_cases(s, viewer, status=status, region=region, department=department,
                                         institution_id=institution_id, page=page, page_size=PAGE_SIZE)
    insts = present.institutions(s, (r["institution_id"] for r in rows))
    scope = regions_of(viewer)
    region_options = [r for r in names().regions.values() if r.level != "city" and (scope is None or r.code in scope)]
    filters = {"status": status or "", "region": region or "", "department": department or "", "q": q,
               "institution_id": institution_id or ""}
    query = {k: v for k, v in filters.items() if v}
    return render_template("console/cases.html", rows=rows, insts=insts, paging=_pages(total, page),
                           filters=filters, query=query, statuses=CASE_STATUSES, region_options=region_options,
                           matches=matches, chosen=chosen)


@bp.get("/cases/<case_id>")
@_scoped_page("console/case.html", queries.get_case)
def case(s: Session, viewer: Officer, case_id: str, detail: dict[str, Any]) -> dict[str, Any]:
    steps = lifecycle.list_transitions(s, viewer, case_id)
    inspection_ids = [i["id"] for i in detail["inspections"]]
    coverage = {iid: inspection_coverage(s, viewer, iid, tolerance=_tolerance())["status"] for iid in inspection_ids}
    open_rows, _ = conflicts.list_conflicts(s, viewer, case_id=case_id, status=None, page=1, page_size=200)
    case_conflicts = [conflicts.describe(c) for c in open_rows]
    ledger = present.ledger_rows(s, detail["id"], inspection_ids)
    people = present.officer_names(s, [
        detail["created_by"], *(o for i in detail["inspections"] for o in i["officers"]),
        *(f["recorded_by"] for i in detail["inspections"] for f in i["findings"]),
        *(tr["actor"] for tr in steps["transitions"])])
    next_steps = [n for n in steps["next"] if n not in STRUCTURED_STEPS]
    return {"case": detail, "steps": steps, "coverage": coverage, "conflicts": case_conflicts, "ledger": ledger,
            "people": people, "next_steps": next_steps, "may_export": viewer.has_role(*PACKAGE_ROLES)}


@bp.post("/cases/<case_id>/transitions")
def case_step(case_id: str) -> Any:
    viewer, s = security.viewer(), db_session()
    to = _form("to", 32)
    reason = _form("reason", MAX_REASON)
    override = _form("override_reason", MAX_REASON) or None
    back = url_for("console.case", case_id=case_id) + "#lifecycle"
    if to in STRUCTURED_STEPS or to not in CASE_STATUSES or not reason:
        flash(t("error.422") + " " + t("case.step.reason"), "error")
        return redirect(back, code=303)
    settings = state().settings
    try:
        procedure.transition(s, viewer, case_id, to=to, reason=reason,
                             override_reason=override if to == "closed" else None,
                             major_fine_threshold=settings.major_fine_yuan, tolerance=_tolerance())
        s.commit()
    except NotFound:
        raise
    except DomainError as exc:
        s.rollback()
        _domain_flash(exc)
        return redirect(back, code=303)
    flash(t("case.step.done", status=code("status", to, g.lang)), "ok")
    return redirect(back, code=303)


@bp.post("/package")
def export_package() -> Any:
    """The case's evidence package (the API's `GET /cases/{id}/package`), streamed as it is written."""
    viewer, s = security.viewer(), db_session()
    case_id = _form("case_id", 40)
    purpose = _form("purpose", MAX_PURPOSE)
    back = _back(url_for("console.custody_page"))
    if not viewer.has_role(*PACKAGE_ROLES):
        raise Forbidden(t("custody.export.roles"))
    if not case_id or not purpose:
        flash(t("custody.export.missing"), "error")
        return redirect(back, code=303)
    st = state()
    prepared = package.prepare_package(s, st.signer, viewer, case_id, purpose=purpose)
    return Response(prepared.chunks(st.store), mimetype="application/zip", headers={
        "Content-Disposition": f'attachment; filename="{prepared.filename}"', "X-Package-Id": prepared.id})


# ---------------------------------------------------------------------------------------------- inspections


@bp.get("/inspections/<inspection_id>")
@_scoped_page("console/inspection.html", queries.get_inspection)
def inspection(s: Session, viewer: Officer, inspection_id: str, detail: dict[str, Any]) -> dict[str, Any]:
    coverage = inspection_coverage(s, viewer, inspection_id, tolerance=_tolerance())
    items = list(s.scalars(select(Evidence).where(Evidence.inspection_id == inspection_id)
                           .order_by(Evidence.captured_at, Evidence.id)))
    clips = [e for e in items if e.camera_serial is not None]
    photos = [e for e in items if e.kind == "photo"]
    timeline = present.inspection_timeline(coverage, clips, photos)
    people = present.officer_names(s, [*detail["officers"], detail["started_by"],
                                       *(f["recorded_by"] for f in detail["findings"])])
    return {"inspection": detail, "coverage": coverage, "timeline": timeline, "items": items, "clips": clips,
            "photos": photos, "people": people, "palette": present.PALETTE}


# ---------------------------------------------------------------------------------------------- evidence


def _evidence_item(s: Session, viewer: Officer, evidence_id: str) -> dict[str, Any]:
    return uploads.describe(s, uploads.readable_evidence(s, viewer, evidence_id))


@bp.get("/evidence/<evidence_id>")
@_scoped_page("console/evidence.html", _evidence_item)
def evidence(s: Session, viewer: Officer, evidence_id: str, item: dict[str, Any]) -> dict[str, Any]:
    events = uploads.custody_history(s, viewer, evidence_id)["events"]
    holder = s.get(CustodyHolder, evidence_id)
    people = present.officer_names(s, [item["officer_id"], *(e["actor"] for e in events),
                                       holder.holder_id if holder else None, holder.pending_to if holder else None])
    device = present.devices(s, [item["device_id"]]).get(item["device_id"])
    return {"item": item, "events": events, "holder": holder, "people": people, "device": device,
            "exif": present.exif_rows(item)}


@bp.get("/evidence/<evidence_id>/thumbnail")
def thumbnail(evidence_id: str) -> Any:
    """The derived thumbnail (not the original: no custody event), as the API's thumbnail route streams it."""
    stream = uploads.open_thumbnail(db_session(), state().store, security.viewer(), evidence_id)
    try:
        data = stream.read()
    finally:
        stream.close()
    return Response(data, mimetype="image/jpeg", headers={"Cache-Control": "private, max-age=300"})


@bp.post("/files")
def read_file() -> Any:
    """Play or download a verified original: a logged read (`open_original`) with the stated purpose."""
    viewer, s = security.viewer(), db_session()
    evidence_id, _, disposition = (request.form.get("file") or "").partition("|")
    purpose = _form("purpose", MAX_PURPOSE)
    back = _back(url_for("console.evidence", evidence_id=evidence_id) if evidence_id else url_for("console.cases"))
    if not evidence_id:
        raise NotFound("no evidence given")
    if not purpose:
        flash(t("file.purpose_missing"), "error")
        return redirect(back, code=303)
    try:
        item, stream = uploads.open_original(s, state().store, viewer, evidence_id, purpose)
    except NotFound:
        raise
    except DomainError as exc:  # not verified (409), deleted under retention (410)
        s.rollback()
        _domain_flash(exc)
        return redirect(back, code=303)
    s.commit()  # the read is in the custody log before the first byte leaves

    inline = disposition == "inline" and item.media_type.startswith(INLINE_TYPES)
    extension = (item.media_type.split("/")[-1].split(";")[0] or "bin")[:10]
    filename = f"{item.id}.{extension}"
    return Response(stream_with_context(blocks(stream)), mimetype=item.media_type, headers={
        "Content-Length": str(item.size), "ETag": f'"{item.sha256}"', "Digest": f"sha-256={item.sha256}",
        "Content-Disposition": f'{"inline" if inline else "attachment"}; filename="{filename}"',
        # Bytes from a phone, served from the console's origin: a sandboxed document can script nothing here.
        "Content-Security-Policy": "sandbox; default-src 'none'; img-src 'self'; media-src 'self'"})


# ---------------------------------------------------------------------------------------------- audit


def _day(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.combine(date.fromisoformat(value), time(0), present.LOCAL_TZ)


@bp.get("/audit")
def audit_queue() -> Any:
    viewer, s = security.viewer(), db_session()
    if not viewer.has_role(*audit.REVIEWER_ROLES):
        return _error_page(403, t("audit.not_for_you"))
    page = _page_arg()
    kind = request.args.get("kind") or ""
    kind = kind if kind in audit.KINDS else ""
    reviewed_arg = request.args.get("reviewed") or ""
    reviewed = {"yes": True, "no": False}.get(reviewed_arg)
    since_arg, until_arg = request.args.get("from") or "", request.args.get("to") or ""
    error = None
    try:
        since, until = _day(since_arg), _day(until_arg)
    except ValueError:
        since = until = None
        since_arg = until_arg = ""
        error = t("audit.bad_date")
    filters = audit.IssueFilter(kinds=frozenset({kind}) if kind else frozenset(audit.KINDS), since=since,
                                until=until, reviewed=reviewed)
    rows, total = audit.list_issues(s, viewer, filters, _audit_settings(), page=page, page_size=PAGE_SIZE)
    people = present.officer_names(s, (link["id"] for issue in rows for link in issue["links"]
                                       if link.get("rel") in ("officer", "released_by")))
    query = {k: v for k, v in (("kind", kind), ("reviewed", reviewed_arg if reviewed is not None else ""),
                               ("from", since_arg), ("to", until_arg)) if v}
    return render_template("console/audit.html", rows=rows, paging=_pages(total, page), kinds=audit.KINDS,
                           filters={"kind": kind, "reviewed": reviewed_arg, "from": since_arg, "to": until_arg},
                           query=query, error=error, link=_issue_link, people=people,
                           here=request.full_path.rstrip("?"))


def _issue_link(link: dict[str, Any]) -> str | None:
    """Where a link of an audit issue leads in the console (objects with no console page stay plain ids)."""
    rel, ident = link.get("rel"), link.get("id")
    if not ident:
        return None
    if rel in ("inspection", "coverage"):
        return url_for("console.inspection", inspection_id=ident) + ("#timeline" if rel == "coverage" else "")
    if rel == "case":
        return url_for("console.case", case_id=ident)
    if rel in ("evidence", "custody"):
        return url_for("console.evidence", evidence_id=ident) + ("#custody" if rel == "custody" else "")
    return None


@bp.post("/audit/review")
def audit_review() -> Any:
    viewer, s = security.viewer(), db_session()
    key = _form("key", audit.MAX_KEY)
    comment = _form("comment", audit.MAX_COMMENT)
    back = _back(url_for("console.audit_queue"))
    try:
        audit.mark_reviewed(s, viewer, key, comment, _audit_settings())
        s.commit()
    except DomainError as exc:
        s.rollback()
        if isinstance(exc, Forbidden):
            raise
        _domain_flash(exc)
        return redirect(back, code=303)
    flash(t("audit.marked"), "ok")
    return redirect(back + f"#issue-{security.fingerprint(key)}", code=303)


# ---------------------------------------------------------------------------------------------- custody


def _custodians(viewer: Officer) -> list[Officer]:
    """Active custodians a hand-over could go to (the domain still checks the item's region on transfer)."""
    scope = regions_of(viewer)
    stmt = select(Officer).where(Officer.active.is_(True), Officer.id != viewer.id)
    if scope is not None:
        stmt = stmt.where(or_(Officer.region_code.in_(sorted(scope)), Officer.region_code == CITY))
    return [o for o in db_session().scalars(stmt.order_by(Officer.name)) if o.has_role("custodian")]


@bp.get("/custody")
def custody_page() -> Any:
    viewer, s = security.viewer(), db_session()
    page = _page_arg()
    rows, total = holders.holdings(s, viewer, page=page, page_size=PAGE_SIZE)
    people = present.officer_names(s, [*(r["holder_id"] for r in rows), *(r["pending_to"] for r in rows)])
    return render_template("console/custody.html", rows=rows, paging=_pages(total, page), people=people,
                           custodians=_custodians(viewer), may_export=viewer.has_role(*PACKAGE_ROLES),
                           prefill=request.args.get("case_id", "")[:40])


def _custody_action(act: Callable[[Any, Any], Any], done: str) -> Any:
    """One hand-over step from the custody page: committed and flashed as done, or refused with the reason."""
    s = db_session()
    try:
        act(s, security.viewer())
        s.commit()
    except DomainError as exc:
        s.rollback()
        _domain_flash(exc)
    else:
        flash(t(done), "ok")
    return redirect(url_for("console.custody_page"), code=303)


@bp.post("/custody/transfer")
def custody_transfer() -> Any:
    return _custody_action(lambda s, viewer: holders.request_transfer(
        s, viewer, _form("evidence_id", 40), _form("to", 40), _form("reason", MAX_PURPOSE)), "custody.transfer.done")


@bp.post("/custody/acknowledge")
def custody_acknowledge() -> Any:
    accept = request.form.get("answer") != "refuse"
    return _custody_action(lambda s, viewer: holders.acknowledge(
        s, viewer, _form("evidence_id", 40), accept, _form("note", MAX_PURPOSE) or None), "custody.ack.done")


# ---------------------------------------------------------------------------------------------- verification data
# What the in-browser verifier fetches, for a signed-in console session (no bearer token in a browser). The
# answers are exactly the API's (`GET /evidence/{id}/custody`, `/custody/tree-head`, `/custody/proofs/inclusion`);
# the public key is the API's public `GET /api/v1/custody/public-key`. None of them carries a verdict.


def _int_arg(name: str) -> int:
    try:
        value = int(request.args.get(name, ""))
    except ValueError:
        raise Invalid(f"{name} must be an integer", errors={name: ["not an integer"]}) from None
    if value < 0:
        raise Invalid(f"{name} must not be negative", errors={name: ["negative"]})
    return value


@bp.get("/api/evidence/<evidence_id>/custody")
def api_custody_events(evidence_id: str) -> Any:
    return jsonify(uploads.custody_history(db_session(), security.viewer(), evidence_id))


@bp.get("/api/custody/tree-head")
def api_tree_head() -> Any:
    s = db_session()
    head = custody.latest_head(s, state().signer)
    s.commit()
    return jsonify(head)


@bp.get("/api/custody/proofs/inclusion")
def api_inclusion() -> Any:
    return jsonify(custody.inclusion(db_session(), _int_arg("leaf_index"), _int_arg("tree_size")))
