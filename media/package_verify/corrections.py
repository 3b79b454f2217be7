"""Corrections a package proves: which signed values a row may differ from, and what it is held against instead.

The ledger is never edited (docs/protocol.md, "Corrections"): a case.open whose institution the server could not
match, or a finding with a misspelt category, stays in the package as signed, while the row it made was set right
later. So the case's proven custody leaves say what happened, in log order: `needs_correction` binds that a
record was applied although what it named could not be matched; `corrected` binds each correction, with a digest
of each corrected value. A phone's correction names its signed `record.correct` (`op`), which must then be in the
package and give exactly those values; a reviewer's binds only the digests. The newest correction of a field is
what the row must say: the signed value of a phone's, or a value with the digest of a reviewer's.

The leaves' inclusion proofs are checked with the case's other leaves (`server_facts.py`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from media.custody.encoding import fact_digest
from media.package_verify.facts import ALL, Signed
from media.package_verify.report import PackageReport
from media.package_verify.server_facts import CORRECTION_ACTIONS  # media.custody.log.CORRECTION_ACTIONS


@dataclass(frozen=True)
class Held:
    """What a corrected field is held against: `needs` (not matched, awaiting correction), `signed` (the value of
    a phone's signed record.correct) or `bound` (the digest a reviewer's correction bound)."""

    kind: str
    index: int
    value: Any = None
    digest: Any = None
    codes: tuple[Any, ...] = ()


Corrected = dict[tuple[Any, Any], Held]  # (op of the corrected record, field) -> what the row is held against


def check_corrections(manifest: dict[str, Any], signed: Signed, report: PackageReport) -> Corrected:
    case = manifest["case"]
    events = case.get("custody_events")
    out: Corrected = {}
    if not isinstance(events, list):
        return out  # named with the case's facts
    fixes = {said.get("op"): (where, said) for where, said in signed.get(ALL, {}).items()
             if said["type"] == "record.correct"}
    present = {said.get("op") for said in signed.get(ALL, {}).values()}  # a part of a case has only some records
    applied = set()
    for event in events:
        leaf = json.loads(event["leaf"])
        if not isinstance(leaf, dict) or leaf.get("action") not in CORRECTION_ACTIONS or leaf.get("case") != case["id"]:
            continue
        index, corrects, fields = event["leaf_index"], leaf.get("corrects"), leaf.get("fields")
        where = f"case custody event at leaf {index}"
        if leaf["action"] == "needs_correction":
            codes = leaf.get("codes")
            for name in fields if isinstance(fields, list) else []:
                out[(corrects, name)] = Held("needs", index, codes=tuple(codes) if isinstance(codes, list) else ())
            continue
        fields = fields if isinstance(fields, dict) else {}
        op = leaf.get("op")
        if op is None:
            for name, digest in fields.items():
                out[(corrects, name)] = Held("bound", index, digest=digest)
            continue
        if corrects not in present:
            continue  # the corrected record is not in this package (one of chosen items)
        applied.add(op)
        fix = fixes.get(op)
        if fix is None:
            report.problems.append(f"{where}: it applies the record.correct {op}, which is not in the package")
            continue
        fix_where, said = fix
        body = said["body"]
        if body.get("op") != corrects:
            report.problems.append(f"{where}: it applies {fix_where} to record {corrects}, but that record.correct "
                                   f"corrects {body.get('op')}")
            continue
        values = body.get("fields")
        values = values if isinstance(values, dict) else {}
        for name, digest in fields.items():
            if fact_digest(values.get(name)) != digest:
                report.problems.append(f"{where}: its {name} is not the value {fix_where} signed")
                continue
            out[(corrects, name)] = Held("signed", index, value=values.get(name))
    for op, (fix_where, _said) in fixes.items():
        if op not in applied:
            report.problems.append(f"{fix_where}: a record.correct whose 'corrected' custody event is not in the "
                                   "package")
    return out
