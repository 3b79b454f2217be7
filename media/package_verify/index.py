"""The sealed index: every member of the ZIP, with its SHA-256 and size, signed with the custody key (PROTOCOL
"Evidence packages, as built"). An added, removed, renamed or edited member is named; so is an index that
cites another tree head or package than the manifest does.

A package with the SM tree is sealed in SM2 too (`sm_signature`, every member's `sm3`): that seal is checked with
the key the SM tree head is checked with (`sm_tree.py`, which reports what is wrong with that key), and each
member's SM3 against the index, in the read that takes its SHA-256.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

from backend.core.crypto import INTL, SM
from media.package_index import HEAD_FIELDS, INDEX_FORMAT, INDEX_NAME
from media.package_verify.members import Damaged, Members
from media.package_verify.report import PackageReport
from media.package_verify.sm_tree import _sm_key
from media.package_verify.spelling import Refused, b64d, hash32, sm2_signature


def check_index(members: Members, manifest: dict[str, Any], key: bytes | None,
                report: PackageReport, sm_public_key: str | None = None) -> None:
    try:
        index = json.loads(members.zf.read(INDEX_NAME).decode("utf-8"))
    except KeyError:
        report.problems.append(f"{INDEX_NAME} is missing: the package is not sealed, so members added, removed or "
                               "edited could not be seen")
        return
    except (ValueError, UnicodeDecodeError) as exc:
        report.problems.append(f"{INDEX_NAME} cannot be read ({exc})")
        return
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT or not isinstance(index.get("members"),
                                                                                              list):
        report.problems.append(f"{INDEX_NAME} is not a fieldcase package index")
        return
    _signature(index, key, report)
    in_sm = _sm_seal(index, manifest, sm_public_key, report)
    head = manifest["custody"]["tree_head"]
    if not isinstance(index.get("tree_head"), dict) or any(index["tree_head"].get(k) != head.get(k)
                                                           for k in HEAD_FIELDS):
        report.problems.append(f"{INDEX_NAME}: it cites another tree head than manifest.json")
    if index.get("package") != manifest["package"]["id"] or index.get("case_id") != manifest["package"]["case_id"]:
        report.problems.append(f"{INDEX_NAME}: it names another package or case than manifest.json")
    _members(index["members"], members, in_sm, report)


def _signature(index: dict[str, Any], key: bytes | None, report: PackageReport) -> None:
    if key is None:
        return  # no usable custody key: already reported with the tree head
    try:
        signature = b64d(index.get("signature"))
        if len(signature) != 64:
            raise Refused(f"{len(signature)} bytes, not the 64 of Ed25519")
    except Refused as exc:
        report.problems.append(f"{INDEX_NAME}: refused, its signature is {exc}, so nothing it lists is vouched for")
        return
    signed = rfc8785.dumps({k: v for k, v in index.items() if k != "signature"})
    if not INTL.verify(key, signed, signature):
        report.problems.append(f"{INDEX_NAME}: its signature does not verify with the custody key (the index was "
                               "altered, or made by another key)")


def _sm_seal(index: dict[str, Any], manifest: dict[str, Any], given: str | None, report: PackageReport) -> bool:
    """Whether the index is sealed in SM2; its SM2 signature checked when the package's SM tree gives a usable key."""
    sm = manifest["custody"].get("sm")
    if "sm_signature" not in index:
        if sm is not None:
            report.notes.append(f"{INDEX_NAME} is not sealed in SM2 (a package made before the seal was): its members "
                                "are sealed by Ed25519 over SHA-256 alone")
        return False
    if sm is None:
        report.problems.append(f"{INDEX_NAME}: it is sealed in SM2, but the package carries no SM tree (custody.sm) "
                               "whose SM2 key could check the seal")
        return True
    key = _sm_key(sm, given, PackageReport())  # its notes and problems are the SM tree head's, reported there
    if key is None:
        return True
    try:
        signature = sm2_signature(index["sm_signature"])
    except Refused as exc:
        report.problems.append(f"{INDEX_NAME}: refused, its SM2 signature is {exc}, so nothing it lists is vouched "
                               "for in SM2")
        return True
    signed = rfc8785.dumps({k: v for k, v in index.items() if k not in ("signature", "sm_signature")})
    if not SM.verify(key, signed, signature):
        report.problems.append(f"{INDEX_NAME}: its SM2 signature does not verify with the "
                               f"{'given' if given else 'package'} SM2 key (the index was altered, or made by another "
                               "key)")
    return True


def _members(listed: list[Any], members: Members, in_sm: bool, report: PackageReport) -> None:
    expected: dict[str, dict[str, Any]] = {}
    for entry in listed:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            report.problems.append(f"{INDEX_NAME}: an entry is not a member (name, sha256, size)")
            continue
        if entry["name"] in expected:
            report.problems.append(f"{INDEX_NAME}: member {entry['name']} is listed twice")
        expected[entry["name"]] = entry
    present = [n for n in members.names() if n != INDEX_NAME]
    without_sm3 = []
    for name in present:
        entry = expected.get(name)
        if entry is None:
            report.problems.append(f"member {name}: not in the signed index (added to the package, or renamed)")
            continue
        try:
            digest, size, sm3 = members.digests(name) if "sm3" in entry else (*members.digest(name), None)
            sealed = hash32(entry.get("sha256"), "its sealed sha256").hex()
            sealed_sm3 = hash32(entry["sm3"], "its sealed sm3").hex() if "sm3" in entry else None
        except Damaged as exc:
            report.problems.append(f"member {name}: damaged ({exc}); its bytes were altered")
            continue
        except Refused as exc:
            report.problems.append(f"{INDEX_NAME}: member {name} refused, {exc}")
            continue
        if digest != sealed or size != entry.get("size"):
            report.problems.append(f"member {name}: not the member the index sealed (SHA-256 {digest}, {size} "
                                   f"bytes; sealed {sealed}, {entry.get('size')} bytes): it was edited")
        if sealed_sm3 is None:
            if in_sm:
                without_sm3.append(name)
        elif sm3 != sealed_sm3:
            report.problems.append(f"member {name}: not the member the index sealed (SM3 {sm3}; sealed {sealed_sm3}): "
                                   "it was edited")
    for name in sorted(set(expected) - set(present)):
        report.problems.append(f"member {name}: in the signed index but not in the package (removed, or renamed)")
    if without_sm3:
        report.notes.append(f"{INDEX_NAME}: no SM3 for {', '.join(without_sm3)} (files of items verified before the "
                            "server computed SM3, not backfilled since): the SM2 seal covers their SHA-256 alone")
