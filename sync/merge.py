"""Resolving what a phone names (institutions, cases) and merging offline case.opens (PROTOCOL §4 Merging)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.credit_code import credit_code_problem, normalise_credit_code
from backend.institutions import normalise_name
from backend.jurisdiction import may_see_region
from backend.models import Case, CaseAlias, Institution, Officer, Region, new_id

from . import feed
from .records import ContentError


def resolve_institution(session: Session, officer: Officer, ref: dict[str, Any]) -> Institution:
    """A registry id, else a match by credit code, else by name and region, else a new provisional one."""
    if "id" in ref:
        inst = session.get(Institution, ref["id"])
        if inst is None or not may_see_region(officer, inst.region_code):
            raise ContentError("unknown_institution", f"no institution {ref['id']!r}")
        return inst
    if session.get(Region, ref["region"]) is None:
        raise ContentError("unknown_region", f"no region {ref['region']!r}")
    code = normalise_credit_code(ref["credit_code"]) if ref.get("credit_code") else None
    if code:
        problem = credit_code_problem(code)
        if problem:
            raise ContentError("bad_credit_code", f"credit code {code}: {problem}")
        found = session.scalars(select(Institution).where(Institution.credit_code == code)).first()
        if found:
            return found
    name_norm = normalise_name(ref["name"])
    if not name_norm:
        raise ContentError("bad_body", "institution name is empty once normalised")
    candidates = list(session.scalars(select(Institution).where(
        Institution.region_code == ref["region"], Institution.name_norm == name_norm)
        .order_by(Institution.provisional, Institution.created_at)))
    if not code and candidates:
        return candidates[0]
    if code and candidates:
        # Same name, and the phone knows the code the registry lacked: complete the registry entry.
        uncoded = [c for c in candidates if c.credit_code is None]
        if uncoded:
            uncoded[0].credit_code, uncoded[0].provisional_key = code, None
            feed.emit(session, "institution", uncoded[0])
            return uncoded[0]
    inst = Institution(
        id=new_id("ins"), credit_code=code, name=ref["name"].strip(), name_norm=name_norm,
        address=(ref.get("address") or "").strip(), region_code=ref["region"], licence_status="unknown",
        category="other", risk_level="medium", provisional=True, complaint_count=0, violation_count=0,
        provisional_key=None if code else f"{ref['region']}:{name_norm}",
    )
    try:
        with session.begin_nested():
            session.add(inst)
            session.flush()
    except IntegrityError:
        # Another push created it between our look-up and our insert: use theirs.
        stmt = (select(Institution).where(Institution.credit_code == code) if code else
                select(Institution).where(Institution.provisional_key == inst.provisional_key))
        found = session.scalars(stmt).first()
        if found is None:
            raise
        return found
    feed.emit(session, "institution", inst)
    return inst


def resolve_case(session: Session, officer: Officer, ref: dict[str, Any]) -> Case:
    if "id" in ref:
        case = session.get(Case, ref["id"])
    else:
        alias = session.get(CaseAlias, ref["client_case_id"])
        case = session.get(Case, alias.case_id) if alias else None
    if case is None or not (may_see_region(officer, case.region_code) or case.created_by == officer.id):
        raise ContentError("unknown_case", f"no case {ref.get('id') or ref.get('client_case_id')!r}")
    return case


def open_case(session: Session, officer: Officer, device_id: str, body: dict[str, Any], at) -> dict[str, Any]:
    """Open a case, or attach the phone's id to the open case of this institution and department."""
    client_case_id = body["client_case_id"]
    if session.get(CaseAlias, client_case_id) is not None:
        raise ContentError("duplicate_id", f"client_case_id {client_case_id} was already used")
    inst = resolve_institution(session, officer, body["institution"])
    open_key = f"{inst.id}:{officer.department_code}"
    for _attempt in range(2):
        case = session.scalars(select(Case).where(Case.open_key == open_key)).first()
        merged = case is not None
        try:
            with session.begin_nested():
                if case is None:
                    case = Case(id=new_id("case"), institution_id=inst.id, region_code=inst.region_code,
                                department_code=officer.department_code, status="registered", open_key=open_key,
                                summary=body.get("summary") or "", version=1, field_versions={},
                                created_by=officer.id, created_at=at, updated_at=at)
                    session.add(case)
                alias = CaseAlias(client_case_id=client_case_id, case_id=case.id, device_id=device_id, merged=merged)
                session.add(alias)
                session.flush()
        except IntegrityError:
            if session.get(CaseAlias, client_case_id) is not None:
                raise ContentError("duplicate_id", f"client_case_id {client_case_id} was already used") from None
            continue  # a racing push opened the case first; merge into it
        if not merged:
            feed.emit(session, "case", case)
        feed.emit(session, "case_alias", alias, region=case.region_code, officer=officer.id)
        refs: dict[str, Any] = {"case_id": case.id, "institution_id": inst.id}
        if merged:
            refs["merged"] = True
        return refs
    raise ContentError("retry_exhausted", "the case could not be opened; push again")
