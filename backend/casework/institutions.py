"""The institution registry: create, update, search within jurisdiction, import from CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from backend.core.errors import Conflict, DomainError, Invalid
from backend.core.jurisdiction import get_scoped, may_see_region, scope
from backend.core.models import CATEGORIES, LICENCE_STATUSES, RISK_LEVELS, Institution, Officer, Region, new_id
from backend.core.names import normalise_name
from backend.core.paging import paginate
from sync import feed
from sync.credit_code import credit_code_problem, normalise_credit_code

EDITABLE = ("credit_code", "name", "address", "region", "licence_number", "licence_status", "category",
            "risk_level")


def _validate(session: Session, data: dict[str, Any]) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    code = data.get("credit_code")
    if code:
        problem = credit_code_problem(code)
        if problem:
            errors["credit_code"] = [problem]
    if "name" in data and not str(data["name"]).strip():
        errors["name"] = ["must not be empty"]
    if "region" in data and session.get(Region, data["region"]) is None:
        errors["region"] = [f"unknown region {data['region']!r}"]
    for key, allowed in (("licence_status", LICENCE_STATUSES), ("category", CATEGORIES),
                         ("risk_level", RISK_LEVELS)):
        if key in data and data[key] not in allowed:
            errors[key] = [f"must be one of {', '.join(allowed)}"]
    return errors


def _clean(data: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in data.items() if k in EDITABLE}
    if out.get("credit_code"):
        out["credit_code"] = normalise_credit_code(out["credit_code"])
    elif "credit_code" in out:
        out["credit_code"] = None
    for key in ("name", "address", "licence_number"):
        if isinstance(out.get(key), str):
            out[key] = out[key].strip()
    return out


def _apply(inst: Institution, data: dict[str, Any]) -> None:
    for key, value in data.items():
        setattr(inst, "region_code" if key == "region" else key, value)
    if "name" in data:
        inst.name_norm = normalise_name(inst.name)


def _ensure_unique_code(session: Session, code: str | None, own_id: str | None = None) -> None:
    if not code:
        return
    other = session.scalars(select(Institution.id).where(Institution.credit_code == code)).first()
    if other and other != own_id:
        raise Conflict(f"credit code {code} is already registered", errors={"credit_code": ["taken"]})


def create_institution(session: Session, actor: Officer, data: dict[str, Any]) -> Institution:
    data = _clean(data)
    errors = _validate(session, data)
    if errors:
        raise Invalid("institution is not valid", errors=errors)
    if not may_see_region(actor, data["region"]):
        raise Invalid("region is outside your jurisdiction", errors={"region": ["outside your jurisdiction"]})
    _ensure_unique_code(session, data.get("credit_code"))
    inst = Institution(id=new_id("ins"), address="", licence_status="unknown", category="other",
                       risk_level="medium", provisional=False, complaint_count=0, violation_count=0)
    _apply(inst, data)
    session.add(inst)
    session.flush()
    feed.emit(session, "institution", inst)
    return inst


def update_institution(session: Session, actor: Officer, institution_id: str, changes: dict[str, Any]) -> Institution:
    inst = get_scoped(session, Institution, institution_id, actor, what="institution")
    changes = _clean(changes)
    errors = _validate(session, changes)
    if errors:
        raise Invalid("institution is not valid", errors=errors)
    if "region" in changes and not may_see_region(actor, changes["region"]):
        raise Invalid("region is outside your jurisdiction", errors={"region": ["outside your jurisdiction"]})
    _ensure_unique_code(session, changes.get("credit_code"), inst.id)
    _apply(inst, changes)
    if inst.credit_code:
        inst.provisional, inst.provisional_key = False, None
    session.flush()
    feed.emit(session, "institution", inst)
    return inst


def get_institution(session: Session, viewer: Officer, institution_id: str) -> Institution:
    return get_scoped(session, Institution, institution_id, viewer, what="institution")


def search_institutions(session: Session, viewer: Officer, *, q: str | None = None,
                        credit_code: str | None = None, region: str | None = None,
                        category: str | None = None, risk_level: str | None = None,
                        page: int = 1, page_size: int = 50) -> tuple[list[Institution], int]:
    stmt = scope(select(Institution), Institution.region_code, viewer)
    if q:
        fragment = normalise_name(q)
        like = "%" + fragment.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(or_(Institution.name_norm.like(like, escape="\\"),
                              Institution.credit_code == normalise_credit_code(q)))
    if credit_code:
        stmt = stmt.where(Institution.credit_code == normalise_credit_code(credit_code))
    if region:
        stmt = stmt.where(Institution.region_code == region)
    if category:
        stmt = stmt.where(Institution.category == category)
    if risk_level:
        stmt = stmt.where(Institution.risk_level == risk_level)
    return paginate(session, stmt, Institution.name_norm, Institution.id, page=page, page_size=page_size)


CSV_COLUMNS = ("credit_code", "name", "address", "region", "licence_number", "licence_status", "category",
               "risk_level")


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"created": self.created, "updated": self.updated, "errors": self.errors}


def import_csv(session: Session, actor: Officer, text: str) -> ImportReport:
    """Import rows one by one: a bad row is reported with its line number and the good rows land.

    A row whose credit code is already registered updates that institution,
    so re-importing a corrected file is safe.
    """
    # newline="": the csv module reads line ends itself, a lone CR included (as it asks to be opened).
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    try:
        return _import_rows(session, actor, reader)
    except csv.Error as exc:
        # A file csv cannot read (a field past its 128 KiB limit, ...) is refused whole; nothing is kept.
        where = f"after line {reader.line_num}" if reader.line_num else "in its first line"
        raise Invalid(f"CSV is malformed {where}: {exc}", errors={"csv": [f"{where}: {exc}"]}) from None


def _import_rows(session: Session, actor: Officer, reader: csv.DictReader) -> ImportReport:
    report = ImportReport()
    missing = [c for c in ("name", "region") if c not in (reader.fieldnames or [])]
    if missing:
        raise Invalid("CSV header lacks required columns: " + ", ".join(missing),
                      errors={"header": [f"missing {c}" for c in missing]})
    unknown = [c for c in reader.fieldnames or [] if c not in CSV_COLUMNS]
    if unknown:
        raise Invalid("CSV header has unknown columns: " + ", ".join(unknown),
                      errors={"header": [f"unknown {c}" for c in unknown]})
    for row in reader:
        line = reader.line_num
        data = {k: (v or "").strip() for k, v in row.items() if k in CSV_COLUMNS and (v or "").strip()}
        if None in row:
            report.errors.append({"line": line, "errors": {"row": ["more fields than the header has"]}})
            continue
        try:
            with session.begin_nested():
                code = normalise_credit_code(data["credit_code"]) if data.get("credit_code") else None
                existing = code and session.scalars(
                    select(Institution).where(Institution.credit_code == code)).first()
                if existing:
                    update_institution(session, actor, existing.id, data)
                    report.updated += 1
                else:
                    if "name" not in data or "region" not in data:
                        raise Invalid("row lacks name or region", errors={
                            k: ["required"] for k in ("name", "region") if k not in data})
                    create_institution(session, actor, data)
                    report.created += 1
        except DomainError as exc:
            report.errors.append({"line": line, "message": exc.message, "errors": exc.errors or {}})
    return report
