"""Officer accounts: creation, updates, certificates, and checking a password."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.casework.tokens import revoke_all_for_officer
from backend.core.crypto.passwords import PASSWORD_KDF, hash_password
from backend.core.errors import Conflict, Invalid
from backend.core.jurisdiction import get_scoped, may_see_region, regions_of, scope
from backend.core.models import ROLES, Agency, Officer, OfficerCertificate, new_id
from backend.core.paging import paginate
from backend.core.reference import CITY, agency_id
from sync.certificate_history import record_certificate

MIN_PASSWORD_LENGTH = 10
def _check_roles(roles: list[str]) -> list[str]:
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise Invalid("roles must be a non-empty subset of " + ", ".join(ROLES),
                      errors={"roles": [f"unknown role {r!r}" for r in bad] or ["no role given"]})
    return sorted(set(roles), key=ROLES.index)


def _check_unit(session: Session, department: str, region: str) -> None:
    if session.get(Agency, agency_id(department, region)) is None:
        raise Invalid(f"no department {department!r} in region {region!r}",
                      errors={"department": ["unknown department or region"]})


def _check_certificate(number: str | None, valid_from: date | None, valid_until: date | None) -> None:
    if number and valid_until is None:
        raise Invalid("a certificate needs a valid_until date", errors={"cert_valid_until": ["required"]})
    if valid_from and valid_until and valid_until < valid_from:
        raise Invalid("certificate valid_until is before valid_from",
                      errors={"cert_valid_until": ["before valid_from"]})


def create_officer(session: Session, *, username: str, password: str, name: str, department: str,
                   region: str, roles: list[str], cert_number: str | None = None,
                   cert_valid_from: date | None = None, cert_valid_until: date | None = None,
                   kdf: str = PASSWORD_KDF, now: datetime, by: str | None = None) -> Officer:
    username = username.strip().lower()
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"password must have at least {MIN_PASSWORD_LENGTH} characters",
                      errors={"password": ["too short"]})
    _check_unit(session, department, region)
    _check_certificate(cert_number, cert_valid_from, cert_valid_until)
    if session.scalar(select(func.count()).where(Officer.username == username)):
        raise Conflict(f"username {username!r} is taken")
    if cert_number and session.scalar(select(func.count()).where(Officer.cert_number == cert_number)):
        raise Conflict(f"certificate {cert_number!r} is already held by another officer")
    officer = Officer(
        id=new_id("ofc"), username=username, name=name, password_hash=hash_password(password, kdf),
        department_code=department, region_code=region, roles=_check_roles(roles),
        cert_number=cert_number or None, cert_valid_from=cert_valid_from, cert_valid_until=cert_valid_until,
        active=True,
    )
    session.add(officer)
    session.flush()
    record_certificate(session, officer, now=now, by=by)
    return officer


def _keep_an_admin(session: Session, admin: Officer, officer: Officer, *, active: bool, roles: list[str]) -> None:
    """Someone must always be able to undo an admin's mistake: an admin does not deactivate themself, and the last
    active admin is neither deactivated nor stripped of the role (409, nothing changed).

    The active officers are locked while this is decided, so two admins deactivating each other at once cannot
    both pass with the other still counted (on PostgreSQL the second waits, then counts again; SQLite has one
    writer at a time).
    """
    if officer.id == admin.id and officer.active and not active:
        raise Conflict("you cannot deactivate your own account; another admin can",
                       errors={"active": ["an admin cannot deactivate themself"]})
    if not officer.active or not officer.has_role("admin") or (active and "admin" in roles):
        return
    still = session.scalars(select(Officer).where(Officer.active.is_(True)).with_for_update()
                            .execution_options(populate_existing=True)).all()
    if not any(o.has_role("admin") for o in still if o.id != officer.id):
        field = "roles" if active else "active"
        raise Conflict(f"{officer.username} is the last active admin; make another officer admin first",
                       errors={field: ["the last active admin"]})


def update_officer(session: Session, admin: Officer, officer_id: str, changes: dict[str, Any],
                   kdf: str = PASSWORD_KDF, *, now: datetime) -> Officer:
    officer = get_scoped(session, Officer, officer_id, admin, what="officer")
    if "roles" in changes:
        changes["roles"] = _check_roles(changes["roles"])
    _keep_an_admin(session, admin, officer, active=changes.get("active", officer.active),
                   roles=changes.get("roles", officer.roles))
    if "password" in changes:
        password = changes.pop("password")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise Invalid(f"password must have at least {MIN_PASSWORD_LENGTH} characters",
                          errors={"password": ["too short"]})
        officer.password_hash = hash_password(password, kdf)
    if "roles" in changes:
        officer.roles = _check_roles(changes.pop("roles"))
    dept = changes.pop("department", officer.department_code)
    region = changes.pop("region", officer.region_code)
    if not may_see_region(admin, region):
        raise Invalid("region is outside your jurisdiction", errors={"region": ["outside your jurisdiction"]})
    _check_unit(session, dept, region)
    officer.department_code, officer.region_code = dept, region
    cert = {k: changes.pop(k) for k in ("cert_number", "cert_valid_from", "cert_valid_until") if k in changes}
    if cert:
        number = cert.get("cert_number", officer.cert_number)
        start = cert.get("cert_valid_from", officer.cert_valid_from)
        until = cert.get("cert_valid_until", officer.cert_valid_until)
        _check_certificate(number, start, until)
        if number and number != officer.cert_number and session.scalar(
            select(func.count()).where(Officer.cert_number == number)
        ):
            raise Conflict(f"certificate {number!r} is already held by another officer")
        officer.cert_number, officer.cert_valid_from, officer.cert_valid_until = number or None, start, until
        record_certificate(session, officer, now=now, by=admin.id)
    for key in ("name", "active"):
        if key in changes:
            setattr(officer, key, changes.pop(key))
    if changes:
        raise Invalid("unknown fields: " + ", ".join(sorted(changes)))
    session.flush()
    return officer


def deactivate_officer(session: Session, admin: Officer, officer_id: str, *, now: datetime) -> Officer:
    officer = update_officer(session, admin, officer_id, {"active": False}, now=now)
    revoke_all_for_officer(session, officer.id, now=now)
    return officer


def list_officers(session: Session, viewer: Officer, *, page: int, page_size: int,
                  department: str | None = None, region: str | None = None) -> tuple[list[Officer], int]:
    stmt = scope(select(Officer), Officer.region_code, viewer)
    if department:
        stmt = stmt.where(Officer.department_code == department)
    if region:
        stmt = stmt.where(Officer.region_code == region)
    return paginate(session, stmt, Officer.username, page=page, page_size=page_size)


def crew_directory(session: Session, viewer: Officer) -> list[Officer]:
    """The active officers who may stand in the viewer's crew, for a phone to check certificates before it signs.

    Those of the viewer's jurisdiction, and the city's, who inspect in every district: a district officer's
    phone must be able to judge a city colleague's certificate too. Inactive officers are left out (the server
    counts no inactive officer as certified), so a phone finds them unknown.
    """
    regions = regions_of(viewer)
    stmt = select(Officer).where(Officer.active.is_(True))
    if regions is not None:
        stmt = stmt.where(Officer.region_code.in_(sorted(regions | {CITY})))
    return list(session.scalars(stmt.order_by(Officer.id)))


def get_officer(session: Session, viewer: Officer, officer_id: str) -> Officer:
    return get_scoped(session, Officer, officer_id, viewer, what="officer")


def certificate_history(session: Session, viewer: Officer, officer_id: str) -> list[OfficerCertificate]:
    officer = get_scoped(session, Officer, officer_id, viewer, what="officer")
    return list(session.scalars(select(OfficerCertificate).where(OfficerCertificate.officer_id == officer.id)
                                .order_by(OfficerCertificate.id)))


def find_by_username(session: Session, username: str) -> Officer | None:
    return session.scalars(select(Officer).where(Officer.username == username.strip().lower())).first()



def create_officer_as(session: Session, admin: Officer, **fields: Any) -> Officer:
    """An admin creates officers only within their own jurisdiction."""
    if not may_see_region(admin, fields["region"]):
        raise Invalid("region is outside your jurisdiction", errors={"region": ["outside your jurisdiction"]})
    return create_officer(session, by=admin.id, **fields)
