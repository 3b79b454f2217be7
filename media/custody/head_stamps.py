"""Every signed tree head gets an RFC 3161 timestamp (media.custody.timestamps), after the head has committed.

A head may be issued in the custody log's commit hook, under its lock (media.custody.log), so the TSA is never
asked there. The head's size is queued on the session (`issued`); once that transaction has committed, the
follower `_after_commit` submits the job `timestamp_head` in a transaction of its own: the inline runner runs
it at once, the RQ runner queues it for a worker, which RQ retries (backend.core.jobs.RETRY_INTERVALS) while the
TSA is down. The job asks the TSA with no transaction open (on SQLite a transaction holds the database's write
lock), then stores the token in a short one.

With FIELDCASE_CUSTODY_SUITES=intl,sm the SM tree's head at a size is stamped by the same job, after the intl one:
its token imprints SM3 of the SM head's signed bytes (`SM3_IMPRINT`), and is kept in `sm_head_timestamps` as the
intl head's is in `head_timestamps`. An SM head issued where no intl head is (the SM tree catching up) queues its
size the same way; the SM heads `fieldcase custody build-sm-tree` signs for old intl heads are left to the catch-up
below, to the sweep and to `fieldcase custody timestamp`, so that building the tree does not wait on the TSA.

A TSA that fails never fails what issued the head: the head stays, without a token (`heads_without_token`), and
a later run fills it in (`timestamp_pending`): the next head's job finishes a few after its own, and
`fieldcase custody timestamp` or `fieldcase jobs sweep` the rest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.core import commit_queue
from backend.core.db import Database
from backend.core.errors import TimestampFailed
from backend.core.models import HeadTimestamp, SmHeadTimestamp, SmTreeHead, TreeHead
from backend.core.uow import Timestamper
from media.custody.timestamps import SHA256_IMPRINT, SM3_IMPRINT, Imprint, TokenFacts, head_message

log = logging.getLogger("fieldcase.custody.timestamps")

ISSUED = "fieldcase.issued_heads"
TIMESTAMP_JOB = "timestamp_head"
CATCH_UP = 8  # heads left without a token that each head's job also stamps, oldest first


@dataclass(frozen=True)
class _Tree:
    """Where a tree's heads and their tokens are kept, and what its tokens imprint."""

    name: str  # as log lines name its heads
    heads: type[TreeHead] | type[SmTreeHead]
    tokens: type[HeadTimestamp] | type[SmHeadTimestamp]
    imprint: Imprint


TREES = {"intl": _Tree("tree head", TreeHead, HeadTimestamp, SHA256_IMPRINT),
         "sm": _Tree("SM tree head", SmTreeHead, SmHeadTimestamp, SM3_IMPRINT)}


def issued(session: Session, tree_size: int) -> None:
    """A head was issued in this transaction: timestamp it once the transaction commits (never if it rolls back)."""
    commit_queue.enqueue(session, ISSUED, tree_size)


@commit_queue.after_commit(ISSUED)
def _after_commit(sizes: list[Any], database: Database) -> None:
    services = database.services
    if services.tsa is None:
        return
    for size in dict.fromkeys(sizes):  # an intl head and the SM head at its size queue it once each: one job
        try:
            if services.jobs is None:  # a script (`fieldcase custody refresh-head`): no runner, so ask now
                timestamp_heads(database, services.tsa, size)
                continue
            with database.transaction() as session:
                services.jobs.submit(session, TIMESTAMP_JOB, size)
        except Exception as exc:  # noqa: BLE001 - the head is committed and stays; a later run stamps it
            log.warning("tree head %s is not timestamped yet (%s); the next head's job, `fieldcase custody "
                        "timestamp` or `fieldcase jobs sweep` will try again", size, _why(exc))


def _why(exc: Exception) -> str:
    return exc.message if isinstance(exc, TimestampFailed) else f"{type(exc).__name__}: {exc}"


def timestamp_heads(database: Database, tsa: Timestamper, tree_size: int) -> int:
    """The tokens of the heads at `tree_size`: the intl head's, then the SM head's where there is one; how many were
    stored now. Raises TimestampFailed when the TSA fails for either (an RQ job is then retried; the one stored
    stays)."""
    stamped = timestamp_head(database, tsa, tree_size)
    try:
        return stamped + timestamp_head(database, tsa, tree_size, "sm")
    except TimestampFailed as exc:
        raise TimestampFailed(f"its SM tree head: {exc.message}") from None


def timestamp_head(database: Database, tsa: Timestamper, tree_size: int, suite: str = "intl") -> bool:
    """Get the head at `tree_size` (of the tree of `suite`) its token, unless it has one: True when one was stored
    now.

    Three steps, none holding a transaction across the network: read the head, ask the TSA, store the token.
    Raises TimestampFailed when the TSA fails (an RQ job is then retried).
    """
    tree = TREES[suite]
    with database.transaction() as session:
        head = session.get(tree.heads, tree_size)
        if head is None or session.get(tree.tokens, tree_size) is not None:
            return False
        message = head_message({"tree_size": head.tree_size, "root_hash": head.root_hash,
                                "timestamp": head.timestamp})
    token, facts = tsa.stamp(message, tree.imprint)
    try:
        with database.transaction() as session:
            if session.get(tree.tokens, tree_size) is not None:
                return False
            session.add(_row(tree.tokens, tree_size, token, facts, tsa.url, database.services.clock()))
    except IntegrityError:  # another worker stored one first: heads need one token
        return False
    return True


def _row(model: type[HeadTimestamp] | type[SmHeadTimestamp], tree_size: int, token: bytes, facts: TokenFacts,
         url: str, now: Any) -> HeadTimestamp | SmHeadTimestamp:
    return model(tree_size=tree_size, token=token, gen_time=facts.gen_time, tsa=facts.tsa[:1000],
                 serial=str(facts.serial), tsa_url=url[:1000], received_at=now)


def timestamp_pending(database: Database, tsa: Timestamper, *, limit: int | None = None) -> tuple[int, int]:
    """Stamp heads without a token, oldest first (the intl heads, then the SM tree's; `limit` of each), until the
    first failure: (stamped, still pending, of both trees).

    Stops at the first failure: a TSA that is down for one head is down for the next.
    """
    stamped = 0
    for suite, tree in TREES.items():
        with database.session() as session:
            pending = heads_without_token(session, limit=limit, suite=suite)
        failed = False
        for size in pending:
            try:
                stamped += timestamp_head(database, tsa, size, suite)
            except TimestampFailed as exc:
                log.warning("%s %s is still not timestamped: %s", tree.name, size, exc.message)
                failed = True
                break
        if failed:
            break
    with database.session() as session:
        return stamped, sum(len(heads_without_token(session, suite=suite)) for suite in TREES)


def heads_without_token(session: Session, *, limit: int | None = None, suite: str = "intl") -> list[int]:
    """The sizes of the stored tree heads (of the tree of `suite`) that have no timestamp token yet, oldest first."""
    tree = TREES[suite]
    query = (select(tree.heads.tree_size).outerjoin(tree.tokens, tree.tokens.tree_size == tree.heads.tree_size)
             .where(tree.tokens.tree_size.is_(None)).order_by(tree.heads.tree_size))
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def sizes_without_token(session: Session) -> list[int]:
    """The sizes at which a head of either tree has no token yet: what the sweep queues `timestamp_head` for."""
    return sorted(set(heads_without_token(session)) | set(heads_without_token(session, suite="sm")))


def token_of(session: Session, tree_size: int, suite: str = "intl") -> bytes | None:
    """The head's token (DER), or None when it has none (yet)."""
    row = session.get(TREES[suite].tokens, tree_size)
    return bytes(row.token) if row is not None else None
