"""The custody log's SM tree: keeping it in step with the log (catch-up at commit, `build-sm-tree`), and its heads.

With FIELDCASE_CUSTODY_SUITES=intl,sm (the signer then holds an SM2 key, `Signer.sm`) the same leaves are also
appended, in the same commit and under the same lock, to the SM tree: RFC 6962's shape with SM3 (`sm_merkle_nodes`),
with SM2-signed heads (`sm_tree_heads`) issued wherever an intl head is. The SHA-256 tree and its heads are exactly
what they would be without it. The SM tree is appended to only while it is in step with the log (its size is the
log's before the commit); a commit finds it at most `SM_CATCH_UP` leaves behind (leaves appended by a process that
had no SM key) brings it back in step first, and a log that had leaves before `sm` was turned on is built by
`fieldcase custody build-sm-tree` (`extend_sm_tree`, in batches), which also signs an SM head at the size of every
intl head issued before.

Its nodes are stored and read as the intl tree's are (media.custody.trees), and its heads signed where the intl
ones are (media.custody.heads); what is the SM tree's own is here: when the commit hook (media.custody.log) appends
to it, how it is built over an existing log, and its heads as served. Each SM head gets an RFC 3161 token of its
own, over SM3 of its signed bytes (media.custody.head_stamps), which a package carries with it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from backend.core.errors import Invalid, NotFound
from backend.core.models import SmMerkleNode, SmTreeHead, TreeHead
from backend.core.uow import Services
from media.custody.head_stamps import token_of
from media.custody.heads import issue_sm, latest_head
from media.custody.keys import Signer, SmSigner
from media.custody.timestamps import encode_token
from media.custody.trees import (
    CUSTODY_LOCK_KEY,
    TREES,
    extend,
    leaf_texts,
    log_size,
    needed_for_appends,
    read_nodes,
    sm_size,
)

log = logging.getLogger("fieldcase.custody")

SM_CATCH_UP = 256  # how far behind the log a commit still brings the SM tree back in step
SM_BUILD_BATCH = 5000  # leaves per transaction of `fieldcase custody build-sm-tree`
SM_BUILD_HEADS = 500  # SM heads signed per transaction of it, for intl heads issued before the SM tree reached them

_lagging_reported: set[str] = set()  # told once per process


def append_sm(session: Session, sm: SmSigner, start: int, texts: list[str],
              services: Services) -> dict[tuple[int, int], bytes] | None:
    """The commit's leaves (the log's `start`, ...) in the SM tree too, when it is in step with the log or at most
    SM_CATCH_UP leaves behind (then those first, with the SM heads of the intl heads among them). Further behind
    (`sm` turned on over an existing log) it is left to `fieldcase custody build-sm-tree`: None.

    In step, this is one read and one write: the nodes the append needs are read together with the SM tree's
    leaves `start` - 1 and `start`, whose presence and absence say that it is in step."""
    edge = {(0, start - 1), (0, start)} if start else {(0, 0)}
    nodes = read_nodes(session, needed_for_appends(start, len(texts)) | edge, SmMerkleNode)
    if (start == 0 or (0, start - 1) in nodes) and (0, start) not in nodes:
        return extend(session, TREES["sm"], start, texts, nodes)
    size = sm_size(session)
    earlier: list[str] = []
    if size != start:
        earlier = leaf_texts(session, size, start) if size < start <= size + SM_CATCH_UP else []
        if len(earlier) != start - size or not earlier:
            if "sm" not in _lagging_reported:
                _lagging_reported.add("sm")
                log.warning("the SM custody tree holds %d leaves, the log %d: it is not appended to until "
                            "`fieldcase custody build-sm-tree` brings it in step", size, start)
            return None
    nodes = extend(session, TREES["sm"], size, earlier + texts)
    if earlier:
        for head_size in session.scalars(select(TreeHead.tree_size).where(TreeHead.tree_size > size,
                                                                          TreeHead.tree_size <= start)):
            issue_sm(session, sm, head_size, services.clock(), nodes, covered=start + len(texts))
    return nodes


@dataclass(frozen=True)
class SmProgress:
    """One step of `extend_sm_tree`: leaves added to the SM tree, SM heads signed, and where it stands."""

    added: int
    heads: int
    size: int  # the SM tree's leaves now
    log_size: int  # the log's

    @property
    def done(self) -> bool:
        return self.added == 0 and self.heads == 0 and self.size == self.log_size


def extend_sm_tree(session: Session, signer: Signer, *, now: datetime, batch: int = SM_BUILD_BATCH,
                   heads: int = SM_BUILD_HEADS) -> SmProgress:
    """One transaction's worth of building the SM tree over the leaves it does not hold yet (`fieldcase custody
    build-sm-tree` runs it until `done`): up to `batch` leaves appended, then up to `heads` SM heads signed at the
    sizes of intl heads the SM tree covers that have none. Under the custody lock, so that the last step leaves the
    tree in step with the log, which every commit then keeps."""
    sm = signer.sm
    if sm is None:
        raise Invalid("the SM custody tree is not kept here: FIELDCASE_CUSTODY_SUITES does not include sm",
                      errors={"suite": ["sm is not enabled"]})
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CUSTODY_LOCK_KEY})
    size, total = sm_size(session), log_size(session)
    if size > total:
        raise Invalid(f"the SM tree holds {size} leaves, more than the log's {total}: events were deleted from the "
                      "end of the log (`fieldcase custody verify`)", errors={"suite": ["the SM tree is ahead"]})
    end = min(total, size + batch)
    texts = leaf_texts(session, size, end) if size < total else []
    if len(texts) != end - size:
        raise Invalid(f"custody events are missing between leaves {size} and {end - 1}: the SM tree cannot be built "
                      "over them (`fieldcase custody verify` names them)", errors={"suite": ["events missing"]})
    nodes = extend(session, TREES["sm"], size, texts) if texts else {}
    size += len(texts)
    missing = list(session.scalars(
        select(TreeHead.tree_size).outerjoin(SmTreeHead, SmTreeHead.tree_size == TreeHead.tree_size)
        .where(SmTreeHead.tree_size.is_(None), TreeHead.tree_size <= size).order_by(TreeHead.tree_size).limit(heads)))
    for head_size in missing:  # timestamped later, by the jobs' catch-up, the sweep or `fieldcase custody timestamp`
        issue_sm(session, sm, head_size, now, nodes, covered=size, stamp=False)
    return SmProgress(added=len(texts), heads=len(missing), size=size, log_size=total)


# --- the SM tree's heads -------------------------------------------------------------------------------------------


def sm_head_dict(head: SmTreeHead, token: bytes | None = None) -> dict[str, Any]:
    """An SM tree head: the same fields as an intl head's, its `signature` SM2 and `key_id` the SM2 key's; with
    `token`, its RFC 3161 token (`timestamp_token`, spelt as an intl head's; its imprint is SM3)."""
    served = {"tree_size": head.tree_size, "root_hash": head.root_hash, "timestamp": head.timestamp,
              "signature": head.signature, "key_id": head.key_id}
    if token is not None:
        served["timestamp_token"] = encode_token(token)
    return served


def sm_key(signer: Signer | None) -> SmSigner:
    """The SM tree's key, or a 404: this server keeps no SM tree (FIELDCASE_CUSTODY_SUITES is intl)."""
    sm = getattr(signer, "sm", None)
    if sm is None:
        raise NotFound("this server keeps no SM custody tree (FIELDCASE_CUSTODY_SUITES is intl)",
                       errors={"suite": ["sm is not enabled on this server"]})
    return sm


def latest_sm_head(session: Session, signer: Signer, *, now: datetime) -> dict[str, Any]:
    """The SM tree's head for the log as it is now, as `latest_head` answers the intl one (with its RFC 3161 token
    once it has one): `latest_head` issues both heads; a 404 while the SM tree is not in step with the log
    (`fieldcase custody build-sm-tree`)."""
    sm_key(signer)
    size = latest_head(session, signer, now=now)["tree_size"]
    head = session.get(SmTreeHead, size)
    if head is None:
        raise NotFound(f"the SM custody tree holds {sm_size(session)} of the log's {size} leaves: "
                       "`fieldcase custody build-sm-tree` builds it over the rest",
                       errors={"tree_size": ["the SM tree does not reach this size yet"]})
    return _served(session, head)


def _served(session: Session, head: SmTreeHead) -> dict[str, Any]:
    """A stored SM head as the API serves it and a package carries it: with its RFC 3161 token once it has one."""
    return sm_head_dict(head, token_of(session, head.tree_size, "sm"))


def issued_sm_head(session: Session, tree_size: int) -> SmTreeHead:
    """The SM head issued at exactly `tree_size`, or a 404 naming the nearest issued ones (as `issued_head`)."""
    head = session.get(SmTreeHead, tree_size)
    if head is not None:
        return head
    below = session.scalar(select(func.max(SmTreeHead.tree_size)).where(SmTreeHead.tree_size < tree_size))
    above = session.scalar(select(func.min(SmTreeHead.tree_size)).where(SmTreeHead.tree_size > tree_size))
    nearest = [size for size in (below, above) if size is not None]
    hint = (f"; the nearest issued sizes are {' and '.join(map(str, nearest))}" if nearest else "")
    raise NotFound(f"no SM tree head was issued at size {tree_size}{hint}",
                   errors={"tree_size": ["no SM head was issued at this size"], "nearest_issued": nearest})


def session_sm_head(session: Session, tree_size: int) -> dict[str, Any] | None:
    """The SM head issued at exactly `tree_size`, served (`_served`), or None."""
    head = session.get(SmTreeHead, tree_size)
    return _served(session, head) if head is not None else None


def stored_sm_head(session: Session, signer: Signer | None, tree_size: int) -> dict[str, Any]:
    sm_key(signer)
    return _served(session, issued_sm_head(session, tree_size))
