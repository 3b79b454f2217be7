"""Resolving what a phone names (institutions, cases) and merging offline case.opens (PROTOCOL §4 Merging)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.casework.case_history import witness_opened
from backend.core.bulk import among
from backend.core.crypto import digests
from backend.core.errors import Conflict
from backend.core.jurisdiction import may_see_region
from backend.core.models import Case, CaseAlias, Institution, Officer, Region, new_id
from backend.core.names import normalise_name
from media.custody import log as custody
from sync import feed
from sync.credit_code import credit_code_problem, normalise_credit_code
from sync.lookup import Lookup
from sync.records import ContentError, overridden

_REGISTRY_ORDER = (Institution.provisional, Institution.created_at)


def _by_code(session: Session, lookup: Lookup | None, code: str) -> Institution | None:
    if lookup is not None and ("by_code", code) in lookup.memo:
        return lookup.memo[("by_code", code)]
    return session.scalars(select(Institution).where(Institution.credit_code == code)).first()


def _by_name(session: Session, lookup: Lookup | None, region: str, name_norm: str) -> list[Institution]:
    if lookup is not None and ("by_name", region, name_norm) in lookup.memo:
        return lookup.memo[("by_name", region, name_norm)]
    return list(session.scalars(select(Institution).where(
        Institution.region_code == region, Institution.name_norm == name_norm, Institution.unmatched.is_(False))
        .order_by(*_REGISTRY_ORDER)))


def _prefetch_registry(session: Session, lookup: Lookup, refs: list[dict[str, Any]]) -> None:
    """One query for every credit code and name the refs give, answered through `_by_code`/`_by_name`."""
    lookup.prefetch(Region, {ref["region"] for ref in refs})
    codes, names = set(), set()
    for ref in refs:
        if ref.get("credit_code"):
            codes.add(normalise_credit_code(ref["credit_code"]))
        names.add((ref["region"], normalise_name(ref["name"])))
    wanted = among(session, Institution.name_norm, sorted({n for _r, n in names}))
    if codes:
        wanted = wanted | among(session, Institution.credit_code, sorted(codes))
    rows = list(session.scalars(select(Institution).where(wanted, Institution.unmatched.is_(False))
                                .order_by(*_REGISTRY_ORDER)))
    for code in codes:
        lookup.memo[("by_code", code)] = next((i for i in rows if i.credit_code == code), None)
    for region, name_norm in names:
        lookup.memo[("by_name", region, name_norm)] = [
            i for i in rows if i.region_code == region and i.name_norm == name_norm]


def _match(session: Session, ref: dict[str, Any], lookup: Lookup | None = None
           ) -> tuple[Institution | None, str | None, str]:
    """What a phone's institution (given by name, region, maybe credit code) matches, without writing.

    Returns (match, normalised credit code, normalised name). A match whose
    credit code is empty while the phone gave one is completed by the caller.
    """
    region = lookup.get(Region, ref["region"]) if lookup is not None else session.get(Region, ref["region"])
    if region is None:
        raise ContentError("unknown_region", f"no region {ref['region']!r}")
    code = normalise_credit_code(ref["credit_code"]) if ref.get("credit_code") else None
    if code:
        problem = credit_code_problem(code)
        if problem:
            raise ContentError("bad_credit_code", f"credit code {code}: {problem}")
        found = _by_code(session, lookup, code)
        if found:
            return found, code, ""
    name_norm = normalise_name(ref["name"])
    if not name_norm:
        raise ContentError("bad_body", "institution name is empty once normalised")
    if len(name_norm) > 200:  # NFKC can lengthen a name ("﷽" is 18 characters): the column holds 200
        raise ContentError("bad_body", "institution name is longer than 200 characters once normalised")
    candidates = _by_name(session, lookup, ref["region"], name_norm)
    if not code and candidates:
        return candidates[0], None, name_norm
    uncoded = [c for c in candidates if c.credit_code is None]
    return (uncoded[0] if uncoded else None), code, name_norm


def find_institution(session: Session, officer: Officer, ref: dict[str, Any], lookup: Lookup | None = None
                     ) -> tuple[Institution, bool]:
    """A registry id, else a match by credit code, else by name and region, else a new provisional one.

    Returns (institution, is_new); a new one is not yet added to the session.
    """
    if "id" in ref:
        inst = session.get(Institution, ref["id"])
        if inst is None or not may_see_region(officer, inst.region_code):
            raise ContentError("unknown_institution", f"no institution {ref['id']!r}")
        return inst, False
    found, code, name_norm = _match(session, ref, lookup)
    if found is not None and code and found.credit_code is None:
        # Same name, and the phone knows the code the registry lacked: complete the registry entry.
        found.credit_code, found.provisional_key = code, None
        feed.emit(session, "institution", found)
    if found is not None:
        return found, False
    return Institution(
        id=new_id("ins"), credit_code=code, name=ref["name"].strip(), name_norm=name_norm,
        address=(ref.get("address") or "").strip(), region_code=ref["region"], licence_status="unknown",
        category="other", risk_level="medium", provisional=True, complaint_count=0, violation_count=0,
        provisional_key=None if code else f"{ref['region']}:{name_norm}",
    ), True


def matching_institution(session: Session, officer: Officer, ref: dict[str, Any]) -> Institution | None:
    """The registered or provisional institution `ref` names, without writing anything; None when naming it would
    create a new provisional one. Raises ContentError as `find_institution` does."""
    if "id" in ref:
        return find_institution(session, officer, ref)[0]
    return _match(session, ref)[0]


def creation_keys(session: Session, lookup: Lookup, officer: Officer, refs: list[dict[str, Any]]) -> set[str]:
    """What applying these institution references may create: new institutions, first open cases.

    Read-only. A push locks these keys (`lock_keys`) before it writes
    anything, so two pushes naming the same new centres wait for one another
    in one order instead of deadlocking on the unique indexes. What is found
    is remembered in `lookup` for the records that name it; what may be
    created is looked up again once its key is locked.
    """
    named = list({_institution_key(ref): ref for ref in refs
                  if "id" not in ref and _institution_key(ref) not in lookup.memo}.values())
    if not named:
        return set()
    _prefetch_registry(session, lookup, named)
    keys: set[str] = set()
    found_for: dict[str, Institution] = {}
    for ref in named:
        try:
            found, code, name_norm = _match(session, ref, lookup)
        except ContentError:
            continue
        if found is None or (code and found.credit_code is None):
            keys.add(f"institution:{code or ref['region'] + ':' + name_norm}")
        else:
            lookup.memo[_institution_key(ref)] = found
            found_for[f"{found.id}:{officer.department_code}"] = found
    for name in [k for k in lookup.memo if k[0] in ("by_code", "by_name")]:
        del lookup.memo[name]  # what was missing is looked up again under its lock
    if found_for:
        for case in session.scalars(select(Case).where(among(session, Case.open_key, sorted(found_for)))):
            lookup.memo[("open", case.open_key)] = case
        keys.update(f"case:{k}" for k in found_for if ("open", k) not in lookup.memo)
    return keys


CREATION_LOCK_NAMESPACE = 0x6663_6E77  # "fcnw"


def lock_keys(session: Session, keys: set[str]) -> None:
    """Transaction-level locks on PostgreSQL, always taken in one order (SQLite has one writer)."""
    if not keys or session.get_bind().dialect.name != "postgresql":
        return
    for objid in sorted({int.from_bytes(digests.sha256(k.encode())[:4], "big", signed=True) for k in keys}):
        session.execute(text("SELECT pg_advisory_xact_lock(:ns, :key)"),
                        {"ns": CREATION_LOCK_NAMESPACE, "key": objid})


def _existing_twin(session: Session, inst: Institution) -> Institution | None:
    """The row a racing push inserted for the same credit code or provisional key."""
    stmt = (select(Institution).where(Institution.credit_code == inst.credit_code) if inst.credit_code else
            select(Institution).where(Institution.provisional_key == inst.provisional_key))
    return session.scalars(stmt).first()


def resolve_institution(session: Session, officer: Officer, ref: dict[str, Any]) -> Institution:
    inst, new = find_institution(session, officer, ref)
    if not new:
        return inst
    try:
        with session.begin_nested():
            session.add(inst)
            session.flush()
    except IntegrityError:
        twin = _existing_twin(session, inst)
        if twin is None:
            raise
        return twin
    feed.emit(session, "institution", inst)
    return inst


def institution_ref(body: dict[str, Any]) -> dict[str, Any]:
    """The institution a case.open or clue.report names, as the registry is asked for it.

    A credit code failing GB 32100-2015 makes the record `invalid` (`bad_credit_code`), unless its signer saw the
    phone's check fail and signed over it (override code `bad_credit_code`: a misprinted licence, a forged one):
    then the code is set aside and the institution is matched by name within its region, as if none was given.
    No registry entry ever holds a code that fails the check; the code stays in the signed record.
    """
    ref = body["institution"]
    code = ref.get("credit_code")
    if code and overridden(body, "bad_credit_code") and credit_code_problem(normalise_credit_code(code)):
        return {k: v for k, v in ref.items() if k != "credit_code"}
    return ref


def unmatched_problems(session: Session, lookup: Lookup, officer: Officer, ref: dict[str, Any]
                       ) -> list[tuple[str, str]]:
    """Why the institution a case.open names cannot be matched, as (code, message): an id the officer cannot see,
    a region the reference data lacks, a credit code failing its check (not overridden: `institution_ref`). None of
    these refuses the case.open any more: its case opens on an unmatched institution and needs correction."""
    if "id" in ref:
        inst = lookup.memo.get(_institution_key(ref)) or session.get(Institution, ref["id"])
        if inst is None or not may_see_region(officer, inst.region_code):
            return [("unknown_institution", f"no institution {ref['id']!r}")]
        return []
    problems = []
    if lookup.get(Region, ref["region"]) is None:
        problems.append(("unknown_region", f"no region {ref['region']!r}"))
    code = normalise_credit_code(ref["credit_code"]) if ref.get("credit_code") else None
    if code and (problem := credit_code_problem(code)):
        problems.append(("bad_credit_code", f"credit code {code}: {problem}"))
    return problems


def unmatched_institution(officer: Officer, ref: dict[str, Any], codes: list[str]) -> Institution:
    """What a phone said of an institution the server could not match, held for its one case until corrected.

    Provisional (so never drawn for inspection) and `unmatched` (so no later case.open is matched to it by name):
    two slips naming the same centre must not merge, nor a slip with a good record. It holds no credit code (no
    registry entry ever holds a failing one: the code stays in the signed record) and lies in the named region when
    the server knows it, else in the opening officer's, so that the officer's jurisdiction sees the case.
    """
    name = (ref.get("name") or "").strip() or f"未识别的机构 {ref['id']}"
    region = ref["region"] if "region" in ref and "unknown_region" not in codes else officer.region_code
    return Institution(
        id=new_id("ins"), credit_code=None, name=name[:200], name_norm=normalise_name(name)[:200],
        address=(ref.get("address") or "").strip(), region_code=region, licence_status="unknown", category="other",
        risk_level="medium", provisional=True, unmatched=True, provisional_key=None, complaint_count=0,
        violation_count=0)


def _institution_key(ref: dict[str, Any]) -> tuple:
    if "id" in ref:
        return ("institution", ref["id"])
    return ("institution", ref["region"], normalise_name(ref["name"]), ref.get("credit_code"))


def _institution(session: Session, lookup: Lookup, officer: Officer, ref: dict[str, Any]) -> tuple[Institution, bool]:
    """find_institution, remembered for the rest of the push (a batch names the same centre many times)."""
    key = _institution_key(ref)
    if key in lookup.memo:
        inst = lookup.memo[key]
        if "id" in ref and not may_see_region(officer, inst.region_code):
            raise ContentError("unknown_institution", f"no institution {ref['id']!r}")
        return inst, False
    inst, new = find_institution(session, officer, ref, lookup)
    if not new:
        lookup.memo[key] = inst
    return inst, new


def _open_case(session: Session, lookup: Lookup, open_key: str) -> Case | None:
    case = lookup.memo.get(("open", open_key))
    if case is None or case.open_key != open_key:
        session.flush()  # an earlier record of this push may have closed the case: the query must see it
        case = session.scalars(select(Case).where(Case.open_key == open_key)).first()
        if case is not None:
            lookup.memo[("open", open_key)] = case
    return case


def resolve_case(lookup: Lookup, officer: Officer, ref: dict[str, Any]) -> Case:
    if "id" in ref:
        case = lookup.get(Case, ref["id"])
    else:
        alias = lookup.get(CaseAlias, ref["client_case_id"])
        case = lookup.get(Case, alias.case_id) if alias else None
    if case is None or not (may_see_region(officer, case.region_code) or case.created_by == officer.id):
        raise ContentError("unknown_case", f"no case {ref.get('id') or ref.get('client_case_id')!r}")
    return case


def open_case(session: Session, lookup: Lookup, officer: Officer, device_id: str, body: dict[str, Any],
              at, op: str | None = None) -> dict[str, Any]:
    """Open a case, or attach the phone's id to the open case of this institution and department.

    Institution, case and alias are written in one savepoint; a unique
    violation means a racing push won, and the look-up is simply redone.
    An institution that cannot be matched (`unmatched_problems`) still opens a case, on an unmatched institution,
    so that the records chained after this one land in it: the refs then say what `needs_correction`, and a custody
    leaf binds it (a package's verifier then knows why the institution differs from what was signed).
    """
    client_case_id, ref = body["client_case_id"], institution_ref(body)
    if lookup.get(CaseAlias, client_case_id) is not None:
        raise ContentError("duplicate_id", f"client_case_id {client_case_id} was already used")
    problems = unmatched_problems(session, lookup, officer, ref)
    codes = [code for code, _detail in problems]
    for _attempt in range(3):
        if problems:
            inst, new_inst = unmatched_institution(officer, ref, codes), True
        else:
            inst, new_inst = _institution(session, lookup, officer, ref)
        open_key = f"{inst.id}:{officer.department_code}"
        case = None if new_inst else _open_case(session, lookup, open_key)
        merged = case is not None
        if merged:
            # Only an alias is written, and its id was checked above: nothing can race here.
            alias = CaseAlias(client_case_id=client_case_id, case_id=case.id, device_id=device_id, merged=True)
            lookup.add(alias)
        else:
            try:
                with session.begin_nested():
                    if new_inst:
                        session.add(inst)
                        session.flush()  # no ORM relationships: the unit of work would not order the inserts
                    case = Case(id=new_id("case"), institution_id=inst.id, region_code=inst.region_code,
                                department_code=officer.department_code, status="registered", open_key=open_key,
                                summary=body.get("summary") or "", version=1, field_versions={},
                                created_by=officer.id, created_at=at, updated_at=at)
                    session.add(case)
                    session.flush()
                    alias = CaseAlias(client_case_id=client_case_id, case_id=case.id, device_id=device_id,
                                      merged=False)
                    session.add(alias)
                    session.flush()
            except IntegrityError:
                lookup.memo.clear()
                if session.get(CaseAlias, client_case_id) is not None:
                    raise ContentError("duplicate_id", f"client_case_id {client_case_id} was already used") from None
                continue  # a racing push created the institution or opened the case first
            witness_opened(session, case, officer.id, at)
            lookup.add(case, persist=False)
            lookup.add(alias, persist=False)
            lookup.memo[("open", open_key)] = case
            if new_inst and not problems:
                lookup.memo[_institution_key(ref)] = inst
            if new_inst:
                feed.emit(session, "institution", inst)
            feed.emit(session, "case", case)
        feed.emit(session, "case_alias", alias, region=case.region_code, officer=officer.id)
        refs: dict[str, Any] = {"case_id": case.id, "institution_id": inst.id}
        if merged:
            refs["merged"] = True
        if problems:
            refs["needs_correction"] = [{"code": code, "detail": detail, "field": "institution"}
                                        for code, detail in problems]
            custody.needs_correction(session, officer.id, case.id, subject="case", subject_id=case.id,
                                     corrects=op or "", fields=["institution"], codes=codes, at=at)
        return refs
    raise ContentError("retry_exhausted", "the case could not be opened; push again")


def desk_case(session: Session, institution: Institution, department_code: str, actor_id: str, summary: str,
              at: datetime) -> tuple[Case, bool]:
    """The phones' merge rule for a case opened at the desk (a clue converted, a transfer answered).

    The institution's open case of the department if there is one, else a new
    one; the same unique open key decides, so a racing phone and desk still
    give one case. Returns (case, it_existed). There is no alias: no phone id
    names this case.
    """
    open_key = f"{institution.id}:{department_code}"
    for _attempt in range(3):
        session.flush()  # a case closed earlier in this transaction must not be found open
        case = session.scalars(select(Case).where(Case.open_key == open_key)).first()
        if case is not None:
            return case, True
        case = Case(id=new_id("case"), institution_id=institution.id, region_code=institution.region_code,
                    department_code=department_code, status="registered", open_key=open_key, summary=summary,
                    version=1, field_versions={}, created_by=actor_id, created_at=at, updated_at=at)
        try:
            with session.begin_nested():
                session.add(case)
                session.flush()
        except IntegrityError:
            continue  # a phone opened it a moment ago: take that one
        witness_opened(session, case, actor_id, at)
        feed.emit(session, "case", case)
        return case, False
    raise Conflict("the case could not be opened under contention; try again")
