"""Checking the whole custody log from its stored events alone (`fieldcase custody verify`).

The tree is recomputed in one streaming pass, keeping only its right frontier in memory, and held against the
stored nodes, every signed tree head's root and signature, and the consistency between successive heads; every
head's RFC 3161 timestamp token is checked against the head (media.custody.timestamps.check_head_token).

Given the SM2 keys (`sm_keys`: FIELDCASE_CUSTODY_SUITES=intl,sm), the same pass recomputes the SM tree (SM3) from
the same events and holds it against its stored nodes and its SM2-signed heads the same way; its problems are
named "SM tree ..." (and "leaf N: ... SM tree"), and an intl head the SM tree covers but has no SM head at its size is
one too. Leaves the SM tree does not reach yet (`fieldcase custody build-sm-tree` not run) are one problem. Every SM
head's RFC 3161 token is checked against it as an intl head's is, its imprint SM3 (media.custody.head_stamps).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.errors import TimestampFailed
from backend.core.models import CustodyEvent, MerkleNode, SmMerkleNode, SmTreeHead, TreeHead
from media.custody import head_stamps, merkle
from media.custody.encoding import canonical
from media.custody.heads import head_dict
from media.custody.keys import verify_head, verify_sm_head
from media.custody.log import DEVICE_HEAD
from media.custody.proofs import verify_consistency
from media.custody.sm_tree import sm_head_dict
from media.custody.timestamps import check_head_token
from media.custody.trees import consistency, sm_size


@dataclass
class VerifyReport:
    leaves: int = 0
    heads: int = 0
    timestamped: int = 0  # heads whose RFC 3161 token checks
    sm_leaves: int = 0  # leaves of the SM tree held against the events (when its keys were given)
    sm_heads: int = 0
    sm_timestamped: int = 0  # SM heads whose RFC 3161 token (SM3 imprint) checks
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _frontier_root(frontier: list[tuple[int, bytes]], tree: merkle.TreeHashing = merkle.SHA256_TREE) -> bytes:
    """Root of the tree whose complete subtrees are `frontier` (largest first), by the RFC's split rule."""
    acc = frontier[-1][1]
    for _, digest in reversed(frontier[:-1]):
        acc = tree.node_hash(digest, acc)
    return acc


def _push(frontier: list[tuple[int, bytes]], digest: bytes, tree: merkle.TreeHashing) -> None:
    frontier.append((1, digest))
    while len(frontier) > 1 and frontier[-1][0] == frontier[-2][0]:
        (size, right), (_, left) = frontier.pop(), frontier.pop()
        frontier.append((size * 2, tree.node_hash(left, right)))


@dataclass
class _SmPass:
    """The SM tree recomputed alongside the intl one, in the same pass over the events."""

    size: int  # how many leaves its stored nodes hold
    heads: dict[int, SmTreeHead]
    frontier: list[tuple[int, bytes]] = field(default_factory=list)
    roots: dict[int, bytes] = field(default_factory=dict)

    def add(self, index: int, digest: bytes, stored: bytes | None, report: VerifyReport) -> None:
        if index < self.size:
            if stored is None:
                report.problems.append(f"leaf {index}: missing from the SM tree (its SM3 node was deleted)")
            elif stored != digest:
                report.problems.append(f"leaf {index}: its SM3 hash does not match the SM tree (altered or moved)")
            report.sm_leaves += 1
        _push(self.frontier, digest, merkle.SM3_TREE)
        if index + 1 in self.heads:
            self.roots[index + 1] = _frontier_root(self.frontier, merkle.SM3_TREE)


def verify_log(session: Session, keys: Mapping[str, bytes], *,
               tsa_trust: Sequence[x509.Certificate] = (), batch: int = 5000,
               sm_keys: Mapping[str, bytes] | None = None) -> VerifyReport:
    """Recompute the tree from the stored events alone and hold it against the nodes and the signed heads.

    Streams the events once, keeping only the right frontier of the tree in
    memory; each event's canonical form, columns and leaf hash are checked,
    every stored head's root and signature, and consistency between heads.
    `keys` is the keyring (key id to raw 32-byte Ed25519 public key): each
    head is checked with the key its `key_id` names. Each stored
    timestamp token must be over its head, and chain to `tsa_trust` if given. With `sm_keys` (SM2 key id to
    its 65-byte point), the SM tree and its heads are checked too.
    """
    report = VerifyReport()
    heads = list(session.scalars(select(TreeHead).order_by(TreeHead.tree_size)))
    head_at = {h.tree_size: h for h in heads}
    sm = None
    if sm_keys is not None:
        sm = _SmPass(size=sm_size(session),
                     heads={h.tree_size: h for h in session.scalars(select(SmTreeHead).order_by(SmTreeHead.tree_size))})
    frontier: list[tuple[int, bytes]] = []  # (subtree size, hash), sizes strictly decreasing
    expected = 0
    roots: dict[int, bytes] = {}
    for row, stored, sm_stored in _stream(session, batch, sm is not None):
        if row.leaf_index != expected:
            report.problems.append(f"leaf {expected}: missing (the next stored event is leaf {row.leaf_index})")
            expected = row.leaf_index
        problem = _check_event(row)
        if problem:
            report.problems.append(f"leaf {row.leaf_index}: {problem}")
        digest = merkle.leaf_hash(row.leaf.encode())
        if stored != digest:
            report.problems.append(f"leaf {row.leaf_index}: its hash does not match the tree (altered or moved)")
        _push(frontier, digest, merkle.SHA256_TREE)
        if sm is not None:
            sm.add(row.leaf_index, merkle.SM3_TREE.leaf_hash(row.leaf.encode()), sm_stored, report)
        expected += 1
        report.leaves += 1
        if expected in head_at:
            roots[expected] = _frontier_root(frontier)
    _check_timestamps(session, heads, tsa_trust, report)
    previous = None
    for head in heads:
        report.heads += 1
        key = keys.get(head.key_id)
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
    if sm is not None and sm_keys is not None:
        _check_sm(session, sm, sm_keys, heads, expected, report)
        _check_timestamps(session, [sm.heads[size] for size in sorted(sm.heads)], tsa_trust, report, "sm")
    return report


def _check_sm(session: Session, sm: _SmPass, keys: Mapping[str, bytes], heads: list[TreeHead], leaves: int,
              report: VerifyReport) -> None:
    """The SM tree's heads (signature, root, consistency with the one before), and that it is in step with the log:
    every intl head it covers has an SM head at its size, and it holds every leaf."""
    if sm.size > leaves:
        report.problems.append(f"SM tree: its nodes hold {sm.size} leaves, the log {leaves}: events were deleted "
                               "from the end of the log")
    elif sm.size < leaves:
        report.problems.append(f"SM tree: it holds {sm.size} of the log's {leaves} leaves: run `fieldcase custody "
                               "build-sm-tree` to build it over the rest")
    previous = None
    for size, head in sorted(sm.heads.items()):
        report.sm_heads += 1
        key = keys.get(head.key_id)
        if key is None:
            report.problems.append(f"SM tree head {size}: signed with SM2 key {head.key_id}, not in the keyring")
        elif not verify_sm_head(key, sm_head_dict(head)):
            report.problems.append(f"SM tree head {size}: bad SM2 signature")
        if size == 0:
            if head.root_hash != merkle.SM3_TREE.empty_root.hex():
                report.problems.append("SM tree head 0: its root is not the empty tree's (SM3 of nothing)")
            continue
        root = sm.roots.get(size)
        if root is None:
            report.problems.append(f"SM tree head {size}: the log has only {leaves} leaves")
            continue
        if root.hex() != head.root_hash:
            report.problems.append(f"SM tree head {size}: the events do not give its root")
        if previous is not None and size <= sm.size:
            proof = [bytes.fromhex(p) for p in consistency(session, previous.tree_size, size, "sm")["proof"]]
            if not verify_consistency(previous.tree_size, size, bytes.fromhex(previous.root_hash),
                                      bytes.fromhex(head.root_hash), proof, tree=merkle.SM3_TREE):
                report.problems.append(f"SM tree heads {previous.tree_size} and {size}: not consistent")
        previous = head
    for head in heads:
        if head.tree_size <= sm.size and head.tree_size not in sm.heads:
            report.problems.append(f"SM tree head {head.tree_size}: missing: the tree head at this size has no SM "
                                   "head, though the SM tree reaches it (deleted, or signed where no SM key was "
                                   "loaded: `fieldcase custody build-sm-tree` signs the missing ones)")


def _check_timestamps(session: Session, heads: list[TreeHead] | list[SmTreeHead], trust: Sequence[x509.Certificate],
                      report: VerifyReport, suite: str = "intl") -> None:
    """Every stored token against its head (of the tree of `suite`): a token altered, or moved from another head,
    is named by size."""
    tree = head_stamps.TREES[suite]
    stamps = {row.tree_size: row for row in session.scalars(select(tree.tokens))}
    for head in heads:
        row = stamps.get(head.tree_size)
        if row is None:
            continue
        signed = {"tree_size": head.tree_size, "root_hash": head.root_hash, "timestamp": head.timestamp}
        try:
            facts = check_head_token(bytes(row.token), signed, trust, tree.imprint)
        except TimestampFailed as exc:
            report.problems.append(f"{tree.name} {head.tree_size}: its RFC 3161 timestamp token does not check: "
                                   f"{exc.message}")
            continue
        if facts.gen_time != row.gen_time or facts.tsa[:1000] != row.tsa or str(facts.serial) != row.serial:
            report.problems.append(f"{tree.name} {head.tree_size}: the stored time, TSA or serial of its timestamp "
                                   "disagrees with its token")
            continue
        if suite == "intl":
            report.timestamped += 1
        else:
            report.sm_timestamped += 1


def _consistent(first: TreeHead, second: TreeHead, proof: list[bytes]) -> bool:
    return verify_consistency(first.tree_size, second.tree_size, bytes.fromhex(first.root_hash),
                              bytes.fromhex(second.root_hash), proof)


def _stream(session: Session, batch: int,
            sm: bool = False) -> Iterator[tuple[CustodyEvent, bytes | None, bytes | None]]:
    """Events in leaf order with their stored leaf-level hashes (and the SM tree's, with `sm`), a batch at a time
    (constant memory)."""
    after = -1
    while True:
        rows = list(session.scalars(select(CustodyEvent).where(CustodyEvent.leaf_index > after)
                                    .order_by(CustodyEvent.leaf_index).limit(batch)))
        if not rows:
            return
        hashes = dict(session.execute(select(MerkleNode.index, MerkleNode.hash).where(
            MerkleNode.level == 0, MerkleNode.index.between(rows[0].leaf_index, rows[-1].leaf_index))).all())
        sm_hashes = dict(session.execute(select(SmMerkleNode.index, SmMerkleNode.hash).where(
            SmMerkleNode.level == 0, SmMerkleNode.index.between(rows[0].leaf_index, rows[-1].leaf_index))).all()) \
            if sm else {}
        for row in rows:
            stored, sm_stored = hashes.get(row.leaf_index), sm_hashes.get(row.leaf_index)
            yield (row, bytes(stored) if stored is not None else None,
                   bytes(sm_stored) if sm_stored is not None else None)
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
