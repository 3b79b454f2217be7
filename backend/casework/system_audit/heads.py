"""The signed tree heads as a series: none deleted, none overdue, each with its timestamp token.

A head is issued at every multiple of `HEAD_EVERY` leaves, at exactly that size (`media.custody.log`), and for
the size of the moment whenever one is asked for (`GET /custody/tree-head`, a package, the `refresh_tree_head`
job). So below the log's size, the stretch of leaves from each multiple of 256 holds a signed head before the
next multiple: where it does not, the head issued there was deleted, and with it the proof of what the log held.

Leaves after the newest head are covered by no signature: deleting them leaves nothing to see in the tree. The
server therefore signs the log as it stands at least every `FIELDCASE_HEAD_INTERVAL` (the `refresh_tree_head`
job, docs/deployment.md): leaves left unsigned for longer than that, with the newest head older than that too, are
a problem: the newest head was deleted, or the server stopped signing. With a Time-Stamping Authority
configured, each head also carries its RFC 3161 token.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.casework.system_audit.report import Problem
from backend.core.models import CustodyEvent, SmTreeHead, TreeHead
from media.custody.head_stamps import heads_without_token
from media.custody.log import HEAD_EVERY


def check_heads(session: Session, size: int, interval: timedelta, now: datetime,
                grace: timedelta = timedelta(0)) -> Iterator[Problem]:
    """`grace`: with job workers a worker signs a periodic head just after the commit that reached it, so a head
    whose last leaf is younger than this may not be there yet."""
    sizes = sorted(session.scalars(select(TreeHead.tree_size)))
    for multiple in range(HEAD_EVERY, size + 1, HEAD_EVERY):
        at = bisect.bisect_left(sizes, multiple)
        if at == len(sizes) or sizes[at] >= multiple + HEAD_EVERY:
            crossed = session.scalar(select(CustodyEvent.at).where(CustodyEvent.leaf_index == multiple - 1))
            if grace and crossed is not None and now - crossed < grace:
                continue
            yield Problem("heads", "tree_head", str(multiple),
                          f"no signed head between {multiple} and {multiple + HEAD_EVERY - 1} leaves (one is issued "
                          f"at every {HEAD_EVERY}): it was deleted, or a worker's job to sign it was lost")
    newest = sizes[-1] if sizes else 0
    if size <= newest:
        return
    # When the unsigned leaves came: the newest `at` among them. (A leaf's `at` may be a phone's time, a case
    # opened offline; every push also appends a device_head leaf at the server's time.)
    appended = session.scalar(select(func.max(CustodyEvent.at)).where(CustodyEvent.leaf_index >= newest))
    signed = session.scalar(select(TreeHead.timestamp).where(TreeHead.tree_size == newest)) if sizes else None
    if appended is None or now - appended <= interval:
        return
    if signed is not None and now - datetime.fromisoformat(signed.replace("Z", "+00:00")) <= interval:
        return
    yield Problem("heads", "leaf", str(newest),
                  f"leaves {newest}..{size - 1} have been covered by no signed head for more than "
                  f"{int(interval.total_seconds())} s (FIELDCASE_HEAD_INTERVAL), and the newest head is older: it was "
                  "deleted, or the server stopped signing")


def check_timestamps(session: Session, required: bool, interval: timedelta, now: datetime) -> Iterator[Problem]:
    """With a TSA configured (FIELDCASE_TSA_URL), every head older than the head interval has its RFC 3161 token
    (a head is stamped just after it commits; a TSA that was down leaves it to a later run); so does every SM tree
    head, named `sm_tree_head`. A token that is there but does not check is the tree check's
    (`media.custody.verify.verify_log`)."""
    if not required:
        return
    for kind, suite, model in (("tree_head", "intl", TreeHead), ("sm_tree_head", "sm", SmTreeHead)):
        yield from _without_token(session, kind, suite, model, interval, now)


def _without_token(session: Session, kind: str, suite: str, model: type[TreeHead] | type[SmTreeHead],
                   interval: timedelta, now: datetime) -> Iterator[Problem]:
    missing = heads_without_token(session, suite=suite)
    for start in range(0, len(missing), 500):
        chunk = missing[start:start + 500]
        for size, stamp in session.execute(select(model.tree_size, model.timestamp)
                                           .where(model.tree_size.in_(chunk))):
            if now - datetime.fromisoformat(stamp.replace("Z", "+00:00")) > interval:
                yield Problem("heads", kind, str(size),
                              "it has no RFC 3161 timestamp token, though a TSA is configured (FIELDCASE_TSA_URL): "
                              "`fieldcase custody timestamp` asks for the missing ones")

