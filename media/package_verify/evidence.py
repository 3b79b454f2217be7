"""The evidence of a package: each item against its signed declaration, each file's bytes, and each custody
event's inclusion proof against the signed tree head. Files are read in chunks: memory does not grow with them.

Digests: a declaration names `sha256`, `sm3` or both. Each one it names must be the item's; a file is hashed with
SHA-256, and with SM3 too (in the same read) when its item carries an `sm3`. An item without `sm3` is checked
exactly as before SM3 existed.
"""

from __future__ import annotations

import json
from typing import Any

from media.package_verify.facts import Signed
from media.package_verify.heads import inclusion_holds
from media.package_verify.members import Damaged, Members
from media.package_verify.report import PackageReport
from media.package_verify.server_facts import check_item_facts
from sync.records import EVIDENCE_DIGESTS as DIGESTS


def _declares(body: dict[str, Any], name: str) -> bool:
    """Whether a signed evidence.capture names this digest. A body naming neither is held to `sha256`, as every
    declaration was before `sm3`."""
    return name in body or (name == "sha256" and "sm3" not in body)


def _same_digests(leaf: dict[str, Any], item: dict[str, Any]) -> bool:
    """Whether a custody leaf's digests are the item's: each one the leaf names and the item lists (`sha256`
    always; `sm3` where the item has one: a `deleted` event also names the SM3 the server computed of a file declared
    by SHA-256 alone, which the item does not list), or `sha256` when there is no such one."""
    named = [name for name in DIGESTS if name in leaf and (name == "sha256" or name in item)] or ["sha256"]
    return all(leaf.get(name) == (item["sha256"] if name == "sha256" else item.get(name)) for name in named)


def check_evidence(members: Members, manifest: dict[str, Any], signed: Signed,
              tree: tuple[int, bytes] | None, report: PackageReport) -> None:
    package_id = manifest["package"]["id"]
    listed = set()
    report.items = len(manifest["evidence"])
    for item in manifest["evidence"]:
        eid = item["id"]
        where = f"evidence {item.get('item')} ({eid})"
        declared = signed.get("evidence.capture", {}).get(eid)
        if declared is None:
            report.problems.append(f"{where}: its signed evidence.capture record is not in the package")
        else:
            device_id, body = declared["device"], declared["body"]
            for name in ("sha256", "sm3", "size", "kind", "media_type"):
                if name in DIGESTS and not _declares(body, name):
                    continue  # a digest the phone did not declare: the server's own, held against the file below
                said = item.get(name) if name == "sm3" else item[name]  # an item may lack sm3, never the rest
                if body.get(name) != said:
                    report.problems.append(f"{where}: {name} {said!r} differs from the signed declaration "
                                           f"({body.get(name)!r})")
            if device_id != item["device"]:
                report.problems.append(f"{where}: declared by device {device_id}, not {item['device']}")
        held = check_events(item, where, tree, package_id, report)
        check_item_facts(manifest, item, where, held, report)
        proven = {leaf["action"]: leaf for leaf in held if leaf.get("action") in ("verified", "deleted")}
        deletion = proven.get("deleted")
        if item.get("file"):
            listed.add(item["file"])
            check_file(members, item, where, report)
            if deletion is not None:
                report.problems.append(f"{where}: the custody log records the deletion of its file, yet the package "
                                       "holds one")
        elif deletion is not None:
            check_deleted(item, where, deletion, report)
        elif item["status"] == "deleted":
            report.problems.append(f"{where}: listed as deleted, but no proven 'deleted' custody event says so: "
                                   "its file is missing from the package")
        elif item["status"] == "verified":
            report.problems.append(f"{where}: verified, but its file is not in the package")
        elif "verified" in proven:
            report.problems.append(f"{where}: the custody log shows it verified, but its file is not in the package "
                                   f"(listed as {item['status']!r})")
    for name in members.names():
        if name.startswith("files/") and name not in listed:
            report.problems.append(f"file {name}: in the package but not listed in the manifest")


def check_file(members: Members, item: dict[str, Any], where: str, report: PackageReport) -> None:
    name = item["file"]
    sm3 = None
    try:
        if item.get("sm3") is not None:
            digest, n, sm3 = members.digests(name)  # both from one read
        else:
            digest, n = members.digest(name)
    except KeyError:
        report.problems.append(f"{where}: its file {name} is missing from the package")
        return
    except Damaged as exc:  # a CRC error: the bytes were changed inside the ZIP
        report.problems.append(f"{where}: file {name} is damaged ({exc}); its bytes were altered")
        return
    report.files += 1
    if digest != item["sha256"]:
        report.problems.append(f"{where}: file {name} has SHA-256 {digest}, not the declared "
                               f"{item['sha256']}: the file was altered")
    if sm3 is not None and sm3 != item["sm3"]:
        report.problems.append(f"{where}: file {name} has SM3 {sm3}, not the declared {item['sm3']}: the file was "
                               "altered")
    if n != item["size"]:
        report.problems.append(f"{where}: file {name} is {n} bytes, not the declared {item['size']}")


def check_deleted(item: dict[str, Any], where: str, leaf: dict[str, Any], report: PackageReport) -> None:
    if item["status"] != "deleted":
        report.problems.append(f"{where}: the custody log records the deletion of its file, but it is listed as "
                               f"{item['status']!r}")
        return
    if not _same_digests(leaf, item) or leaf.get("size") != item["size"]:
        report.problems.append(f"{where}: its 'deleted' custody event records another hash or size")
        return
    report.deleted += 1
    report.notes.append(f"{where}: its file was deleted under the retention policy at {leaf.get('at')} by "
                        f"{leaf.get('actor')} ({leaf.get('reason')}); its hash and custody history remain")


def check_events(item: dict[str, Any], where: str, tree: tuple[int, bytes] | None, package_id: str,
            report: PackageReport) -> list[dict[str, Any]]:
    """Check every event; answer the item's own events whose inclusion holds, in log order."""
    exported = declared = False
    proven: list[dict[str, Any]] = []
    for event in item["custody_events"]:
        report.events += 1
        index, text = event["leaf_index"], event["leaf"]
        leaf = json.loads(text)
        if leaf.get("evidence_id") != item["id"]:
            report.problems.append(f"{where}: custody event at leaf {index} belongs to {leaf.get('evidence_id')}")
        holds = tree is not None and inclusion_holds(event, where, leaf, tree, report)
        if holds and leaf.get("evidence_id") == item["id"]:
            proven.append(leaf)
        if leaf.get("action") == "declared":
            declared = True
            if not _same_digests(leaf, item) or leaf.get("size") != item["size"]:
                report.problems.append(f"{where}: its custody 'declared' event records another hash or size")
        if leaf.get("action") == "exported" and leaf.get("package") == package_id:
            exported = True
    if not declared:
        report.problems.append(f"{where}: its custody 'declared' event is not in the package")
    if not exported:
        report.problems.append(f"{where}: the custody log has no 'exported' event for this package")
    return proven
