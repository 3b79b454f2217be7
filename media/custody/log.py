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
from backend.core.models import Case, CustodyEvent, MerkleNode, TreeHead
from backend.core.times import utc_millis
from backend.core.uow import Services
from media.custody import head_stamps, merkle
from media.custody.encoding import canonical, fact_digest
from media.custody.keys import Signer, head_payload
from media.custody.timestamps import encode_token

PENDING = "fieldcase.pending_custody"
APPENDED = "fieldcase.custody_appended"  # leaves appended, told to the observer once committed
CUSTODY_LOCK_KEY = 0x6663_6375_7374  # "fccust"
HEAD_EVERY = 256
ISSUE_HEAD_JOB = "issue_tree_head"
DEVICE_HEAD = "device_head"  # a leaf naming where a device's chain ends: {device, seq, record_hash}
CASE_OPENED = "case_opened"  # a case's first server facts: {case, version, facts: {field: fact_digest}}
CASE_CHANGED = "case_changed"  # a change to them (a review step, a resolved conflict, a phone's case.update)
CASE_WITNESSED = "case_witnessed"  # facts of a case opened before case leaves existed, first seen at an export
CASE_ACTIONS = (CASE_OPENED, CASE_CHANGED, CASE_WITNESSED)
# A record whose content the server could not apply as signed, applied anyway and held for correction, and each
# correction of it (a phone's signed record.correct, or a reviewer's): {case, subject, subject_id, corrects, ...}.
# A package proves them, so its verifier knows which signed values a row may differ from, and why.
NEEDS_CORRECTION = "needs_correction"
CORRECTED = "corrected"
CORRECTION_ACTIONS = (NEEDS_CORRECTION, CORRECTED)
CASE_LEAVES = CASE_ACTIONS + CORRECTION_ACTIONS  # the leaves that name their case (CustodyEvent.case_id)
# The case's facts that only the server knows and a package presents (its status after review, its summary, whose
# it is): each change to one is bound by a case leaf when it happens, so a later edit of the row cannot pass for it.
CASE_FACTS = ("status", "summary", "institution_id", "region_code", "department_code")


def record(session: Session, action: str, evidence_id: str | None, actor: str, *, at: datetime,
           **details: Any) -> None:
    """Queue a custody event that happened `at`; it becomes a leaf when the transaction commits, or never."""
    leaf = {"action": action, "evidence_id": evidence_id, "actor": actor, "at": utc_millis(at),
            **{k: v for k, v in details.items() if v is not None}}
    commit_queue.enqueue(session, PENDING, (leaf, canonical(leaf).decode()))  # encoded here, not under the lock


def device_head(session: Session, actor: str, device_id: str, seq: int, record_hash: str, *,
                at: datetime) -> None:
    """Witness where a device's chain ends (PROTOCOL §8 `device_head`): a later cut in the ledger then disagrees
    with a signed leaf."""
    record(session, DEVICE_HEAD, None, actor, at=at, device=device_id, seq=seq, record_hash=record_hash)


def case_facts(session: Session, action: str, actor: str, case_id: str, version: int, facts: dict[str, Any], *,
               at: datetime) -> None:
    """Bind a case's server facts (its status after review, its summary) when they change, so that a package
    can prove them: the leaf carries a digest of each value (`fact_digest`), never the value itself."""
    if facts:
        record(session, action, None, actor, at=at, case=case_id, version=version,
               facts={name: fact_digest(value) for name, value in sorted(facts.items())})


def needs_correction(session: Session, actor: str, case_id: str, *, subject: str, subject_id: str, corrects: str,
                     fields: list[str], codes: list[str], at: datetime) -> None:
    """Bind that the record `corrects` was applied although the server could not match what it said (`codes`), so
    the row it made holds something else in `fields` until corrected."""
    record(session, NEEDS_CORRECTION, None, actor, at=at, case=case_id, subject=subject, subject_id=subject_id,
           corrects=corrects, fields=sorted(fields), codes=list(codes))


def corrected(session: Session, actor: str, case_id: str, *, subject: str, subject_id: str, corrects: str | None,
              values: dict[str, Any], reason: str, at: datetime, op: str | None = None) -> None:
    """Bind a correction: a digest of each corrected value (`fact_digest`), the reason, and, for a phone's, the op of
    its signed record.correct (whose values a verifier then holds the row against)."""
    record(session, CORRECTED, None, actor, at=at, case=case_id, subject=subject, subject_id=subject_id,
           corrects=corrects, op=op, reason=reason,
           fields={name: fact_digest(value) for name, value in sorted(values.items())})


def case_fact_values(case: Case, names: tuple[str, ...] = CASE_FACTS) -> dict[str, Any]:
    return {name: getattr(case, name) for name in names if name in CASE_FACTS}


def case_events(session: Session, case_id: str, below: int | None = None) -> list[CustodyEvent]:
    """The case's leaves (its facts, and what needed and got correction), oldest first (among the first `below`
    leaves, when given)."""
    stmt = select(CustodyEvent).where(CustodyEvent.case_id == case_id)
    if below is not None:
        stmt = stmt.where(CustodyEvent.leaf_index < below)
    return list(session.scalars(stmt.order_by(CustodyEvent.leaf_index)))


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
                           "case_id": leaf.get("case") if leaf["action"] in CASE_LEAVES else None,
                           "actor": leaf["actor"], "at": datetime.fromisoformat(leaf["at"].replace("Z", "+00:00")),
                           "leaf": text_})
    insert_rows(session, CustodyEvent, event_rows)
    insert_rows(session, MerkleNode, node_rows)
    commit_queue.enqueue(session, APPENDED, len(leaves))
    end = start + len(leaves)
    # A head at every multiple of HEAD_EVERY the append reached, at exactly that size however many leaves one
    # commit appends: so a periodic head that is missing was deleted (`fieldcase verify`).
    for size in range((start // HEAD_EVERY + 1) * HEAD_EVERY, end + 1, HEAD_EVERY):
        runner, signer = services.jobs, services.signer
        if runner is not None and runner.deferred:
            # A worker signs it: the append (and the lock it holds) stays short. The nodes a head of this
            # size needs are complete subtrees, stored for good, so the head can be made after the commit.
            runner.submit(session, ISSUE_HEAD_JOB, size)
        elif signer is not None:
            _issue(session, signer, size, services.clock(), nodes)


@commit_queue.after_commit(APPENDED)
def _appended(counts: list[int], database: commit_queue.Database) -> None:
    """Count leaves once their transaction has committed: a push that lost a race appends again when it runs
    again, and only the run that committed is counted."""
    database.services.observer.custody_leaves(sum(counts))


def _issue(session: Session, signer: Signer, size: int, now: datetime,
           nodes: dict[tuple[int, int], bytes] | None = None) -> TreeHead:
    """The head at `size`, signed as of `now`, unless one exists."""
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
    timestamp = utc_millis(now)
    head = TreeHead(tree_size=size, root_hash=root.hex(), timestamp=timestamp, key_id=signer.key_id,
                    signature=signer.sign(head_payload(size, root.hex(), timestamp)))
    session.add(head)
    session.flush()
    head_stamps.issued(session, size)  # its RFC 3161 timestamp is asked for once this transaction commits
    return head


def head_dict(head: TreeHead, token: bytes | None = None) -> dict[str, Any]:
    """A head as served: its signed fields, and its RFC 3161 token (`timestamp_token`, standard base64 of the
    DER) once it has one."""
    served = {"tree_size": head.tree_size, "root_hash": head.root_hash, "timestamp": head.timestamp,
              "signature": head.signature, "key_id": head.key_id}
    if token is not None:
        served["timestamp_token"] = encode_token(token)
    return served


def _served(session: Session, head: TreeHead) -> dict[str, Any]:
    return head_dict(head, head_stamps.token_of(session, head.tree_size))


def issue_head(session: Session, signer: Signer, size: int, *, now: datetime) -> dict[str, Any]:
    """Issue (and store) the head at `size` unless one exists; what the periodic tree-head job runs."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CUSTODY_LOCK_KEY})
    if not 0 <= size <= _size(session):
        raise Invalid(f"no tree of size {size} yet", errors={"tree_size": ["out of range"]})
    return _served(session, _issue(session, signer, size, now))


def latest_head(session: Session, signer: Signer, *, now: datetime) -> dict[str, Any]:
    """Issue (and store) a head for the tree as it is now, unless one exists for this size."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CUSTODY_LOCK_KEY})
    return _served(session, _issue(session, signer, _size(session), now))


def issued_head(session: Session, tree_size: int) -> TreeHead:
    """The head issued at exactly `tree_size`, or a 404 that says where the issued ones are.

    Heads are issued at the sizes asked for (`latest_head`), at every multiple of HEAD_EVERY and by the periodic
    job, never for an arbitrary past size on request: each head is kept for good and timestamped by the TSA, so
    one per size asked for would let any caller grow both without bound. A client needs no head of its own choosing
    anyway: it checks a head it was given, and proves any two issued heads consistent (`consistency`). So the
    answer names the nearest issued sizes below and above (`errors.nearest_issued`), the ones to ask for instead.
    """
    head = session.get(TreeHead, tree_size)
    if head is not None:
        return head
    below = session.scalar(select(func.max(TreeHead.tree_size)).where(TreeHead.tree_size < tree_size))
    above = session.scalar(select(func.min(TreeHead.tree_size)).where(TreeHead.tree_size > tree_size))
    nearest = [size for size in (below, above) if size is not None]
    current = _size(session)
    why = (f"the tree has {current} leaves" if tree_size > current
           else "heads are issued only at the sizes they were asked for and at every multiple of 256")
    hint = (f"; the nearest issued sizes are {' and '.join(map(str, nearest))}" if nearest else "")
    raise NotFound(f"no tree head was issued at size {tree_size} ({why}){hint}",
                   errors={"tree_size": ["no head was issued at this size"], "nearest_issued": nearest})


def stored_head(session: Session, tree_size: int) -> dict[str, Any]:
    return _served(session, issued_head(session, tree_size))


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
