"""The facts only the server knows, held against the custody events that bound them when they happened.

A case's status after review, its summary and whose it is; who holds each item; why the package was made and by
whom; when and by whom a file was deleted. No phone signed these, so `facts.py` cannot re-derive them. The seal
vouches that the manifest is what the server wrote at export, but the server wrote it from its tables, and an
edit of a table before the export would be sealed as faithfully. So each of these facts must agree with a
custody event whose inclusion proof the package carries and whose leaf was written by the step that made the
fact: a review step or a phone's case.update (`case_opened` / `case_changed`, a digest of each bound value), a
hand-over (`transferred`), the export itself (`exported`), retention (`deleted`). A fact that disagrees, or that
no proven event binds, is named.
"""

from __future__ import annotations

import json
from typing import Any

from media.custody.encoding import fact_digest
from media.package_verify.heads import inclusion_holds
from media.package_verify.report import PackageReport

CASE_ACTIONS = ("case_opened", "case_changed", "case_witnessed")  # media.custody.log.CASE_ACTIONS
CORRECTION_ACTIONS = ("needs_correction", "corrected")  # media.custody.log.CORRECTION_ACTIONS: read by corrections.py


def _case_value(case: dict[str, Any], name: str) -> tuple[bool, Any]:
    if name == "institution_id":
        institution = case.get("institution")
        return institution is not None, None if institution is None else institution.get("id")
    return name in case, case.get(name)


def check_case_facts(manifest: dict[str, Any], tree: tuple[int, bytes] | None, report: PackageReport) -> None:
    """The case's status, summary, institution, region and department against its newest proven case leaf."""
    case = manifest["case"]
    events = case.get("custody_events")
    if not isinstance(events, list):
        report.problems.append("case: the package carries no custody events for the case, so its status and "
                               "summary are not bound by the custody log")
        return
    bound: dict[str, tuple[int, str]] = {}  # fact -> (leaf index, digest) of the newest proven leaf naming it
    last = -1
    for event in events:
        report.events += 1
        index, leaf = event["leaf_index"], json.loads(event["leaf"])
        where = f"case custody event at leaf {index}"
        if leaf.get("action") not in CASE_ACTIONS + CORRECTION_ACTIONS or leaf.get("case") != case["id"]:
            report.problems.append(f"{where}: it is a {leaf.get('action')!r} event of case {leaf.get('case')!r}, "
                                   "not a fact of this case")
            continue
        if index <= last:
            report.problems.append(f"{where}: case events are not in log order")
        last = max(last, index)
        if tree is None or not inclusion_holds(event, where, leaf, tree, report):
            continue
        if leaf["action"] in CORRECTION_ACTIONS:
            continue  # not a fact of the case: what a correction changed (corrections.py)
        facts = leaf.get("facts")
        if not isinstance(facts, dict):
            report.problems.append(f"{where}: it binds no facts")
            continue
        for name, digest in facts.items():
            bound[name] = (index, digest)
    for name, (index, digest) in sorted(bound.items()):
        present, value = _case_value(case, name)
        if not present:
            continue  # a fact this package does not present
        if fact_digest(value) != digest:
            field = "institution.id" if name == "institution_id" else name
            report.problems.append(f"case: {field} {value!r} is not the value the custody log bound at leaf "
                                   f"{index}: the server's record was changed outside the steps that log it")
    for name in ("status", "summary"):
        if name not in bound:
            report.problems.append(f"case: its {name} is bound by no proven custody event in the package")


def check_item_facts(manifest: dict[str, Any], item: dict[str, Any], where: str, proven: list[dict[str, Any]],
                     report: PackageReport) -> None:
    """An item's holder, its export and its deletion against its proven custody events (in log order)."""
    package = manifest["package"]
    holder = None
    exports = []
    for leaf in proven:
        action = leaf.get("action")
        if action == "verified" and holder is None:
            holder = leaf.get("actor")  # the declaring officer holds the item once it is verified
        elif action == "transferred":
            holder = leaf.get("to")
        elif action == "exported" and leaf.get("package") == package["id"]:
            exports.append(leaf)
    if item.get("custody_holder") != holder:
        report.problems.append(f"{where}: custody_holder {item.get('custody_holder')!r} is not the holder its proven "
                               f"custody events name ({holder!r})")
    if not exports:
        report.problems.append(f"{where}: no proven 'exported' custody event of this package: the export's purpose "
                               "and author are not bound")
    for leaf in exports:
        if leaf.get("purpose") != package.get("purpose"):
            report.problems.append(f"{where}: the package's purpose {package.get('purpose')!r} differs from the "
                                   f"one its 'exported' custody event records ({leaf.get('purpose')!r})")
        if leaf.get("actor") != package.get("created_by"):
            report.problems.append(f"{where}: the package names {package.get('created_by')!r} as its author, its "
                                   f"'exported' custody event {leaf.get('actor')!r}")
    deletions = [leaf for leaf in proven if leaf.get("action") == "deleted"]
    if deletions and item.get("status") == "deleted":
        leaf = deletions[-1]
        if item.get("deleted_by") != leaf.get("actor") or item.get("deleted_at") != leaf.get("at"):
            report.problems.append(f"{where}: deleted_at/deleted_by ({item.get('deleted_at')}, "
                                   f"{item.get('deleted_by')}) differ from its 'deleted' custody event "
                                   f"({leaf.get('at')}, {leaf.get('actor')})")
