"""Checking the whole custody log from its stored events alone (`fieldcase custody verify`).

The tree is recomputed in one streaming pass, keeping only its right frontier in memory, and held against the
stored nodes, every signed tree head's root and signature, and the consistency between successive heads; every
head's RFC 3161 timestamp token is checked against the head (media.custody.timestamps.check_head_token).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.errors import TimestampFailed
from backend.core.models import CustodyEvent, HeadTimestamp, MerkleNode, TreeHead
from media.custody import merkle
from media.custody.encoding import canonical
from media.custody.keys import verify_head
from media.custody.log import DEVICE_HEAD, consistency, head_dict
from media.custody.proofs import verify_consistency
from media.custody.timestamps import check_head_token


@dataclass
class VerifyReport:
    leaves: int = 0
    heads: int = 0
    timestamped: int = 0  # heads whose RFC 3161 token checks
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _frontier_root(frontier: list[tuple[int, bytes]]) -> bytes:
    """Root of the tree whose complete subtrees are `frontier` (largest first), by the RFC's split rule."""
    acc = frontier[-1][1]
    for _, digest in reversed(frontier[:-1]):
        acc = merkle.node_hash(digest, acc)
    return acc


def verify_log(session: Session, public_key: Ed25519PublicKey | Mapping[str, Ed25519PublicKey], *,
               tsa_trust: Sequence[x509.Certificate] = (), batch: int = 5000) -> VerifyReport:
    """Recompute the tree from the stored events alone and hold it against the nodes and the signed heads.

    Streams the events once, keeping only the right frontier of the tree in
    memory; each event's canonical form, columns and leaf hash are checked,
    every stored head's root and signature, and consistency between heads.
    `public_key` is one key for every head, or a keyring (key id to key):
    then each head is checked with the key its `key_id` names. Each stored
    timestamp token must be over its head, and chain to `tsa_trust` if given.
    """
    report = VerifyReport()
    heads = list(session.scalars(select(TreeHead).order_by(TreeHead.tree_size)))
    head_at = {h.tree_size: h for h in heads}
    frontier: list[tuple[int, bytes]] = []  # (subtree size, hash), sizes strictly decreasing
    expected = 0
    roots: dict[int, bytes] = {}
    for row, stored in _stream(session, batch):
        if row.leaf_index != expected:
            report.problems.append(f"leaf {expected}: missing (the next stored event is leaf {row.leaf_index})")
            expected = row.leaf_index
        problem = _check_event(row)
        if problem:
            report.problems.append(f"leaf {row.leaf_index}: {problem}")
        digest = merkle.leaf_hash(row.leaf.encode())
        if stored != digest:
            report.problems.append(f"leaf {row.leaf_index}: its hash does not match the tree (altered or moved)")
        frontier.append((1, digest))
        while len(frontier) > 1 and frontier[-1][0] == frontier[-2][0]:
            (size, right), (_, left) = frontier.pop(), frontier.pop()
            frontier.append((size * 2, merkle.node_hash(left, right)))
        expected += 1
        report.leaves += 1
        if expected in head_at:
            roots[expected] = _frontier_root(frontier)
    _check_timestamps(session, heads, tsa_trust, report)
    previous = None
    for head in heads:
        report.heads += 1
        key = public_key.get(head.key_id) if isinstance(public_key, Mapping) else public_key
        if key is None:
            report.problems.append(f"tree head {head.tree_size}: signed with key {head.key_id}, not in the keyring")
        elif not verify_head(key, head_dict(head)):
            report.problems.append(f"tree head {head.tree_size}: bad signature")
        if head.tree_size == 0:
            continue
        root = roots.get(head.tree_size)
        if root is None:
            report.problems.append(f"tree head {head.tree_size}: the log has only {expected} leaves")
        elif root.hex() != head.root_hash:
            report.problems.append(f"tree head {head.tree_size}: the events do not give its root")
        if previous is not None and root is not None:
            proof = consistency(session, previous.tree_size, head.tree_size)["proof"]
            if not _consistent(previous, head, [bytes.fromhex(p) for p in proof]):
                report.problems.append(f"tree heads {previous.tree_size} and {head.tree_size}: not consistent")
        previous = head
    return report


def _check_timestamps(session: Session, heads: list[TreeHead], trust: Sequence[x509.Certificate],
                      report: VerifyReport) -> None:
    """Every stored token against its head: a token altered, or moved from another head, is named by size."""
    stamps = {row.tree_size: row for row in session.scalars(select(HeadTimestamp))}
    for head in heads:
        row = stamps.get(head.tree_size)
        if row is None:
            continue
        try:
            facts = check_head_token(bytes(row.token), head_dict(head), trust)
        except TimestampFailed as exc:
            report.problems.append(f"tree head {head.tree_size}: its RFC 3161 timestamp token does not check: "
                                   f"{exc.message}")
            continue
        if facts.gen_time != row.gen_time or facts.tsa[:1000] != row.tsa or str(facts.serial) != row.serial:
            report.problems.append(f"tree head {head.tree_size}: the stored time, TSA or serial of its timestamp "
                                   "disagrees with its token")
            continue
        report.timestamped += 1


def _consistent(first: TreeHead, second: TreeHead, proof: list[bytes]) -> bool:
    return verify_consistency(first.tree_size, second.tree_size, bytes.fromhex(first.root_hash),
                              bytes.fromhex(second.root_hash), proof)


def _stream(session: Session, batch: int) -> Iterator[tuple[CustodyEvent, bytes | None]]:
    """Events in leaf order with their stored leaf-level hashes, a batch at a time (constant memory)."""
    after = -1
    while True:
        rows = list(session.scalars(select(CustodyEvent).where(CustodyEvent.leaf_index > after)
                                    .order_by(CustodyEvent.leaf_index).limit(batch)))
        if not rows:
            return
        hashes = dict(session.execute(select(MerkleNode.index, MerkleNode.hash).where(
            MerkleNode.level == 0, MerkleNode.index.between(rows[0].leaf_index, rows[-1].leaf_index))).all())
        for row in rows:
            stored = hashes.get(row.leaf_index)
            yield row, bytes(stored) if stored is not None else None
        after = rows[-1].leaf_index
        session.expunge_all()


def _check_event(row: CustodyEvent) -> str | None:
    try:
        leaf = json.loads(row.leaf)
    except ValueError:
        return "the leaf is not JSON"
    if canonical(leaf).decode() != row.leaf:
        return "the leaf is not in canonical form"
    for column in ("action", "evidence_id", "actor"):
        if leaf.get(column) != getattr(row, column):
            return f"column {column} disagrees with the leaf"
    if row.device_id != (leaf.get("device") if leaf.get("action") == DEVICE_HEAD else None):
        return "column device_id disagrees with the leaf"
    return None
