"""The derived tables from their side, once every record was seen: no row that no record made, and what only all
of an inspection's or a case's records together decide.

- Findings, evidence items, clues and recording interruptions each name the record that made them (`op`): a row
  whose record is not an applied one of its type was made by no phone.
- An inspection must have been started by an applied `inspection.start`, and ended only by an applied
  `inspection.end`; its procedure flags are those its records give it (`derived.Started`): the certificate and
  task flags its start's ledger row recorded, `owner_not_present` from the signed crew, `clock_ahead` from the
  signed times of its records against their receipt, `override` from their signed bodies, `ends_before_start` and
  `longer_than_12h` from its signed start and end.
- A case alias must come from an applied `case.open`. A case's status and summary must be the newest values its
  history recorded (every change, from a phone or the desk, is written there with its version), or, before any
  change, what the case was opened with; and each fact the custody log binds (`case_opened` / `case_changed`
  leaves: a digest of each value, `media.custody.log.case_facts`) must be the value its newest such leaf bound.

Each table is streamed by its key a page at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from backend.casework.apply import LONG_INSPECTION
from backend.casework.system_audit.derived import Derivation
from backend.casework.system_audit.report import Problem
from backend.core.bulk import among
from backend.core.models import (
    Case,
    CaseAlias,
    CaseHistory,
    Clue,
    CustodyEvent,
    Evidence,
    Finding,
    Inspection,
    LedgerRecord,
    RecordingInterruption,
)
from media.custody.encoding import fact_digest
from media.custody.log import CASE_ACTIONS

PAGE = 1000
CASE_FIELDS = ("status", "summary")
# A table whose rows name the record that made them, the record's type, and what a problem calls the row.
MADE_BY = ((Finding, "inspection.finding", "finding", "derived", "findings"),
           (Evidence, "evidence.capture", "evidence", "evidence", None),  # counted with its custody and file
           (Clue, "clue.report", "clue", "derived", "clues"),
           (RecordingInterruption, "recording.interruption", "recording_interruption", "derived", "interruptions"))


def _pages(session: Session, columns: tuple[Any, ...], key: Any, where: Any = None) -> Iterator[list[Any]]:
    last = None
    while True:
        stmt = select(*columns)
        if where is not None:
            stmt = stmt.where(where)
        if last is not None:
            stmt = stmt.where(key > last)
        rows = list(session.execute(stmt.order_by(key).limit(PAGE)))
        if not rows:
            return
        yield rows
        last = getattr(rows[-1], key.key)


def check_unmade(session: Session, counts) -> Iterator[Problem]:
    """Each page of rows against the ledger rows of its ops (the unique index on `op`): a plan that stays linear
    whatever the planner's statistics say, where an anti-join may not."""
    for model, rtype, kind, check, counted in MADE_BY:
        if counted:
            counts[counted] += session.scalar(select(func.count()).select_from(model)) or 0
        ident = model.id if model is not RecordingInterruption else model.op
        by_desk = model.op.is_not(None) if model is Clue else None  # a clue taken at the desk has no record
        for page in _pages(session, (ident, model.op), ident, by_desk):
            made = set(session.scalars(select(LedgerRecord.op).where(
                among(session, LedgerRecord.op, [row.op for row in page]), LedgerRecord.type == rtype,
                LedgerRecord.status == "applied")))
            for value, op in page:
                if op not in made:
                    yield Problem(check, kind, str(value), f"no applied {rtype} record made it: it was put in the "
                                  "table by other means")


def check_inspections(session: Session, derivation: Derivation, counts) -> Iterator[Problem]:
    columns = (Inspection.id, Inspection.ended_at, Inspection.flags)
    for page in _pages(session, columns, Inspection.id):
        for iid, ended_at, flags in page:
            counts["inspections"] += 1
            started = derivation.started.get(iid)
            if started is None:
                yield Problem("derived", "inspection", iid, "no applied inspection.start record made it: it was put "
                              "in the table by other means")
                continue
            if ended_at is not None and iid not in derivation.ended:
                yield Problem("derived", "inspection", iid, "it is ended, but no applied inspection.end record ended "
                              "it")
            expected = set(started.start_flags)
            if started.owner_absent:
                expected.add("owner_not_present")
            if iid in derivation.ahead:
                expected.add("clock_ahead")
            if iid in derivation.overridden:
                expected.add("override")
            if started.ended_at is not None:
                if started.ended_at < started.started_at:
                    expected.add("ends_before_start")
                elif started.ended_at - started.started_at > LONG_INSPECTION:
                    expected.add("longer_than_12h")
            if set(flags or []) != expected:
                yield Problem("derived", "inspection", iid, "its procedure flags differ from those its records give "
                              "it")


def check_aliases(session: Session, derivation: Derivation) -> Iterator[Problem]:
    for page in _pages(session, (CaseAlias.client_case_id,), CaseAlias.client_case_id):
        for (cid,) in page:
            if cid not in derivation.opened:
                yield Problem("derived", "case_alias", cid, "no applied case.open record made it: it was put in the "
                              "table by other means")


def check_cases(session: Session, derivation: Derivation, counts) -> Iterator[Problem]:
    columns = (Case.id, Case.status, Case.summary, Case.field_versions, Case.institution_id, Case.region_code,
               Case.department_code)
    for page in _pages(session, columns, Case.id):
        counts["cases"] += len(page)
        newest = _newest_history(session, [row.id for row in page])
        bound = _bound_facts(session, [row.id for row in page])
        for row in page:
            for name, (index, digest) in sorted(bound.get(row.id, {}).items()):
                if not hasattr(row, name) or fact_digest(getattr(row, name)) != digest:
                    yield Problem("derived", "case", row.id, f"its {name} is not the value the custody log bound at "
                                  f"leaf {index}: it was changed outside the steps that log it")
            for name in CASE_FIELDS:
                latest = newest.get((row.id, name))
                value = getattr(row, name)
                if latest is not None:
                    version, recorded = latest
                    if value != recorded or (version and (row.field_versions or {}).get(name) != version):
                        yield Problem("derived", "case", row.id, f"its {name} is not the newest value its history "
                                      "recorded")
                elif name == "status" and value != "registered":
                    yield Problem("derived", "case", row.id, "its status changed, but its history recorded no change")
                elif name == "summary" and row.id in derivation.opening_summary \
                        and value != derivation.opening_summary[row.id]:
                    yield Problem("derived", "case", row.id, "its summary is not the one its case.open signed, and "
                                  "its history recorded no change")


def _bound_facts(session: Session, case_ids: list[str]) -> dict[str, dict[str, tuple[int, str]]]:
    """Per case, each fact's digest in the newest case leaf that binds it, with that leaf's index."""
    out: dict[str, dict[str, tuple[int, str]]] = {}
    for case_id, index, leaf in session.execute(
            select(CustodyEvent.case_id, CustodyEvent.leaf_index, CustodyEvent.leaf).where(
                among(session, CustodyEvent.case_id, case_ids), CustodyEvent.action.in_(CASE_ACTIONS))
            .order_by(CustodyEvent.leaf_index)):
        try:
            facts = json.loads(leaf).get("facts")
        except ValueError:
            continue  # the tree check names a leaf that is not JSON
        if isinstance(facts, dict):
            out.setdefault(case_id, {}).update({name: (index, digest) for name, digest in facts.items()})
    return out


def _newest_history(session: Session, case_ids: list[str]) -> dict[tuple[str, str], tuple[int, Any]]:
    newest = select(CaseHistory.case_id, CaseHistory.field, func.max(CaseHistory.version).label("version")).where(
        among(session, CaseHistory.case_id, case_ids), CaseHistory.field.in_(CASE_FIELDS)).group_by(
        CaseHistory.case_id, CaseHistory.field).subquery()
    rows = session.execute(select(CaseHistory.case_id, CaseHistory.field, CaseHistory.version, CaseHistory.value)
                           .join(newest, and_(CaseHistory.case_id == newest.c.case_id,
                                              CaseHistory.field == newest.c.field,
                                              CaseHistory.version == newest.c.version)))
    return {(r.case_id, r.field): (r.version, r.value) for r in rows}
