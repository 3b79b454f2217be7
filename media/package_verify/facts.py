"""The facts a court reads, re-derived from the signed records the package carries.

The manifest's inspections, findings and evidence items are written from the server's tables, which anyone
with database access could edit before an export (and the seal would then vouch for the edited manifest). So
each one is held against the record its phone signed: an inspection against its `inspection.start` (when,
where, who, which device) and `inspection.end` (when, outcome, notes), a finding against its
`inspection.finding` (inspection, category, description, evidence), an item against its `evidence.capture`
(capture time and inspection; its hash, size and kind are checked with its file). A field that disagrees is
named; so is a fact with no signed record in the package (a record moved out of it, or never signed).

The institution is held against what the phones' case.open records named. Facts only the server knows (the
case's status and summary, who holds an item, why it was exported) are bound by custody events instead
(`server_facts.py`). A field corrected after its record was applied is held against its newest correction
instead of the original record (`corrections.py`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from backend.core.names import normalise_name
from media.custody.encoding import fact_digest
from media.package_verify.report import PackageReport
from sync.credit_code import credit_code_problem, normalise_credit_code

Signed = dict[str, dict[str, Any]]  # record type -> subject id -> {"at", "device", "body", "type", "op"}
Corrected = dict[tuple[Any, Any], Any]  # (op of a corrected record, field) -> corrections.Held
SUBJECTS = {"inspection.start": "inspection_id", "inspection.end": "inspection_id",
            "inspection.finding": "finding_id", "evidence.capture": "evidence_id", "case.open": "client_case_id"}
ALL = "*"  # every record whose signature holds, by "record <device>#<seq>"
INSPECTION_TYPES = ("inspection.end", "inspection.finding", "recording.interruption")


def instant(value: Any) -> int | None:
    """An RFC 3339 time as milliseconds since the epoch (the manifest writes times to the millisecond)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return int(parsed.astimezone(UTC).timestamp() * 1000 // 1)


def _differs(report: PackageReport, where: str, field: str, listed: Any, signed: Any) -> None:
    report.problems.append(f"{where}: {field} {listed!r} differs from the signed record ({signed!r}): the manifest "
                           "does not say what the phone signed")


def _same_time(report: PackageReport, where: str, field: str, listed: Any, signed: Any) -> None:
    if instant(listed) is None or instant(listed) != instant(signed):
        _differs(report, where, field, listed, signed)


def check_membership(manifest: dict[str, Any], signed: Signed, report: PackageReport) -> None:
    """Which case each record belongs to is worked out from what it says, not taken on the manifest's word: a
    case.open opens one of the case's aliases; an inspection.start, case.update or evidence.capture names the
    case (by id or alias) or, for a capture, one of its inspections; an inspection's other records name one of
    its inspections. In a package of the whole case, every alias comes with its signed case.open."""
    case_id = manifest["case"]["id"]
    aliases = {a["client_case_id"] for a in manifest["case"]["aliases"]}
    inspections = {i["id"] for i in manifest["inspections"]}

    def names_case(ref: Any) -> bool:
        return isinstance(ref, dict) and (ref.get("id") == case_id or ref.get("client_case_id") in aliases)

    correctable = {said.get("op") for said in signed.get(ALL, {}).values()
                   if said["type"] in ("case.open", "inspection.finding")}
    for where, said in signed.get(ALL, {}).items():
        rtype, body = said["type"], said["body"]
        if rtype == "case.open":
            ok = body.get("client_case_id") in aliases
        elif rtype in ("inspection.start", "case.update"):
            ok = names_case(body.get("case"))
        elif rtype == "evidence.capture":
            ok = body.get("inspection_id") in inspections or names_case(body.get("case"))
        elif rtype in INSPECTION_TYPES:
            ok = body.get("inspection_id") in inspections
        elif rtype == "record.correct":
            ok = body.get("op") in correctable
        else:
            ok = False
        if not ok:
            report.problems.append(f"{where}: a {rtype} that, by what it says, does not belong to this case")
    if manifest["package"].get("items") is None:
        opened = signed.get("case.open", {})
        for alias in sorted(aliases - set(opened)):
            report.problems.append(f"case alias {alias}: its signed case.open record is not in the package")


def _held_against(report: PackageReport, where: str, field: str, listed: Any, signed: Any, held: Any) -> None:
    """A field against the newest correction of it (`corrections.Held`), else against the original record."""
    if held is not None and held.kind == "bound":
        if fact_digest(listed) != held.digest:
            report.problems.append(f"{where}: {field} {listed!r} is not the value a reviewer's correction bound at "
                                   f"leaf {held.index}")
        return
    expected = held.value if held is not None and held.kind == "signed" else signed
    if listed != expected:
        _differs(report, where, field, listed, expected)


def check_facts(manifest: dict[str, Any], signed: Signed, report: PackageReport, corrected: Corrected) -> None:
    starts, ends = signed.get("inspection.start", {}), signed.get("inspection.end", {})
    for inspection in manifest["inspections"]:
        where = f"inspection {inspection['id']}"
        start = starts.get(inspection["id"])
        if start is None:
            report.problems.append(f"{where}: no inspection.start record whose signature holds is in the package")
            continue
        body = start["body"]
        _same_time(report, where, "started_at", inspection["started_at"], start["at"])
        if inspection["device"] != start["device"]:
            _differs(report, where, "device", inspection["device"], start["device"])
        if inspection["officers"] != list(dict.fromkeys(body.get("officers") or [])):
            _differs(report, where, "officers", inspection["officers"], body.get("officers"))
        if inspection["location"] != body.get("location"):
            _differs(report, where, "location", inspection["location"], body.get("location"))
        end = ends.get(inspection["id"])
        if end is None:
            if inspection["ended_at"] is not None or inspection["outcome"] is not None:
                report.problems.append(f"{where}: listed as ended, but no inspection.end record whose signature "
                                       "holds is in the package")
            continue
        _same_time(report, where, "ended_at", inspection["ended_at"], end["at"])
        for field in ("outcome", "notes"):
            if inspection[field] != end["body"].get(field):
                _differs(report, where, field, inspection[field], end["body"].get(field))
    findings = signed.get("inspection.finding", {})
    for finding in manifest["findings"]:
        where = f"finding {finding['id']}"
        record = findings.get(finding["id"])
        if record is None:
            report.problems.append(f"{where}: no inspection.finding record whose signature holds is in the package")
            continue
        body = record["body"]
        for field in ("inspection_id", "category", "description", "evidence"):
            expected = body.get(field, []) if field == "evidence" else body.get(field)
            _held_against(report, where, field, finding[field], expected, corrected.get((record.get("op"), field)))
        _same_time(report, where, "recorded_at", finding["recorded_at"], record["at"])
    captures = signed.get("evidence.capture", {})
    for item in manifest["evidence"]:
        record = captures.get(item["id"])
        if record is None:
            continue  # reported with the item's file (its declaration is what proves the file)
        where = f"evidence {item.get('item')} ({item['id']})"
        _same_time(report, where, "captured_at", item["captured_at"], record["body"].get("captured_at"))
        if item["inspection_id"] != record["body"].get("inspection_id"):
            _differs(report, where, "inspection_id", item["inspection_id"], record["body"].get("inspection_id"))


def check_institution(manifest: dict[str, Any], signed: Signed, report: PackageReport, corrected: Corrected) -> None:
    """The institution against what each signed case.open of the case named (or, corrected, its newest signed
    correction): its id; else its credit code (the server matches and completes by it) when it passes GB
    32100-2015; else its name (compared as the registry's merge compares names) and region. One the server could
    not match, or a reviewer corrected, is not held against a signed ref: the case's custody events bind it."""
    institution = manifest["case"].get("institution")
    for alias, said in sorted(signed.get("case.open", {}).items()):
        ref = said["body"].get("institution")
        held = corrected.get((said.get("op"), "institution"))
        if held is not None and held.kind == "needs":
            report.notes.append(f"case alias {alias}: the server could not match the institution its case.open "
                                f"names ({', '.join(map(str, held.codes))}); it awaits correction (custody leaf "
                                f"{held.index})")
            continue
        if held is not None and held.kind == "bound":
            report.notes.append(f"case alias {alias}: its institution was corrected by a reviewer (custody leaf "
                                f"{held.index})")
            continue
        if held is not None:
            ref = held.value
        if not isinstance(ref, dict):
            continue
        where = f"case alias {alias}"
        if institution is None:
            report.problems.append(f"{where}: its signed case.open names an institution; the manifest has none")
            continue
        if "id" in ref:
            if institution.get("id") != ref["id"]:
                _differs(report, where, "institution.id", institution.get("id"), ref["id"])
            continue
        code = normalise_credit_code(ref["credit_code"]) if ref.get("credit_code") else None
        if code and credit_code_problem(code) is None:  # a failing code matches nothing: set aside, as the server
            if institution.get("credit_code") != code:  # does for a record that overrode the phone's check of it
                _differs(report, where, "institution.credit_code", institution.get("credit_code"), code)
            continue
        if normalise_name(str(institution.get("name") or "")) != normalise_name(str(ref.get("name") or "")):
            _differs(report, where, "institution.name", institution.get("name"), ref.get("name"))
        if ref.get("region") and institution.get("region_code") != ref["region"]:
            _differs(report, where, "institution.region_code", institution.get("region_code"), ref["region"])
