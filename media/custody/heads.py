"""The custody log's signed tree heads (PROTOCOL §8): issuing them, and serving the intl (SHA-256) ones.

A head is issued at a size at most once and kept for good: at every multiple of HEAD_EVERY by the commit whose
append reaches it (media.custody.log), at the sizes asked for (`latest_head`), and by the periodic job
(`issue_head`). With an SM key (FIELDCASE_CUSTODY_SUITES=intl,sm) every issue also signs the SM tree's head at the
same size, once the SM tree reaches it: wherever an intl head is, an SM head is (media.custody.sm_tree keeps the SM
tree in step and serves its heads). A head's RFC 3161 timestamp, intl or SM, is asked for once its transaction
commits (media.custody.head_stamps).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from backend.core.errors import Invalid, NotFound
from backend.core.models import SmTreeHead, TreeHead
from backend.core.times import utc_millis
from media.custody import head_stamps, merkle
from media.custody.keys import Signer, SmSigner, head_payload
from media.custody.timestamps import encode_token
from media.custody.trees import CUSTODY_LOCK_KEY, TREES, getter, log_size, read_nodes, sm_size, stored_root


def issue(session: Session, signer: Signer, size: int, now: datetime,
          nodes: dict[tuple[int, int], bytes] | None = None,
          sm_nodes: dict[tuple[int, int], bytes] | None = None) -> TreeHead:
    """The head at `size`, signed as of `now`, unless one exists; and with an SM key, the SM tree's head at the
    same size, unless one exists or the SM tree does not reach it yet."""
    head = session.get(TreeHead, size)
    if head is None:
        head = _issue_intl(session, signer, size, now, nodes)
    sm = getattr(signer, "sm", None)
    if sm is not None:
        issue_sm(session, sm, size, now, sm_nodes)
    return head


def issue_sm(session: Session, sm: SmSigner, size: int, now: datetime,
             nodes: dict[tuple[int, int], bytes] | None = None, *, covered: int | None = None,
             stamp: bool = True) -> SmTreeHead | None:
    """The SM tree's head at `size`, SM2-signed as of `now`, unless one exists; None while the SM tree (`covered`
    leaves, read when not given) does not reach `size`. A new one is timestamped once the transaction commits,
    unless `stamp` is False (`build-sm-tree`'s many heads: head_stamps says who stamps those)."""
    existing = session.get(SmTreeHead, size)
    if existing is not None:
        return existing
    if size > (sm_size(session) if covered is None else covered):
        return None
    root = stored_root(session, TREES["sm"], size, nodes).hex()
    timestamp = utc_millis(now)
    head = SmTreeHead(tree_size=size, root_hash=root, timestamp=timestamp, key_id=sm.key_id,
                      signature=sm.sign(head_payload(size, root, timestamp)))
    session.add(head)
    session.flush()
    if stamp:
        head_stamps.issued(session, size)  # the same job as the intl head's at this size, queued once for both
    return head


def _issue_intl(session: Session, signer: Signer, size: int, now: datetime,
                nodes: dict[tuple[int, int], bytes] | None) -> TreeHead:
    if size == 0:
        root = merkle.EMPTY_ROOT
    else:
        have = nodes or {}
        missing = merkle.nodes_needed_for_root(size) - set(have)
        have = {**have, **read_nodes(session, missing)}
        root = merkle.tree_root(size, getter(have))
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
    if not 0 <= size <= log_size(session):
        raise Invalid(f"no tree of size {size} yet", errors={"tree_size": ["out of range"]})
    return _served(session, issue(session, signer, size, now))


def latest_head(session: Session, signer: Signer, *, now: datetime) -> dict[str, Any]:
    """Issue (and store) a head for the tree as it is now, unless one exists for this size."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CUSTODY_LOCK_KEY})
    return _served(session, issue(session, signer, log_size(session), now))


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
    current = log_size(session)
    why = (f"the tree has {current} leaves" if tree_size > current
           else "heads are issued only at the sizes they were asked for and at every multiple of 256")
    hint = (f"; the nearest issued sizes are {' and '.join(map(str, nearest))}" if nearest else "")
    raise NotFound(f"no tree head was issued at size {tree_size} ({why}){hint}",
                   errors={"tree_size": ["no head was issued at this size"], "nearest_issued": nearest})


def stored_head(session: Session, tree_size: int) -> dict[str, Any]:
    return _served(session, issued_head(session, tree_size))
