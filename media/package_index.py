"""The sealed index of a package (PROTOCOL "Evidence packages, as built"): every member of the ZIP with its
SHA-256 and size, signed with the custody key and naming the tree head the package cites.

Without it a package proves its records, files and custody events, but not itself: a member could be added, an
evidence list edited or removed, a file renamed. With it, any change to the ZIP's members is caught offline and
named. The index is the last member; it does not list itself.

The signature is Ed25519 (the custody key, `key_id` as for tree heads) over the RFC 8785 canonical JSON of the
index without its `signature` member.

A package that carries the SM tree (`custody.sm`, FIELDCASE_CUSTODY_SUITES=intl,sm) is sealed in the national
algorithms too, so that its members are proven by SM2 and SM3 alone: each member also has its `sm3`, and the SM
custody key signs (`sm_signature`, SM2 with SM3) the index without `signature` and `sm_signature`. It signs first:
the Ed25519 signature then covers the SM fields as well, and a verifier that knows only Ed25519 checks it as before.
Any other package's index is byte for byte what it was before the SM seal existed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from backend.core.crypto import SM, digests
from media.custody.encoding import canonical
from media.custody.keys import Signer, SmSigner

INDEX_NAME = "package-index.json"
INDEX_FORMAT = "fieldcase-package-index"
INDEX_VERSION = 1
HEAD_FIELDS = ("tree_size", "root_hash", "timestamp", "key_id")
SIGNATURE, SM_SIGNATURE = "signature", "sm_signature"


def signed_part(index: dict[str, Any]) -> bytes:
    """The bytes the index signature covers: everything but the signature, canonical (the SM seal included)."""
    return canonical({k: v for k, v in index.items() if k != SIGNATURE})


def sm_signed_part(index: dict[str, Any]) -> bytes:
    """The bytes the SM2 seal covers: everything but both signatures, canonical."""
    return canonical({k: v for k, v in index.items() if k not in (SIGNATURE, SM_SIGNATURE)})


def sign(signer: Signer, index: dict[str, Any], sm: SmSigner | None = None) -> dict[str, Any]:
    """`index` (without signatures) signed: by `sm` first when given (the SM seal), then by the custody key over that
    too. The SM seal's fields are set here, so an index is never half sealed in SM2."""
    if sm is not None:
        index = {**index, "sm_algorithm": sm.algorithm, "sm_key_id": sm.key_id}
        index[SM_SIGNATURE] = sm.sign(sm_signed_part(index))
    return {**index, SIGNATURE: signer.sign(signed_part(index))}


def seal(signer: Signer, *, package_id: str, case_id: str, head: dict[str, Any],
         documents: Iterable[tuple[str, bytes]], files: Iterable[tuple[str, str, int, str | None]],
         sm: SmSigner | None = None) -> bytes:
    """The index of a package whose in-memory members are `documents` (name, bytes) and whose files are
    (name, sha256, size, sm3 or None), signed; as the bytes to store. With `sm` (the package carries the SM tree)
    every member also lists its SM3 where it is known (a file's is its item's: none for an item verified before
    the server computed SM3 and not backfilled), and the index is sealed in SM2 too."""
    members = [{"name": name, "sha256": digests.sha256_hex(data), "size": len(data),
                **({"sm3": SM.hexdigest(data)} if sm is not None else {})} for name, data in documents]
    members += [{"name": name, "sha256": sha256, "size": size,
                 **({"sm3": sm3} if sm is not None and sm3 is not None else {})} for name, sha256, size, sm3 in files]
    index: dict[str, Any] = {
        "format": INDEX_FORMAT, "version": INDEX_VERSION, "package": package_id, "case_id": case_id,
        "tree_head": {k: head[k] for k in HEAD_FIELDS},
        "members": sorted(members, key=lambda m: m["name"]),
        "algorithm": "Ed25519", "key_id": signer.key_id,
    }
    return json.dumps(sign(signer, index, sm), ensure_ascii=False, indent=1).encode("utf-8")
