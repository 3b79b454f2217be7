"""The custody tree: recomputed from its stored events by `media.custody.verify.verify_log` (what
`fieldcase custody verify` runs: events missing, altered, moved or not canonical; every signed head's root,
signature, timestamp token and consistency with the one before), and the end of the log held against its stored nodes.

`verify_log` stops at the last stored event, so events deleted from the end of the log, after the newest signed
head, leave no gap it could see. The Merkle nodes do: each leaf's hash is stored as a level-0 node when it is
appended, so a node past the last event names leaves that were there once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.casework.system_audit.report import Problem
from backend.core.models import CustodyEvent, MerkleNode
from media.custody.verify import verify_log

_SUBJECT = re.compile(r"^(leaf|tree head|tree heads) (\d+)(?: and (\d+))?: ")


def _problem(text: str) -> Problem:
    """`verify_log` names its subject first ("leaf 7: ...", "tree head 256: ...", "tree heads 256 and 512: ...")."""
    match = _SUBJECT.match(text)
    if match is None:
        return Problem("tree", "log", "", text)
    kind = "leaf" if match.group(1) == "leaf" else "tree_head"
    return Problem("tree", kind, match.group(3) or match.group(2), text[match.end():])


def log_size(session: Session) -> int:
    """The log's size by its stored events: one past the highest leaf index."""
    last = session.scalar(select(func.max(CustodyEvent.leaf_index)))
    return 0 if last is None else last + 1


def check_tree(session: Session, keys: Mapping[str, Ed25519PublicKey], tsa_trust: Sequence[x509.Certificate],
               counts) -> Iterator[Problem]:
    report = verify_log(session, keys, tsa_trust=tsa_trust)
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
