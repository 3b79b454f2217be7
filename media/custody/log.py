"""The custody log (PROTOCOL §8): every event that touches evidence is a leaf of one Merkle tree.

Events are queued on the session and appended in a `before_commit` hook, the
way the change feed is: leaf indexes are handed out under a lock held only
for the append itself (a transaction-level advisory lock on PostgreSQL;
SQLite serialises writers), so two requests never share an index and a
failed transaction leaves no hole. The tree is stored as the hashes of its
complete subtrees (media.custody.merkle), so a root or a proof is O(log n) reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, tuple_
from sqlalchemy.orm import Session

from backend.core import commit_queue
from backend.core.bulk import insert_rows
from backend.core.errors import Invalid, NotFound
from backend.core.models import CustodyEvent, MerkleNode, TreeHead, utcnow
from backend.core.times import utc_millis
from backend.core.uow import Services
from media.custody import merkle
from media.custody.encoding import canonical
from media.custody.keys import Signer, head_payload

PENDING = "fieldcase.pending_custody"
CUSTODY_LOCK_KEY = 0x6663_6375_7374  # "fccust"
HEAD_EVERY = 256
ISSUE_HEAD_JOB = "issue_tree_head"
DEVICE_HEAD = "device_head"  # a leaf naming where a device's chain ends: {device, seq, record_hash}


def record(session: Session, action: str, evidence_id: str | None, actor: str, *,
           at: datetime | None = None, **details: Any) -> None:
    """Queue a custody event; it becomes a leaf when the transaction commits, or never."""
    leaf = {"action": action, "evidence_id": evidence_id, "actor": actor, "at": utc_millis(at or utcnow()),
            **{k: v for k, v in details.items() if v is not None}}
    commit_queue.enqueue(session, PENDING, (leaf, canonical(leaf).decode()))  # encoded here, not under the lock


def device_head(session: Session, actor: str, device_id: str, seq: int, record_hash: str, *,
                at: datetime | None = None) -> None:
    """Witness where a device's chain ends (PROTOCOL §8 `device_head`): a later cut in the ledger then disagrees
    with a signed leaf."""
    record(session, DEVICE_HEAD, None, actor, at=at, device=device_id, seq=seq, record_hash=record_hash)


def latest_device_head(session: Session, device_id: str, below: int | None = None) -> CustodyEvent | None:
    """The newest device_head leaf of the device (among the first `below` leaves, when given)."""
    stmt = select(CustodyEvent).where(CustodyEvent.device_id == device_id)
    if below is not None:
        stmt = stmt.where(CustodyEvent.leaf_index < below)
    return session.scalars(stmt.order_by(CustodyEvent.leaf_index.desc()).limit(1)).first()


def _size(session: Session) -> int:
    last = session.scalar(select(func.max(CustodyEvent.leaf_index)))
    return 0 if last is None else last + 1


def _nodes(session: Session, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    keys = sorted(set(keys))
    found: dict[tuple[int, int], bytes] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        rows = session.execute(select(MerkleNode.level, MerkleNode.index, MerkleNode.hash)
                               .where(tuple_(MerkleNode.level, MerkleNode.index).in_(chunk)))
        found.update({(r.level, r.index): bytes(r.hash) for r in rows})
    return found


def _getter(nodes: dict[tuple[int, int], bytes]):
    def get(level: int, index: int) -> bytes:
        try:
            return nodes[(level, index)]
        except KeyError:
            raise LookupError(f"merkle node ({level}, {index}) is missing from the store") from None
    return get


@commit_queue.on_commit(order=10)  # before the feed (20): one lock order in every process
def _append(session: Session, services: Services) -> None:
    leaves = commit_queue.take(session, PENDING)
    if not leaves:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CUSTODY_LOCK_KEY})
    start = _size(session)
    needed = set().union(*(merkle.nodes_needed_for_append(i) for i in range(start, start + len(leaves))))
    nodes = _nodes(session, needed)
    get = _getter(nodes)
    event_rows, node_rows = [], []
    for offset, (leaf, text_) in enumerate(leaves):
        index = start + offset
        for level, idx, digest in merkle.new_nodes(index, merkle.leaf_hash(text_.encode()), get):
            nodes[(level, idx)] = digest
            node_rows.append({"level": level, "index": idx, "hash": digest})
        event_rows.append({"leaf_index": index, "evidence_id": leaf.get("evidence_id"), "action": leaf["action"],
                           "device_id": leaf.get("device") if leaf["action"] == DEVICE_HEAD else None,
                           "actor": leaf["actor"], "at": datetime.fromisoformat(leaf["at"].replace("Z", "+00:00")),
                           "leaf": text_})
    insert_rows(session, CustodyEvent, event_rows)
    insert_rows(session, MerkleNode, node_rows)
    end = start + len(leaves)
    if start // HEAD_EVERY != end // HEAD_EVERY:
        runner, signer = services.jobs, services.signer
        if runner is not None and runner.deferred:
            # A worker signs it: the append (and the lock it holds) stays short. The nodes a head of this
            # size needs are complete subtrees, stored for good, so the head can be made after the commit.
            runner.submit(session, ISSUE_HEAD_JOB, end)
        elif signer is not None:
            _issue(session, signer, end, nodes)


def _issue(session: Session, signer: Signer, size: int, nodes: dict[tuple[int, int], bytes] | None = None) -> TreeHead:
    existing = session.get(TreeHead, size)
    if existing is not None:
        return existing
    if size == 0:
        root = merkle.EMPTY_ROOT
    else:
        have = nodes or {}
        missing = merkle.nodes_needed_for_root(size) - set(have)
        have = {**have, **_nodes(session, missing)}
        root = merkle.tree_root(size, _getter(have))
    timestamp = utc_millis(utcnow())
    head = TreeHead(tree_size=size, root_hash=root.hex(), timestamp=timestamp, key_id=signer.key_id,
                    signature=signer.sign(head_payload(size, root.hex(), timestamp)))
    session.add(head)
    session.flush()
    return head


def head_dict(head: TreeHead) -> dict[str, Any]:
    return {"tree_size": head.tree_size, "root_hash": head.root_hash, "timestamp": head.timestamp,
            "signature": head.signature, "key_id": head.key_id}


def issue_head(session: Session, signer: Signer, size: int) -> dict[str, Any]:
    """Issue (and store) the head at `size` unless one exists; what the periodic tree-head job runs."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CUSTODY_LOCK_KEY})
    if not 0 <= size <= _size(session):
        raise Invalid(f"no tree of size {size} yet", errors={"tree_size": ["out of range"]})
    return head_dict(_issue(session, signer, size))


def latest_head(session: Session, signer: Signer) -> dict[str, Any]:
    """Issue (and store) a head for the tree as it is now, unless one exists for this size."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CUSTODY_LOCK_KEY})
    return head_dict(_issue(session, signer, _size(session)))


def stored_head(session: Session, tree_size: int) -> dict[str, Any]:
    head = session.get(TreeHead, tree_size)
    if head is None:
        raise NotFound(f"no tree head was issued at size {tree_size}")
    return head_dict(head)


def _check_size(session: Session, size: int, what: str) -> None:
    current = _size(session)
    if size < 1 or size > current:
        raise Invalid(f"{what} must be between 1 and the tree's size, {current}", errors={what: ["out of range"]})


def inclusion(session: Session, leaf_index: int, tree_size: int) -> dict[str, Any]:
    _check_size(session, tree_size, "tree_size")
    if not 0 <= leaf_index < tree_size:
        raise Invalid("leaf_index must be below tree_size", errors={"leaf_index": ["out of range"]})
    nodes = _nodes(session, merkle.nodes_needed_for_inclusion(leaf_index, tree_size))
    proof = merkle.inclusion_proof(leaf_index, tree_size, _getter(nodes))
    return {"leaf_index": leaf_index, "tree_size": tree_size, "proof": [p.hex() for p in proof]}


def consistency(session: Session, first: int, second: int) -> dict[str, Any]:
    _check_size(session, second, "second")
    if not 1 <= first <= second:
        raise Invalid("first must be between 1 and second", errors={"first": ["out of range"]})
    nodes = _nodes(session, merkle.nodes_needed_for_consistency(first, second))
    proof = merkle.consistency_proof(first, second, _getter(nodes))
    return {"first": first, "second": second, "proof": [p.hex() for p in proof]}


def event_dict(row: CustodyEvent) -> dict[str, Any]:
    return {"leaf_index": row.leaf_index, "leaf": row.leaf, **json.loads(row.leaf)}


def events_for(session: Session, evidence_id: str) -> list[dict[str, Any]]:
    rows = session.scalars(select(CustodyEvent).where(CustodyEvent.evidence_id == evidence_id)
                           .order_by(CustodyEvent.leaf_index))
    return [event_dict(r) for r in rows]
