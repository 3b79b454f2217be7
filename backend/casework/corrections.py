"""Repair, never orphan (docs/protocol.md, "Corrections"): setting right what a record said, after it was applied.

A slip in the field (a credit code's check character, a misspelt category, a region code the server lacks) must
not orphan a whole inspection. So the case.open still opens its case, on an unmatched institution
(`merge.unmatched_institution`), and the finding keeps its category as sent; both are flagged `needs_correction`
with the reason. They are then set right in one of two ways:

- the officer who signed the record signs a `record.correct` naming its op and the new values
  (`apply_record_correct`, the applier of that record type);
- a reviewer corrects the same fields at the desk, with a reason (`correct_at_desk`).

Either way the ledger is never edited: the record stays as signed. The rows it made change (a case's institution
through `case_history.record_case_change`, like every case fact; a finding's category or description here alone),
each correction is kept in `corrections` (the case's history of them) and bound by a `corrected` custody leaf, so
that a package proves it and its verifier holds the row against the newest correction rather than the original
record. A correction that cannot be applied is refused whole, having changed nothing: a record's `invalid` with its
code, a reviewer's 4xx.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from backend.casework.case_history import record_case_change
from backend.casework.merge import institution_ref, matching_institution, resolve_institution, unmatched_problems
from backend.core.errors import Conflict, Forbidden, Invalid, NotFound
from backend.core.jurisdiction import get_scoped
from backend.core.models import (
    Case,
    CaseAlias,
    Correction,
    Evidence,
    Finding,
    Inspection,
    LedgerRecord,
    Officer,
    ViolationCategory,
)
from backend.core.times import utc_iso
from media.custody import log as custody
from sync.applier import Applied, RecordContext
from sync.lookup import Lookup
from sync.records import CORRECTABLE, CORRECTION_FIELDS, ContentError

NEEDS_CORRECTION = "needs_correction"  # the flag of a record (and its case or finding) applied with a slip
SUBJECT_OF = {"case.open": "case", "inspection.finding": "finding"}  # what a corrected record's row is
DESK_ROLES = ("reviewer", "admin")


@dataclass(frozen=True)
class Target:
    """The record a correction names, as the ledger (or, earlier in this push, the applier) recorded it."""

    op: str
    type: str
    officer_id: str
    status: str
    code: str | None
    refs: dict[str, Any]


def remember(lookup: Lookup, op: str, rtype: str, officer_id: str, status: str, code: str | None,
             refs: dict[str, Any]) -> None:
    """What a record of this push came to: its ledger row is written only when the push's walk ends, and a
    record.correct later in the same walk may name it."""
    lookup.memo[("target", op)] = Target(op, rtype, officer_id, status, code, dict(refs))


def _target(ctx: RecordContext, op: str) -> Target:
    remembered = ctx.lookup.memo.get(("target", op))
    if remembered is not None:
        return remembered
    row = ctx.session.execute(select(LedgerRecord.type, LedgerRecord.officer_id, LedgerRecord.status,
                                     LedgerRecord.code, LedgerRecord.refs).where(LedgerRecord.op == op)).first()
    if row is None:
        raise ContentError("unknown_record", f"no record {op} in the ledger")
    return Target(op, row.type, row.officer_id, row.status, row.code, row.refs or {})


def apply_record_correct(ctx: RecordContext) -> Applied:
    """A phone's signed correction of one of its officer's applied records (a case.open, a finding)."""
    body = ctx.body
    target = _target(ctx, body["op"])
    if target.type not in CORRECTABLE:
        raise ContentError("not_correctable", f"record {target.op} is a {target.type}: nothing in it is correctable")
    if target.officer_id != ctx.officer.id:
        raise ContentError("not_signer", f"record {target.op} was signed by another officer: only they, or a "
                           "reviewer at the desk, may correct it")
    if target.status != "applied":
        raise ContentError("not_correctable", f"record {target.op} is ledgered {target.status} ({target.code}): it "
                           "made nothing to correct")
    allowed = CORRECTABLE[target.type]
    wrong = sorted(set(body["fields"]) - set(allowed))
    if wrong:
        raise ContentError("not_correctable", f"a {target.type} cannot have its {', '.join(wrong)} corrected, only "
                           f"its {', '.join(allowed)}")
    values = body["fields"]
    if target.type == "case.open":
        if target.refs.get("merged"):
            raise ContentError("not_correctable", f"case.open {target.op} was merged into a case another record "
                               "opened: correct that one")
        case = ctx.lookup.get(Case, target.refs["case_id"])
        assert case is not None  # noqa: S101 - an applied case.open made it, and cases are never deleted
        changed = correct_case(ctx.session, ctx.lookup, ctx.officer, case, values["institution"], by=ctx.officer.id,
                               op=ctx.op, at=ctx.at, override=body.get("override"))
        subject, subject_id, refs = "case", case.id, {"institution_id": case.institution_id}
    else:
        subject_id = target.refs["finding_id"]
        case, changed = correct_finding(ctx.session, ctx.lookup, subject_id, values)
        subject, refs = "finding", {"finding_id": subject_id}
    keep(ctx.session, case_id=case.id, subject=subject, subject_id=subject_id, corrects=target.op, values=values,
         changed=changed, reason=body["reason"], source="phone", op=ctx.op, device_id=ctx.device_id,
         by=ctx.officer.id, at=ctx.at, received_at=ctx.received_at)
    return Applied(refs={"case_id": case.id, "corrects": target.op, **refs, "changed": sorted(changed)})


def correct_case(session: Session, lookup: Lookup | None, actor: Officer, case: Case, ref: dict[str, Any], *,
                 by: str, op: str | None, at: datetime, override: dict[str, Any] | None = None) -> dict[str, Any]:
    """Move the case to the institution `ref` names (matched as a case.open's would be); {column: [old, new]}.

    Refused (ContentError) when the new institution cannot be matched either, when other phones' case.opens were
    merged into the case (they named its institution: correcting it would move theirs too), and when the
    institution already has an open case of the department (a correction does not merge two cases).
    """
    body = {"institution": ref, **({"override": override} if override else {})}
    ref = institution_ref(body)  # an overridden failing credit code is set aside, as in a case.open
    problems = unmatched_problems(session, lookup or Lookup(session), actor, ref)
    if problems:
        raise ContentError(problems[0][0], "; ".join(detail for _code, detail in problems))
    session.flush()  # the queries below must see this push's earlier rows
    aliases = session.scalar(select(func.count()).select_from(CaseAlias).where(CaseAlias.case_id == case.id)) or 0
    if aliases > 1:
        raise ContentError("not_correctable", f"{aliases - 1} other case.open records were merged into case "
                           f"{case.id}, naming its institution: correcting it would move theirs too")
    existing = matching_institution(session, actor, ref)
    if existing is not None and existing.id == case.institution_id:
        return {}
    if existing is not None and case.open_key is not None:
        other = session.scalars(select(Case).where(Case.open_key == f"{existing.id}:{case.department_code}")).first()
        if other is not None and other.id != case.id:
            raise ContentError("open_case_exists", f"institution {existing.id} already has an open case of the "
                               f"{case.department_code} department, {other.id}: a correction does not merge cases")
    inst = resolve_institution(session, actor, ref)
    before = {"institution_id": case.institution_id, "region_code": case.region_code}
    changes = {name: value for name, value in (("institution_id", inst.id), ("region_code", inst.region_code))
               if before[name] != value}
    if case.open_key is not None:
        case.open_key = f"{inst.id}:{case.department_code}"
    record_case_change(session, case, changes, by, op, at)
    if "region_code" in changes:
        _move_region(session, lookup, case.id, inst.region_code)
    return {name: [before[name], value] for name, value in changes.items()}


def _move_region(session: Session, lookup: Lookup | None, case_id: str, region: str) -> None:
    """A case's inspections and items are seen by its region's officers: they follow the corrected case."""
    session.flush()
    session.execute(update(Inspection).where(Inspection.case_id == case_id).values(region_code=region))
    session.execute(update(Evidence).where(Evidence.case_id == case_id).values(region_code=region))
    for row in (lookup.rows.get(Evidence, []) if lookup is not None else []):
        if row["case_id"] == case_id:  # declared in this push, written with it
            row["region_code"] = region


def correct_finding(session: Session, lookup: Lookup | None, finding_id: str, values: dict[str, Any]
                    ) -> tuple[Case, dict[str, Any]]:
    """Set a finding's category or description; (its case, {column: [old, new]}). Refused (ContentError) for a
    category the catalogue lacks, and for a finding whose inspection, hence case, is not known yet."""
    get = lookup.get if lookup is not None else session.get
    finding = get(Finding, finding_id)
    assert finding is not None  # noqa: S101 - an applied inspection.finding made it
    inspection = get(Inspection, finding.inspection_id)
    if inspection is None:
        raise ContentError("unknown_inspection", f"finding {finding_id}'s inspection {finding.inspection_id} is not "
                           "known yet, so neither is its case: correct it once the inspection has arrived")
    if "category" in values and session.get(ViolationCategory, values["category"]) is None:
        raise ContentError("unknown_category", f"no violation category {values['category']!r}")
    case = get(Case, inspection.case_id)
    assert case is not None  # noqa: S101 - an inspection's case exists
    changes = {name: value for name, value in values.items() if getattr(finding, name) != value}
    changed = {name: [getattr(finding, name), value] for name, value in changes.items()}
    if changes and (lookup is None or not lookup.update_row(Finding, finding_id, changes)):
        for name, value in changes.items():
            setattr(finding, name, value)
    return case, changed


def keep(session: Session, *, case_id: str, subject: str, subject_id: str, corrects: str | None,
         values: dict[str, Any], changed: dict[str, Any], reason: str, source: str, op: str | None,
         device_id: str | None, by: str, at: datetime, received_at: datetime) -> Correction:
    """The correction in the case's history, and bound in the custody log (`corrected`)."""
    row = Correction(case_id=case_id, subject=subject, subject_id=subject_id, corrects=corrects, fields=values,
                     changed=changed, reason=reason, source=source, op=op, device_id=device_id, by=by, at=at,
                     created_at=received_at)
    session.add(row)
    custody.corrected(session, by, case_id, subject=subject, subject_id=subject_id, corrects=corrects,
                      values=values, reason=reason, at=at, op=op)
    return row


def describe(c: Correction) -> dict[str, Any]:
    return {"id": c.id, "case_id": c.case_id, "subject": c.subject, "subject_id": c.subject_id,
            "corrects": c.corrects, "source": c.source, "op": c.op, "device_id": c.device_id, "by": c.by,
            "at": utc_iso(c.at), "fields": c.fields, "changed": c.changed, "reason": c.reason}


def _opening_record(session: Session, case_id: str) -> str | None:
    """The op of the case.open that opened the case (a merged one only named it); None for a case of the desk."""
    for op, refs in session.execute(select(LedgerRecord.op, LedgerRecord.refs).where(
            LedgerRecord.type == "case.open", LedgerRecord.status == "applied",
            LedgerRecord.refs["case_id"].as_string() == case_id)):
        if not (refs or {}).get("merged"):
            return op
    return None


def correct_at_desk(session: Session, reviewer: Officer, case_id: str, *, subject: str, subject_id: str | None,
                    fields: dict[str, Any], reason: str, now: datetime) -> dict[str, Any]:
    """A reviewer's correction of a case's institution or one of its findings, with a reason."""
    if not reviewer.has_role(*DESK_ROLES):
        raise Forbidden("only a reviewer or an admin corrects a record's content at the desk")
    case = get_scoped(session, Case, case_id, reviewer, what="case")
    allowed = CORRECTABLE["case.open" if subject == "case" else "inspection.finding"]
    errors: dict[str, Any] = {name: ["not a correctable field of a " + subject] for name in fields
                              if name not in allowed}
    for name in set(fields) & set(allowed):
        try:
            CORRECTION_FIELDS[name].deserialize(fields[name])
        except ValidationError as exc:
            errors[name] = exc.messages
    if errors or not fields:
        raise Invalid("the fields cannot be corrected so", errors={"fields": errors or ["give at least one field"]})
    if not reason.strip():
        raise Invalid("a correction needs a reason", errors={"reason": ["blank"]})
    try:
        if subject == "case":
            if subject_id not in (None, case.id):
                raise NotFound(f"no case {subject_id!r} in case {case.id}")
            subject_id, corrects = case.id, _opening_record(session, case.id)
            changed = correct_case(session, None, reviewer, case, fields["institution"], by=reviewer.id, op=None,
                                   at=now)
        else:
            finding = session.get(Finding, subject_id) if subject_id else None
            inspection = session.get(Inspection, finding.inspection_id) if finding is not None else None
            if finding is None or inspection is None or inspection.case_id != case.id:
                raise NotFound(f"no finding {subject_id!r} in case {case.id}")
            corrects = finding.op
            _case, changed = correct_finding(session, None, finding.id, fields)
    except ContentError as exc:
        if exc.code == "open_case_exists":
            raise Conflict(exc.detail) from None
        raise Invalid(f"{exc.detail} ({exc.code})", errors={"fields": {name: [exc.code] for name in fields}}) from None
    row = keep(session, case_id=case.id, subject=subject, subject_id=subject_id, corrects=corrects, values=fields,
               changed=changed, reason=reason, source="reviewer", op=None, device_id=None, by=reviewer.id, at=now,
               received_at=now)
    session.flush()
    return describe(row)
