"""The custody tree: recomputed from its stored events by `media.custody.verify.verify_log` (what
`fieldcase custody verify` runs: events missing, altered, moved or not canonical; every signed head's root,
signature, timestamp token and consistency with the one before), and the end of the log held against its stored nodes.

`verify_log` stops at the last stored event, so events deleted from the end of the log, after the newest signed
head, leave no gap it could see. The Merkle nodes do: each leaf's hash is stored as a level-0 node when it is
appended, so a node past the last event names leaves that were there once.

With the SM tree's keys (FIELDCASE_CUSTODY_SUITES=intl,sm) `verify_log` recomputes it in the same pass and checks its
SM2 heads and their RFC 3161 tokens (SM3 imprints); its problems are named `sm_tree_head` (by size) or `sm_tree`, and
a leaf whose SM3 node disagrees is a `leaf` like any other.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence

from cryptography import x509
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.casework.system_audit.report import Problem
from backend.core.models import CustodyEvent, MerkleNode
from media.custody.verify import verify_log

_SUBJECT = re.compile(r"^(leaf|tree head|tree heads|SM tree head|SM tree heads) (\d+)(?: and (\d+))?: ")
_KINDS = {"leaf": "leaf", "tree head": "tree_head", "tree heads": "tree_head", "SM tree head": "sm_tree_head",
          "SM tree heads": "sm_tree_head"}


def _problem(text: str) -> Problem:
    """`verify_log` names its subject first ("leaf 7: ...", "tree head 256: ...", "tree heads 256 and 512: ...",
    "SM tree head 256: ...", "SM tree: ...")."""
    match = _SUBJECT.match(text)
    if match is None:
        if text.startswith("SM tree: "):
            return Problem("tree", "sm_tree", "", text[len("SM tree: "):])
        return Problem("tree", "log", "", text)
    return Problem("tree", _KINDS[match.group(1)], match.group(3) or match.group(2), text[match.end():])


def log_size(session: Session) -> int:
    """The log's size by its stored events: one past the highest leaf index."""
    last = session.scalar(select(func.max(CustodyEvent.leaf_index)))
    return 0 if last is None else last + 1


def check_tree(session: Session, keys: Mapping[str, bytes], tsa_trust: Sequence[x509.Certificate],
               counts, sm_keys: Mapping[str, bytes] | None = None) -> Iterator[Problem]:
    """`sm_keys`: the SM2 keys of the SM tree's heads (key id to point), when the deployment keeps that tree."""
    report = verify_log(session, keys, tsa_trust=tsa_trust, sm_keys=sm_keys)
    if sm_keys is not None:
        counts["sm_heads"] += report.sm_heads
    counts["leaves"] += report.leaves
    counts["heads"] += report.heads
    for text in report.problems:
        yield _problem(text)
    size = log_size(session)
    last_node = session.scalar(select(func.max(MerkleNode.index)).where(MerkleNode.level == 0))
    if last_node is not None and last_node >= size:
        yield Problem("tree", "leaf", str(size),
                      f"leaves {size}..{last_node} have stored Merkle nodes but no events: events were deleted from "
                      "the end of the log")
