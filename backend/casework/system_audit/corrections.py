"""Corrections, held against what made them: a phone's signed `record.correct`, or a reviewer's `corrected` leaf.

A finding's category or description, and a case's institution, may differ from the record that made the row once a
correction set it right (docs/protocol.md, "Corrections"); the ledger record itself stays as signed. The
`corrections` table says which: `derived` re-derives a finding by applying its corrections, oldest first, to what
its inspection.finding said (`corrected_findings`), and each correction row is held against what made it: an
applied record.correct of the same op, saying the same (`check_records`, a page of records at a time), or, for a
reviewer's, a `corrected` custody leaf of its case binding the same values by digest (`check_rows`). A case's
institution is bound by the case's own custody leaves, as every change to it is (`tables.check_cases`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.casework.system_audit.ledger import Said
from backend.casework.system_audit.report import Problem
from backend.core.bulk import among
from backend.core.models import Correction, CustodyEvent, LedgerRecord
from media.custody.encoding import fact_digest
from media.custody.log import CORRECTED

PAGE = 1000


def corrected_findings(session: Session, finding_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Per finding, the fields its corrections set, each to its newest value."""
    out: dict[str, dict[str, Any]] = defaultdict(dict)
    wanted = sorted({i for i in finding_ids if i})
    if wanted:
        for subject_id, values in session.execute(
                select(Correction.subject_id, Correction.fields).where(
                    Correction.subject == "finding", among(session, Correction.subject_id, wanted))
                .order_by(Correction.id)):
            out[subject_id].update(values or {})
    return out


def check_records(session: Session, records: list[Said]) -> Iterator[Problem]:
    """Each applied record.correct made the correction row of its op, saying what it signed; an invalid one none."""
    rows = {r.op: r for r in session.execute(select(Correction.op, Correction.case_id, Correction.subject_id,
                                                    Correction.corrects, Correction.fields)
                                             .where(among(session, Correction.op, [x.row.op for x in records])))}
    for x in records:
        row = rows.get(x.row.op)
        if x.row.status == "invalid":
            if row is not None:
                yield Problem("ledger", "record", x.where, f"it is ledgered invalid ({x.row.code}), but correction "
                              f"{x.row.op} in the tables was made by it")
            continue
        if row is None:
            yield Problem("derived", "correction", x.row.op, f"its signed record.correct {x.where} is applied, but "
                          "the correction is not in the table")
        elif (row.corrects, row.fields) != (x.body["op"], x.body["fields"]):
            yield Problem("derived", "correction", x.row.op, f"it differs from what its signed record.correct "
                          f"{x.where} says")
        elif (row.case_id, row.subject_id) != ((refs := x.row.refs or {}).get("case_id"),
                                               refs.get("finding_id", refs.get("case_id"))):
            yield Problem("derived", "correction", x.row.op, f"its case or subject differs from what its "
                          f"record.correct {x.where} resolved to")


def check_rows(session: Session, counts) -> Iterator[Problem]:
    """Every correction row was made by a record (its op) or by a reviewer whose `corrected` leaf binds it."""
    last = 0
    while True:
        rows = list(session.execute(select(Correction.id, Correction.case_id, Correction.subject,
                                           Correction.subject_id, Correction.corrects, Correction.fields,
                                           Correction.op, Correction.by)
                                    .where(Correction.id > last).order_by(Correction.id).limit(PAGE)))
        if not rows:
            return
        counts["corrections"] += len(rows)
        leaves = _reviewers_leaves(session, [r.case_id for r in rows if r.op is None])
        phones = [r.op for r in rows if r.op is not None]
        made = set(session.scalars(select(LedgerRecord.op).where(
            among(session, LedgerRecord.op, phones), LedgerRecord.type == "record.correct",
            LedgerRecord.status == "applied"))) if phones else set()
        for r in rows:
            if r.op is not None:
                if r.op not in made:
                    yield Problem("derived", "correction", r.op, "no applied record.correct record made it: it was "
                                  "put in the table by other means")
                continue  # held against its record.correct (`check_records`)
            binding = (r.subject, r.subject_id, r.corrects, r.by,
                       {name: fact_digest(value) for name, value in (r.fields or {}).items()})
            if binding not in leaves.get(r.case_id, []):
                yield Problem("derived", "correction", str(r.id), "no 'corrected' custody leaf of a reviewer binds "
                              "it: it was put in the table by other means")
        last = rows[-1].id


def _reviewers_leaves(session: Session, case_ids: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    wanted = sorted(set(case_ids))
    if not wanted:
        return out
    for case_id, leaf in session.execute(select(CustodyEvent.case_id, CustodyEvent.leaf).where(
            among(session, CustodyEvent.case_id, wanted), CustodyEvent.action == CORRECTED)):
        try:
            said = json.loads(leaf)
        except ValueError:
            continue  # the tree check names a leaf that is not JSON
        if isinstance(said, dict) and "op" not in said:
            out[case_id].append((said.get("subject"), said.get("subject_id"), said.get("corrects"),
                                 said.get("actor"), said.get("fields")))
    return out
