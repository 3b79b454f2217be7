"""Applying an authentic, chained record to the projections: cases, inspections, findings, evidence, clues.

Each function returns (status, refs, flags) or raises ContentError, having
changed nothing, when the record cannot be applied (it is then ledgered as
`invalid`). Procedure problems are flags, never rejections.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from backend.casework.case_history import record_case_change, value_at
from backend.casework.clues import file_clue
from backend.casework.corrections import NEEDS_CORRECTION, apply_record_correct, remember
from backend.casework.draws import link_inspection
from backend.casework.merge import (
    creation_keys,
    institution_ref,
    lock_keys,
    open_case,
    resolve_case,
    resolve_institution,
)
from backend.core.errors import DomainError
from backend.core.models import (
    Case,
    CaseAlias,
    CaseConflict,
    Clue,
    Evidence,
    Finding,
    Inspection,
    Officer,
    RecordingInterruption,
    ViolationCategory,
)
from backend.core.times import LOCAL_TZ, utc_millis
from media.custody import log as custody
from sync import feed
from sync.applier import Applied, Content, RecordContext
from sync.certificate_history import CertificateBook
from sync.certificates import certified_on
from sync.lookup import Lookup
from sync.records import EVIDENCE_DIGESTS, ContentError

CLOCK_AHEAD_LIMIT = timedelta(minutes=10)
LONG_INSPECTION = timedelta(hours=12)


# What each record says its row is: the columns a record alone decides. Applying writes them, and the whole-system
# audit (backend.casework.system_audit) re-derives them from the signed records to hold the tables against them.


def inspection_facts(body: dict[str, Any], device_id: str, officer_id: str, at: datetime) -> dict[str, Any]:
    return {"id": body["inspection_id"], "device_id": device_id, "started_by": officer_id, "started_at": at,
            "officers": list(dict.fromkeys(body["officers"])), "location": body.get("location"),
            "task_id": body.get("task_id")}


def ending_facts(body: dict[str, Any], at: datetime) -> dict[str, Any]:
    return {"ended_at": at, "outcome": body["outcome"], "notes": body.get("notes")}


def finding_facts(body: dict[str, Any], officer_id: str, at: datetime, op: str) -> dict[str, Any]:
    return {"id": body["finding_id"], "inspection_id": body["inspection_id"], "category": body["category"],
            "description": body["description"], "evidence": list(body["evidence"]), "recorded_by": officer_id,
            "recorded_at": at, "op": op}


def evidence_facts(body: dict[str, Any], device_id: str, officer_id: str, op: str) -> dict[str, Any]:
    clip = body.get("clip")
    return {"id": body["evidence_id"], "inspection_id": body.get("inspection_id"), "device_id": device_id,
            "officer_id": officer_id, "kind": body["kind"], "media_type": body["media_type"],
            # Only the digests declared: the server adds the other when it verifies the bytes.
            **{name: body[name] for name in EVIDENCE_DIGESTS if name in body},
            "size": body["size"], "captured_at": body["captured_at"],
            "location": body.get("location"), "clip": _jsonable(clip),
            "camera_serial": clip["camera_serial"] if clip else None,
            "clip_index": clip["clip_index"] if clip else None, "op": op}


def clue_facts(body: dict[str, Any], officer_id: str, at: datetime, op: str) -> dict[str, Any]:
    return {"id": body["clue_id"], "source": body["source"], "description": body["description"],
            "reported_by": officer_id, "reported_at": at, "op": op}


def interruption_facts(body: dict[str, Any], op: str) -> dict[str, Any]:
    return {"inspection_id": body["inspection_id"], "camera_serial": body["camera_serial"],
            "started_at": body["started_at"], "ended_at": body["ended_at"], "reason": body["reason"], "op": op}


def _add_flag(inspection: Inspection, flag: str) -> None:
    if flag not in (inspection.flags or []):
        inspection.flags = [*(inspection.flags or []), flag]


def _clock_flags(ctx: RecordContext, inspection: Inspection | None, out: Applied) -> None:
    if ctx.at - ctx.received_at > CLOCK_AHEAD_LIMIT:
        out.flags.append("clock_ahead")
        if inspection is not None:
            _add_flag(inspection, "clock_ahead")


def certified_officer_flags(lookup: Lookup, officer_ids: list[str], at: datetime) -> list[str]:
    """The two-certified-officers rule, judged on the local date of the inspection."""
    day = at.astimezone(LOCAL_TZ).date()
    lookup.prefetch(Officer, officer_ids)
    found = {oid: o for oid in officer_ids if (o := lookup.get(Officer, oid)) is not None}
    flags = []
    if any(oid not in found for oid in officer_ids):
        flags.append("unknown_officer")
    active = [o for o in found.values() if o.active]
    certified = sum(1 for o in active if certified_on(o, day))
    if certified < 2:  # today's certificate may be a renewal: the one held on the day decides (a record pushed late)
        others = [o for o in active if not certified_on(o, day)]
        book = CertificateBook.load(lookup.session, others)
        certified += sum(1 for o in others if certified_on(book.held_on(o, day), day))
    if certified < 2:
        flags.append("fewer_than_two_certified")
    return flags


def _override_flags(ctx: RecordContext, out: Applied) -> None:
    """A record signed over the phone's own checks is flagged `override`, and so is the inspection it belongs to
    (when known), as `clock_ahead` is: which checks and why stay in the signed record (`backend.casework.overrides`).
    """
    out.flags.append("override")
    inspection_id = out.refs.get("inspection_id") or ctx.body.get("inspection_id")
    if inspection_id and "unknown_inspection" not in out.flags:
        inspection = ctx.lookup.get(Inspection, inspection_id)
        if inspection is not None:
            _add_flag(inspection, "override")


def _case_open(ctx: RecordContext) -> Applied:
    refs = open_case(ctx.session, ctx.lookup, ctx.officer, ctx.device_id, ctx.body, ctx.at, ctx.op)
    out = Applied(refs=refs)
    if refs.get(NEEDS_CORRECTION):  # opened on an unmatched institution: what and why is in the refs
        out.flags.append(NEEDS_CORRECTION)
    _clock_flags(ctx, None, out)
    return out


def _inspection_start(ctx: RecordContext) -> Applied:
    body = ctx.body
    if ctx.lookup.get(Inspection, body["inspection_id"]) is not None:
        raise ContentError("duplicate_id", f"inspection {body['inspection_id']} was already started")
    case = resolve_case(ctx.lookup, ctx.officer, body["case"])
    facts = inspection_facts(body, ctx.device_id, ctx.officer.id, ctx.at)
    officers = facts["officers"]
    inspection = Inspection(**facts, case_id=case.id, region_code=case.region_code,
                            flags=certified_officer_flags(ctx.lookup, officers, ctx.at))
    if ctx.officer.id not in officers:
        inspection.flags.append("owner_not_present")
    linked = link_inspection(ctx.session, inspection.task_id, inspection.id, case.institution_id, ctx.at) \
        if inspection.task_id else None
    if linked is False:
        inspection.flags.append("task_mismatch")
    ctx.lookup.add(inspection)
    out = Applied(refs={"case_id": case.id, "inspection_id": inspection.id})
    _clock_flags(ctx, inspection, out)
    out.flags.extend(f for f in inspection.flags if f not in out.flags)
    return out


def _known_inspection(ctx: RecordContext, inspection_id: str | None, out: Applied) -> Inspection | None:
    if inspection_id is None:
        return None
    inspection = ctx.lookup.get(Inspection, inspection_id)
    if inspection is None:
        out.flags.append("unknown_inspection")
    return inspection


def _finding(ctx: RecordContext) -> Applied:
    body = ctx.body
    if ctx.lookup.exists(Finding, body["finding_id"]):
        raise ContentError("duplicate_id", f"finding {body['finding_id']} already recorded")
    out = Applied(refs={"finding_id": body["finding_id"]})
    if not ctx.lookup.exists(ViolationCategory, body["category"]):
        # Kept with the category as sent, not dropped: a misspelt code is corrected later (backend.casework.corrections)
        out.refs[NEEDS_CORRECTION] = [{"code": "unknown_category", "field": "category",
                                       "detail": f"no violation category {body['category']!r}"}]
        out.flags.append(NEEDS_CORRECTION)
    inspection = _known_inspection(ctx, body["inspection_id"], out)
    _undeclared_evidence(ctx, body["evidence"], out)
    ctx.lookup.add_row(Finding, finding_facts(body, ctx.officer.id, ctx.at, ctx.op))
    _clock_flags(ctx, inspection, out)
    return out


def _undeclared_evidence(ctx: RecordContext, evidence_ids: list[str], out: Applied) -> None:
    """A finding citing evidence the server has no `evidence.capture` for is kept as signed, and says so.

    Not a refusal: the capture may still come (from another phone, or later in this one's chain). But without a
    word the phone would never learn that what it cites is missing, so the result and the ledger row carry the flag
    `unknown_evidence` and `refs.unknown_evidence` names the ids, as the server saw them when it applied the finding.
    """
    unknown = [eid for eid in dict.fromkeys(evidence_ids) if not ctx.lookup.exists(Evidence, eid)]
    if unknown:
        out.flags.append("unknown_evidence")
        out.refs["unknown_evidence"] = unknown


def _inspection_end(ctx: RecordContext) -> Applied:
    body = ctx.body
    inspection = ctx.lookup.get(Inspection, body["inspection_id"])
    if inspection is None:
        raise ContentError("unknown_inspection", f"no inspection {body['inspection_id']}")
    if inspection.ended_at is not None:
        raise ContentError("already_ended", f"inspection {inspection.id} already ended")
    for name, value in ending_facts(body, ctx.at).items():
        setattr(inspection, name, value)
    if ctx.at < inspection.started_at:
        _add_flag(inspection, "ends_before_start")
    elif ctx.at - inspection.started_at > LONG_INSPECTION:
        _add_flag(inspection, "longer_than_12h")
    out = Applied(refs={"inspection_id": inspection.id, "case_id": inspection.case_id})
    _clock_flags(ctx, inspection, out)
    return out


def _evidence(ctx: RecordContext) -> Applied:
    s, body = ctx.session, ctx.body
    if ctx.lookup.exists(Evidence, body["evidence_id"]):
        raise ContentError("duplicate_id", f"evidence {body['evidence_id']} already declared")
    out = Applied(refs={"evidence_id": body["evidence_id"]})
    case = resolve_case(ctx.lookup, ctx.officer, body["case"]) if body.get("case") else None
    inspection = _known_inspection(ctx, body.get("inspection_id"), out)
    if case is None and inspection is not None:
        case = ctx.lookup.get(Case, inspection.case_id)
    evidence = ctx.lookup.add_row(Evidence, {
        **dict.fromkeys(EVIDENCE_DIGESTS),  # a digest not declared stays NULL until the bytes are verified
        **evidence_facts(body, ctx.device_id, ctx.officer.id, ctx.op), "case_id": case.id if case else None,
        "region_code": case.region_code if case else ctx.officer.region_code, "status": "declared",
        "declared_at": ctx.received_at})
    feed.emit(s, "evidence", evidence)
    custody.record(s, "declared", evidence.id, ctx.officer.id, at=ctx.received_at, op=ctx.op,
                   record_hash=ctx.record_hash, device=ctx.device_id, sha256=evidence.sha256, sm3=evidence.sm3,
                   size=evidence.size,
                   kind=evidence.kind, captured_at=utc_millis(evidence.captured_at))
    if case is not None:
        out.refs["case_id"] = case.id
    _clock_flags(ctx, inspection, out)
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _case_update(ctx: RecordContext) -> Applied:
    s, body = ctx.session, ctx.body
    s.flush()  # the history queries below must see this push's earlier changes
    case = resolve_case(ctx.lookup, ctx.officer, body["case"])
    base = body["base_version"]
    if base > case.version:
        raise ContentError("bad_version", f"base_version {base} is ahead of the case's version {case.version}")
    changed, conflicts = {}, []
    for name, value in body["fields"].items():
        if (case.field_versions or {}).get(name, 0) > base:
            if getattr(case, name) != value:
                conflicts.append((name, value))
        else:
            changed[name] = value
    for name, value in conflicts:
        conflict = CaseConflict(case_id=case.id, field=name, base_version=base,
                                base_value=value_at(s, case, name, base), server_value=getattr(case, name),
                                phone_value=value, op=ctx.op, officer_id=ctx.officer.id, status="open")
        s.add(conflict)
        s.flush()
        feed.emit(s, "conflict", conflict, region=case.region_code)
    to = changed.pop("status", case.status)
    if to != case.status:
        _phone_transition(ctx, case, to)
    record_case_change(s, case, {k: v for k, v in changed.items() if getattr(case, k) != v},
                       ctx.officer.id, ctx.op, ctx.at)
    out = Applied(status="conflict" if conflicts else "applied",
                  refs={"case_id": case.id, "version": case.version})
    if conflicts:
        out.refs["conflicts"] = [name for name, _ in conflicts]
    _clock_flags(ctx, None, out)
    return out


def _phone_transition(ctx: RecordContext, case: Case, to: str) -> None:
    """A status a phone sets passes the same lifecycle gates as one set at the desk, or the record is invalid."""
    from backend.casework.lifecycle import move

    try:
        move(ctx.session, ctx.officer, case, to=to, op=ctx.op, at=ctx.at,
             reason=f"case.update {ctx.op} from device {ctx.device_id}")
    except DomainError as exc:
        raise ContentError("transition_refused", f"status {case.status} -> {to}: {exc}") from None


def _clue(ctx: RecordContext) -> Applied:
    s, body = ctx.session, ctx.body
    if ctx.lookup.exists(Clue, body["clue_id"]):
        raise ContentError("duplicate_id", f"clue {body['clue_id']} already reported")
    inst = resolve_institution(s, ctx.officer, institution_ref(body))
    clue = Clue(**clue_facts(body, ctx.officer.id, ctx.at, ctx.op), institution_id=inst.id,
                region_code=inst.region_code, status="new", attachments=[])
    # routed, linked to a clue it duplicates, given the code the officer hands over
    file_clue(s, clue, now=ctx.received_at)
    ctx.lookup.add(clue)
    out = Applied(refs={"clue_id": clue.id, "institution_id": inst.id, "tracking_code": clue.tracking_code})
    if clue.duplicate_of:
        out.refs["duplicate_of"] = clue.duplicate_of
    _clock_flags(ctx, None, out)
    return out


def _interruption(ctx: RecordContext) -> Applied:
    body = ctx.body
    out = Applied(refs={"inspection_id": body["inspection_id"]})
    inspection = _known_inspection(ctx, body["inspection_id"], out)
    ctx.session.add(RecordingInterruption(**interruption_facts(body, ctx.op)))
    _clock_flags(ctx, inspection, out)
    return out


APPLIERS: dict[str, Callable[[RecordContext], Applied]] = {
    "case.open": _case_open,
    "inspection.start": _inspection_start,
    "inspection.finding": _finding,
    "inspection.end": _inspection_end,
    "evidence.capture": _evidence,
    "case.update": _case_update,
    "clue.report": _clue,
    "recording.interruption": _interruption,
    "record.correct": apply_record_correct,
}


class RecordApplier:
    """The casework's side of `sync.applier.Applier`: what each record type means for cases and evidence."""

    savepoint_types = frozenset({"clue.report"})  # case.open keeps its own single savepoint (casework.merge)

    def lock_creations(self, session: Session, lookup: Lookup, officer: Officer, contents: list[Content]) -> None:
        refs = [institution_ref(body) for _at, _by, rtype, body in contents if rtype in ("case.open", "clue.report")]
        lock_keys(session, creation_keys(session, lookup, officer, refs))

    def prefetch(self, lookup: Lookup, officer: Officer, contents: list[Content]) -> None:
        wanted: dict[type, set[str]] = defaultdict(set)
        case_refs: list[dict[str, Any]] = []
        for _at, _by, rtype, body in contents:
            if "inspection_id" in body:
                wanted[Inspection].add(body["inspection_id"])
            for key, model in (("finding_id", Finding), ("evidence_id", Evidence), ("clue_id", Clue),
                               ("client_case_id", CaseAlias)):
                if key in body:
                    wanted[model].add(body[key])
            if isinstance(body.get("case"), dict):
                case_refs.append(body["case"])
            if rtype == "inspection.start":
                wanted[Officer].update(body["officers"])
            elif rtype == "inspection.finding":
                wanted[ViolationCategory].add(body["category"])
                wanted[Evidence].update(body["evidence"])
        for ref in case_refs:
            if "client_case_id" in ref:
                wanted[CaseAlias].add(ref["client_case_id"])
            else:
                wanted[Case].add(ref["id"])
        lookup.known[Officer].setdefault(officer.id, officer)
        lookup.prefetch_ids({model: wanted[model] for model in (Finding, Evidence, Clue, ViolationCategory)})
        for model in (Inspection, CaseAlias, Officer):
            lookup.prefetch(model, wanted[model])
        wanted[Case].update(a.case_id for a in lookup.known[CaseAlias].values())
        wanted[Case].update(i.case_id for i in lookup.known[Inspection].values())
        lookup.prefetch(Case, wanted[Case])

    def apply(self, ctx: RecordContext, rtype: str) -> Applied:
        try:
            out = APPLIERS[rtype](ctx)
        except ContentError as exc:
            remember(ctx.lookup, ctx.op, rtype, ctx.officer.id, "invalid", exc.code, {})
            raise
        if ctx.body.get("override"):
            _override_flags(ctx, out)
        remember(ctx.lookup, ctx.op, rtype, ctx.officer.id, out.status, None, out.refs)
        return out

    def device_advanced(self, session: Session, actor: Officer, device_id: str, seq: int, record_hash: str,
                        at: datetime) -> None:
        custody.device_head(session, actor.id, device_id, seq, record_hash, at=at)
