"""The sealed index of a package (PROTOCOL "Evidence packages, as built"): every member of the ZIP with its
SHA-256 and size, signed with the custody key and naming the tree head the package cites.

Without it a package proves its records, files and custody events, but not itself: a member could be added, an
evidence list edited or removed, a file renamed. With it, any change to the ZIP's members is caught offline and
named. The index is the last member; it does not list itself.

The signature is Ed25519 (the custody key, `key_id` as for tree heads) over the RFC 8785 canonical JSON of the
index without its `signature` member.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from backend.core.crypto import digests
from media.custody.encoding import canonical
from media.custody.keys import Signer

INDEX_NAME = "package-index.json"
INDEX_FORMAT = "fieldcase-package-index"
INDEX_VERSION = 1
HEAD_FIELDS = ("tree_size", "root_hash", "timestamp", "key_id")


def signed_part(index: dict[str, Any]) -> bytes:
    """The bytes the index signature covers: everything but the signature, canonical."""
    return canonical({k: v for k, v in index.items() if k != "signature"})


def seal(signer: Signer, *, package_id: str, case_id: str, head: dict[str, Any],
         documents: Iterable[tuple[str, bytes]], files: Iterable[tuple[str, str, int]]) -> bytes:
    """The index of a package whose in-memory members are `documents` (name, bytes) and whose files are
    (name, sha256, size), signed; as the bytes to store."""
    members = [{"name": name, "sha256": digests.sha256_hex(data), "size": len(data)}
               for name, data in documents]
    members += [{"name": name, "sha256": sha256, "size": size} for name, sha256, size in files]
    index: dict[str, Any] = {
        "format": INDEX_FORMAT, "version": INDEX_VERSION, "package": package_id, "case_id": case_id,
        "tree_head": {k: head[k] for k in HEAD_FIELDS},
        "members": sorted(members, key=lambda m: m["name"]),
        "algorithm": "Ed25519", "key_id": signer.key_id,
    }
    index["signature"] = signer.sign(signed_part(index))
    return json.dumps(index, ensure_ascii=False, indent=1).encode("utf-8")
