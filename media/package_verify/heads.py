"""The custody tree head a package cites: its size and root, and its signature with the custody key (the one
given by the person verifying, or, which proves only self-consistency, the one inside the package)."""

from __future__ import annotations

import binascii
from typing import Any

import rfc8785

from backend.core.crypto import INTL
from media.custody.merkle import SHA256_TREE
from media.custody.proofs import check_inclusion
from media.package_verify.report import PackageReport
from media.package_verify.spelling import Refused, b64d, hash32, key_id, load_key, typed_key


def head_tree(head: dict[str, Any], report: PackageReport) -> tuple[int, bytes] | None:
    """The tree head's size and root, or None (reported) when they are not a size and a 32-byte hash."""
    size = head["tree_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        report.problems.append(f"tree head: its tree_size {size!r} is not a non-negative integer, so no custody "
                               "event can be proven against it")
        return None
    try:
        return size, hash32(head["root_hash"], "its root_hash")
    except Refused as exc:
        report.problems.append(f"tree head (size {size}): refused, {exc}, so no custody event can be proven "
                               "against it")
        return None


def custody_key(manifest: dict[str, Any], public_key: str | None,
                report: PackageReport) -> bytes | None:
    """The key that must have signed the tree head and the index: the one given on the command line, or (which
    proves only that the package is self-consistent) the one inside the package, raw. None, reported, if unusable."""
    custody = manifest["custody"]
    if public_key:
        report.key_source = "command line"
        typed = typed_key(public_key)
        try:
            key = load_key(typed)
        except (ValueError, binascii.Error) as exc:
            report.problems.append(f"the public key given on the command line is not a base64url Ed25519 key ({exc})")
            return None
        report.notes.append(f"tree head checked against the key given on the command line (key_id {key_id(typed)})")
        if custody.get("public_key") and custody["public_key"] != typed:
            report.notes.append(f"note: the package names another custody key (key_id {custody.get('key_id')})")
    else:
        report.key_source = "package"
        try:
            key = load_key(custody["public_key"])
        except (ValueError, binascii.Error) as exc:
            report.problems.append(f"the custody public key in the package is not a valid Ed25519 key ({exc})")
            return None
        report.notes.append(f"WARNING: tree head checked against the key inside the package (key_id "
                            f"{key_id(custody['public_key'])}): this only shows the package is self-consistent, "
                            "not that the server issued it; pass --public-key with the server's published key "
                            "(GET /api/v1/custody/public-key)")
        if key_id(custody["public_key"]) != custody.get("key_id"):
            report.problems.append("the package's custody key_id does not match its public key")
    return key


def check_tree_head(manifest: dict[str, Any], key: bytes | None, given: bool,
                    report: PackageReport) -> None:
    head = manifest["custody"]["tree_head"]
    if key is None:
        return
    signed = rfc8785.dumps({"tree_size": head["tree_size"], "root_hash": head["root_hash"],
                            "timestamp": head["timestamp"]})
    try:
        signature = b64d(head["signature"])
        if len(signature) != 64:
            raise Refused(f"{len(signature)} bytes, not the 64 of Ed25519")
    except Refused as exc:
        report.problems.append(f"tree head (size {head['tree_size']}): refused, its signature is {exc}, so it was "
                               "not checked")
        return
    if not INTL.verify(key, signed, signature):
        report.problems.append(f"tree head (size {head['tree_size']}): its signature does not verify with the "
                               f"{'given' if given else 'package'} key (forged or altered head, or another "
                               "server's key)")


def inclusion_holds(event: dict[str, Any], where: str, leaf: dict[str, Any], tree: tuple[int, bytes],
            report: PackageReport) -> bool:
    """Whether the event's inclusion proof holds against the tree head (RFC 9162 §2.1.3.2); problems reported."""
    size, root = tree
    index, text = event["leaf_index"], event["leaf"]
    what = f"{where}: custody event at leaf {index} ({leaf.get('action')})"
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        report.problems.append(f"{what}: refused, its leaf_index is not a non-negative integer")
        return False
    if not isinstance(event["proof"], list):
        report.problems.append(f"{what}: refused, its proof is not a list of hashes")
        return False
    try:
        proof = [hash32(p, f"proof hash {n}") for n, p in enumerate(event["proof"])]
    except Refused as exc:
        report.problems.append(f"{what}: refused, {exc}: its inclusion proof does not hold against the tree head "
                               f"(size {size})")
        return False
    problem = check_inclusion(SHA256_TREE.leaf_hash(text.encode("utf-8")), index, size, proof, root)
    if problem:
        report.problems.append(f"{what}: its inclusion proof does not hold against the tree head (size {size}): "
                               f"{problem}")
        return False
    return True
