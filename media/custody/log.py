"""The custody log (PROTOCOL §8): every event that touches evidence is a leaf of one Merkle tree.

Events are queued on the session and appended in a `before_commit` hook, the
way the change feed is: leaf indexes are handed out under a lock held only
for the append itself (a transaction-level advisory lock on PostgreSQL;
SQLite serialises writers), so two requests never share an index and a
failed transaction leaves no hole. The tree is stored as the hashes of its
complete subtrees (media.custody.merkle), so a root or a proof is O(log n) reads.

This module holds the leaves: their kinds, the writers that queue them, the reads of them, and the hook that appends
them at commit, to the stored trees (media.custody.trees) and, with FIELDCASE_CUSTODY_SUITES=intl,sm, to the SM tree
too (media.custody.sm_tree), signing a head at every multiple of HEAD_EVERY it reaches (media.custody.heads).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from backend.core import commit_queue
from backend.core.bulk import insert_rows
from backend.core.models import Case, CustodyEvent, MerkleNode
from backend.core.times import utc_millis
from backend.core.uow import Services
from media.custody import merkle
from media.custody.encoding import canonical, fact_digest
from media.custody.heads import issue
from media.custody.sm_tree import append_sm
from media.custody.trees import CUSTODY_LOCK_KEY, getter, log_size, read_nodes

PENDING = "fieldcase.pending_custody"
APPENDED = "fieldcase.custody_appended"  # leaves appended, told to the observer once committed
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


@commit_queue.on_commit(order=10)  # before the feed (20): one lock order in every process
def _append(session: Session, services: Services) -> None:
    leaves = commit_queue.take(session, PENDING)
    if not leaves:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CUSTODY_LOCK_KEY})
    start = log_size(session)
    needed = set().union(*(merkle.nodes_needed_for_append(i) for i in range(start, start + len(leaves))))
    nodes = read_nodes(session, needed)
    get = getter(nodes)
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
    sm = getattr(services.signer, "sm", None)
    sm_nodes = append_sm(session, sm, start, [t for _, t in leaves], services) if sm is not None else None
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
            issue(session, signer, size, services.clock(), nodes, sm_nodes)


@commit_queue.after_commit(APPENDED)
def _appended(counts: list[int], database: commit_queue.Database) -> None:
    """Count leaves once their transaction has committed: a push that lost a race appends again when it runs
    again, and only the run that committed is counted."""
    database.services.observer.custody_leaves(sum(counts))


def event_dict(row: CustodyEvent) -> dict[str, Any]:
    return {"leaf_index": row.leaf_index, "leaf": row.leaf, **json.loads(row.leaf)}


def events_for(session: Session, evidence_id: str) -> list[dict[str, Any]]:
    rows = session.scalars(select(CustodyEvent).where(CustodyEvent.evidence_id == evidence_id)
                           .order_by(CustodyEvent.leaf_index))
    return [event_dict(r) for r in rows]
