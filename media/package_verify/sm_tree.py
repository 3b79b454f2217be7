"""The SM tree a package carries (`custody.sm`, FIELDCASE_CUSTODY_SUITES=intl,sm; PROTOCOL "Custody log in the national
algorithms"): its head, SM2-signed, at the same size as the tree head, and an SM3 inclusion proof of every custody leaf
the package proves, against that head's root.

The leaves are the ones the rest of the package proves in the SHA-256 tree (each item's events, the case's, each
device's head), so each is proven in both trees from the same text. The SM2 key is the one given by the person
verifying (`--sm-public-key`), or, which proves only that the package is self-consistent, the one inside it. A
package without `custody.sm` was made where no SM tree is kept (or before it reached the head): it is checked as
before, and a note says so. The SM head's RFC 3161 token, when it carries one, is checked with the intl head's
(`timestamp.py`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import rfc8785

from backend.core.crypto import SM, sm2
from media.custody.merkle import SM3_TREE
from media.custody.proofs import check_inclusion
from media.package_verify.report import PackageReport
from media.package_verify.spelling import Refused, b64d, hash32, sm2_signature, typed_key


def _proven_leaves(manifest: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every custody leaf the package proves, with where it is listed (as the SHA-256 checks name it)."""
    for item in manifest["evidence"]:
        for event in item["custody_events"]:
            yield f"evidence {item.get('item')} ({item['id']})", event
    for event in manifest["case"]["custody_events"]:
        yield f"case custody event at leaf {event['leaf_index']}", event
    for device_id, device in sorted(manifest["devices"].items()):
        if device.get("head") is not None:
            yield f"device {device_id}: head", device["head"]


def _sm_key(sm: dict[str, Any], given: str | None, report: PackageReport) -> bytes | None:
    if given:
        typed = typed_key(given)
        try:
            key = b64d(typed)
            sm2.check_public_key(key)
        except (Refused, ValueError) as exc:
            report.problems.append(f"the SM2 public key given on the command line is not base64url of an SM2 point "
                                   f"({exc})")
            return None
        report.notes.append(f"SM tree head checked against the SM2 key given on the command line (key_id "
                            f"{SM.hexdigest(key)[:16]})")
        if sm.get("public_key") and sm["public_key"] != typed:
            report.notes.append(f"note: the package names another SM2 custody key (key_id {sm.get('key_id')})")
        return key
    try:
        key = b64d(sm["public_key"])
        sm2.check_public_key(key)
    except (Refused, ValueError) as exc:
        report.problems.append(f"the SM2 custody public key in the package is not a valid SM2 key ({exc})")
        return None
    report.notes.append(f"WARNING: SM tree head checked against the SM2 key inside the package (key_id "
                        f"{SM.hexdigest(key)[:16]}): this only shows the package is self-consistent; pass "
                        "--sm-public-key with the server's published key (GET /api/v1/custody/public-key?suite=sm)")
    if SM.hexdigest(key)[:16] != sm.get("key_id"):
        report.problems.append("the package's SM2 custody key_id does not match its public key")
    return key


def _sm_head(sm: dict[str, Any], manifest: dict[str, Any], key: bytes | None, given: bool,
             report: PackageReport) -> tuple[int, bytes] | None:
    """The SM head's size and root when they are usable (its signature checked when there is a key)."""
    head, intl = sm["tree_head"], manifest["custody"]["tree_head"]
    size = head["tree_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size != intl["tree_size"]:
        report.problems.append(f"SM tree head: its tree_size {size!r} is not the tree head's ({intl['tree_size']!r}): "
                               "the two trees are over the same leaves, so no custody event is proven in the SM tree")
        return None
    try:
        root = hash32(head["root_hash"], "its root_hash")
    except Refused as exc:
        report.problems.append(f"SM tree head (size {size}): refused, {exc}, so no custody event is proven in the "
                               "SM tree")
        return None
    if key is not None:
        try:
            signature = sm2_signature(head["signature"])
        except Refused as exc:
            report.problems.append(f"SM tree head (size {size}): refused, its signature is {exc}, so it was not "
                                   "checked")
        else:
            signed = rfc8785.dumps({"tree_size": size, "root_hash": head["root_hash"], "timestamp": head["timestamp"]})
            if not SM.verify(key, signed, signature):
                report.problems.append(f"SM tree head (size {size}): its SM2 signature does not verify with the "
                                       f"{'given' if given else 'package'} SM2 key (forged or altered SM head or "
                                       "root, or another server's key)")
    return size, root


def check_sm_tree(manifest: dict[str, Any], sm_public_key: str | None, report: PackageReport) -> None:
    sm = manifest["custody"].get("sm")
    if sm is None:
        if sm_public_key:
            report.notes.append("the package carries no SM tree (custody.sm), so --sm-public-key checked nothing")
        return
    key = _sm_key(sm, sm_public_key, report)
    tree = _sm_head(sm, manifest, key, bool(sm_public_key), report)
    proofs = sm["proofs"]
    if not isinstance(proofs, dict):
        report.problems.append("SM tree: its proofs are not an object of leaf index to proof")
        return
    listed = set()
    for where, event in _proven_leaves(manifest):
        index = event["leaf_index"]
        listed.add(str(index))
        leaf = json.loads(event["leaf"])
        what = f"{where}: custody event at leaf {index} ({leaf.get('action')})"
        proof = proofs.get(str(index))
        if proof is None:
            report.problems.append(f"{what}: the package carries no SM3 inclusion proof for it in the SM tree")
            continue
        if tree is None:
            continue
        size, root = tree
        try:
            if not isinstance(proof, list):
                raise Refused("its SM proof is not a list of hashes")
            hashes = [hash32(p, f"SM proof hash {n}") for n, p in enumerate(proof)]
        except Refused as exc:
            report.problems.append(f"{what}: refused, {exc}: its SM3 inclusion proof does not hold against the SM "
                                   f"tree head (size {size})")
            continue
        problem = check_inclusion(SM3_TREE.leaf_hash(event["leaf"].encode("utf-8")), index, size, hashes, root,
                                  tree=SM3_TREE)
        if problem:
            report.problems.append(f"{what}: its SM3 inclusion proof does not hold against the SM tree head (size "
                                   f"{size}): {problem}")
    for extra in sorted(set(proofs) - listed, key=lambda k: (len(k), k)):
        report.problems.append(f"SM tree: a proof for leaf {extra}, which the package does not list")
    if tree is not None:
        report.notes.append(f"SM tree head (SM3, SM2) at size {tree[0]}: {len(listed)} custody leaves checked in it")
