"""The tables derived from the ledger, held against the records that made them, a page of records at a time.

For each authentic record the ledger pass hands on (`ledger.Said`), the row it made is re-derived with the
functions applying it wrote the row with (`backend.casework.apply.*_facts`: one home for what a record makes)
and compared column by column: an inspection with its `inspection.start` and `inspection.end`, a finding with its
`inspection.finding` (as its corrections left it: `corrections`), an evidence item with its `evidence.capture` (its
declared hash, size and kind included), a clue, a recording interruption, a case alias and the case a `case.open`
opened, the case history a `case.update` wrote and the conflict it opened, a correction its `record.correct`
made. A record ledgered `invalid` for a reason only the server knew (an unknown case, an id used before) must
have made nothing.

What one record cannot decide is gathered here and judged once every record was seen (`tables`): which
inspections, aliases and cases the records made, and the procedure flags an inspection's records give it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from backend.casework.apply import (
    CLOCK_AHEAD_LIMIT,
    clue_facts,
    ending_facts,
    evidence_facts,
    finding_facts,
    inspection_facts,
    interruption_facts,
)
from backend.casework.system_audit import corrections
from backend.casework.system_audit.ledger import Said
from backend.casework.system_audit.report import Problem
from backend.core.bulk import among
from backend.core.models import (
    Case,
    CaseAlias,
    CaseConflict,
    CaseHistory,
    Clue,
    Evidence,
    Finding,
    Inspection,
    RecordingInterruption,
)

# The flags an inspection.start's ledger row carries that depend on what the server knew then (certificates, the
# task list): taken from that row, since neither is kept as it was.
START_FLAGS = frozenset({"fewer_than_two_certified", "unknown_officer", "task_mismatch"})
INSPECTION_TYPES = ("inspection.finding", "evidence.capture", "recording.interruption")


@dataclass
class Started:
    """What an inspection's records say of it, for its flags: judged when every record was seen."""

    start_flags: frozenset[str]
    owner_absent: bool
    started_at: datetime
    ended_at: datetime | None = None


def _by(session: Session, model: type, column: Any, keys: Iterable[Any]) -> dict[Any, Row[Any]]:
    wanted = sorted({k for k in keys if k is not None})
    if not wanted:
        return {}
    table = model.__table__  # type: ignore[attr-defined]
    return {getattr(r, column.key): r for r in session.execute(select(table).where(among(session, column, wanted)))}


def _ahead(said: Said) -> bool:
    return said.at - said.row.received_at > CLOCK_AHEAD_LIMIT


class Derivation:
    def __init__(self, session: Session) -> None:
        self.s = session
        self.started: dict[str, Started] = {}
        self.ahead: set[str] = set()  # inspections an applied record of theirs gave clock_ahead
        self.overridden: set[str] = set()  # inspections an applied record of theirs gave override (signed over)
        self.opened: set[str] = set()  # client_case_ids of applied case.open records
        self.opening_summary: dict[str, str] = {}  # a case a case.open created -> the summary it signed
        self.ended: set[str] = set()

    def check_page(self, page: list[Said]) -> Iterator[Problem]:
        kinds: dict[str, list[Said]] = defaultdict(list)
        for said in page:
            kinds[said.type].append(said)
        s, body_of = self.s, (lambda t, key: [x.body.get(key) for x in kinds[t]])
        inspections = _by(s, Inspection, Inspection.id,
                          body_of("inspection.start", "inspection_id") + body_of("inspection.end", "inspection_id"))
        yield from self._inspections(kinds["inspection.start"], kinds["inspection.end"], inspections)
        corrected = corrections.corrected_findings(s, body_of("inspection.finding", "finding_id"))
        yield from self._made(kinds["inspection.finding"], _by(s, Finding, Finding.id,
                                                               body_of("inspection.finding", "finding_id")),
                              "finding", "finding_id",
                              lambda x: {**finding_facts(x.body, x.by, x.at, x.row.op),
                                         **corrected.get(x.body["finding_id"], {})})
        yield from corrections.check_records(s, kinds["record.correct"])
        yield from self._made(kinds["evidence.capture"], _by(s, Evidence, Evidence.id,
                                                             body_of("evidence.capture", "evidence_id")),
                              "evidence", "evidence_id",
                              lambda x: evidence_facts(x.body, x.row.device_id, x.by, x.row.op))
        yield from self._made(kinds["clue.report"], _by(s, Clue, Clue.id, body_of("clue.report", "clue_id")),
                              "clue", "clue_id", lambda x: clue_facts(x.body, x.by, x.at, x.row.op))
        yield from self._made(kinds["recording.interruption"],
                              _by(s, RecordingInterruption, RecordingInterruption.op,
                                  [x.row.op for x in kinds["recording.interruption"]]),
                              "recording_interruption", None, lambda x: interruption_facts(x.body, x.row.op))
        yield from self._case_opens(kinds["case.open"])
        yield from self._case_updates(kinds["case.update"])
        for rtype in INSPECTION_TYPES:
            for x in kinds[rtype]:
                if (x.row.status == "applied" and x.body.get("inspection_id")
                        and "unknown_inspection" not in (x.row.flags or [])):
                    if _ahead(x):
                        self.ahead.add(x.body["inspection_id"])
                    if x.body.get("override"):
                        self.overridden.add(x.body["inspection_id"])

    def _differs(self, check: str, kind: str, ident: str, row: Row[Any], facts: dict[str, Any],
                 said: Said) -> Iterator[Problem]:
        for name, value in facts.items():
            if getattr(row, name) != value:
                yield Problem(check, kind, ident, f"its {name} differs from what its signed {said.type} record "
                              f"{said.where} says")

    def _inspections(self, starts: list[Said], ends: list[Said], rows: dict[str, Row[Any]]) -> Iterator[Problem]:
        for x in starts:
            iid, row = x.body["inspection_id"], rows.get(x.body["inspection_id"])
            if x.row.status == "invalid":
                if row is not None and row.device_id == x.row.device_id and row.started_at == x.at:
                    yield _made_by_invalid(x, "inspection", iid)
                continue
            facts = inspection_facts(x.body, x.row.device_id, x.by, x.at)
            if row is None:
                yield Problem("derived", "inspection", iid, f"its signed inspection.start {x.where} is applied, but "
                              "the inspection is not in the table")
                continue
            yield from self._differs("derived", "inspection", iid, row, facts, x)
            if row.case_id != (x.row.refs or {}).get("case_id"):
                yield Problem("derived", "inspection", iid, f"its case differs from the one its inspection.start "
                              f"{x.where} resolved to")
            self.started[iid] = Started(frozenset(x.row.flags or []) & START_FLAGS, x.by not in facts["officers"],
                                        x.at)
            if _ahead(x):
                self.ahead.add(iid)
            if x.body.get("override"):
                self.overridden.add(iid)
        for x in ends:
            iid, row = x.body["inspection_id"], rows.get(x.body["inspection_id"])
            if x.row.status == "invalid":
                continue  # ended already, or not known then: the inspection's own record says what it is
            self.ended.add(iid)
            if row is None:
                yield Problem("derived", "inspection", iid, f"its signed inspection.end {x.where} is applied, but "
                              "the inspection is not in the table")
                continue
            yield from self._differs("derived", "inspection", iid, row, ending_facts(x.body, x.at), x)
            if iid in self.started:
                self.started[iid].ended_at = x.at
            if _ahead(x):
                self.ahead.add(iid)
            if x.body.get("override"):
                self.overridden.add(iid)

    def _made(self, records: list[Said], rows: dict[str, Row[Any]], kind: str, subject: str | None,
              facts_of) -> Iterator[Problem]:
        check = "evidence" if kind == "evidence" else "derived"
        for x in records:
            ident = x.body[subject] if subject else x.row.op
            row = rows.get(ident)
            mine = row is not None and row.op == x.row.op
            if x.row.status == "invalid":
                if mine:
                    yield _made_by_invalid(x, kind, ident)
                continue
            if not mine:
                yield Problem(check, kind, ident, f"its signed {x.type} {x.where} is applied, but the row it made is "
                              "not in the table" + (" (another record's row has its id)" if row is not None else ""))
                continue
            yield from self._differs(check, kind, ident, row, facts_of(x), x)
            if kind == "evidence" and row.case_id != (x.row.refs or {}).get("case_id"):
                yield Problem(check, kind, ident, f"its case differs from the one its evidence.capture {x.where} "
                              "resolved to")

    def _case_opens(self, records: list[Said]) -> Iterator[Problem]:
        aliases = _by(self.s, CaseAlias, CaseAlias.client_case_id, [x.body["client_case_id"] for x in records])
        cases = _by(self.s, Case, Case.id, [a.case_id for a in aliases.values()])
        for x in records:
            if x.row.status == "invalid":
                continue  # an alias of the same id was made by the record that used it first
            cid, alias, refs = x.body["client_case_id"], aliases.get(x.body["client_case_id"]), x.row.refs or {}
            self.opened.add(cid)
            if alias is None:
                yield Problem("derived", "case_alias", cid, f"its signed case.open {x.where} is applied, but the "
                              "alias is not in the table")
                continue
            if (alias.case_id, alias.device_id, alias.merged) != (refs.get("case_id"), x.row.device_id,
                                                                  bool(refs.get("merged"))):
                yield Problem("derived", "case_alias", cid, f"its case, device or merge differs from what its "
                              f"case.open {x.where} resolved to")
            case = cases.get(alias.case_id)
            if case is not None and not alias.merged:
                self.opening_summary[case.id] = x.body.get("summary") or ""
                if (case.created_by, case.created_at) != (x.by, x.at):
                    yield Problem("derived", "case", case.id, f"its creator or creation time differs from its "
                                  f"case.open {x.where}")

    def _case_updates(self, records: list[Said]) -> Iterator[Problem]:
        # Looked up by the cases the records resolved to (the tables are indexed by case, not by op), then matched
        # by op. A record ledgered invalid resolved to no case: what it made is seen only in a case another
        # record of the page resolved to.
        ops = {x.row.op for x in records}
        cases = sorted({case for x in records if (case := (x.row.refs or {}).get("case_id"))})
        conflicts: dict[str, list[Row[Any]]] = defaultdict(list)
        history: dict[str, list[Row[Any]]] = defaultdict(list)
        if cases:
            for r in self.s.execute(select(CaseConflict.op, CaseConflict.case_id, CaseConflict.field,
                                           CaseConflict.phone_value.label("value"))
                                    .where(among(self.s, CaseConflict.case_id, cases))):
                if r.op in ops:
                    conflicts[r.op].append(r)
            for r in self.s.execute(select(CaseHistory.op, CaseHistory.case_id, CaseHistory.field, CaseHistory.value)
                                    .where(among(self.s, CaseHistory.case_id, cases))):
                if r.op in ops:
                    history[r.op].append(r)
        for x in records:
            fields, case_id = x.body.get("fields") or {}, (x.row.refs or {}).get("case_id")
            made = history[x.row.op] + conflicts[x.row.op]
            if x.row.status == "invalid":
                if made:
                    yield _made_by_invalid(x, "case", made[0].case_id)
                continue
            if (x.row.status == "conflict") != bool(conflicts[x.row.op]):
                yield Problem("ledger", "record", x.where, "its status conflict and the conflicts it opened do not "
                              "agree")
            for r in made:
                if r.case_id != case_id or r.field not in fields or fields[r.field] != r.value:
                    yield Problem("derived", "case", r.case_id, f"its {r.field} change (history or conflict) "
                                  f"differs from what its signed case.update {x.where} says")


def _made_by_invalid(said: Said, kind: str, ident: str) -> Problem:
    return Problem("ledger", "record", said.where, f"it is ledgered invalid ({said.row.code}), but {kind} {ident} in "
                   "the tables was made by it")
