"""Every signed tree head gets an RFC 3161 timestamp (media.custody.timestamps), after the head has committed.

A head may be issued in the custody log's commit hook, under its lock (media.custody.log), so the TSA is never
asked there. The head's size is queued on the session (`issued`); once that transaction has committed, the
follower `_after_commit` submits the job `timestamp_head` in a transaction of its own: the inline runner runs
it at once, the RQ runner queues it for a worker, which RQ retries (backend.core.jobs.RETRY_INTERVALS) while the
TSA is down. The job asks the TSA with no transaction open (on SQLite a transaction holds the database's write
lock), then stores the token in a short one.

A TSA that fails never fails what issued the head: the head stays, without a token (`heads_without_token`), and
a later run fills it in (`timestamp_pending`): the next head's job finishes a few after its own, and
`fieldcase custody timestamp` or `fieldcase jobs sweep` the rest.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.core import commit_queue
from backend.core.db import Database
from backend.core.errors import TimestampFailed
from backend.core.models import HeadTimestamp, TreeHead
from backend.core.uow import Timestamper
from media.custody.timestamps import TokenFacts, head_message

log = logging.getLogger("fieldcase.custody.timestamps")

ISSUED = "fieldcase.issued_heads"
TIMESTAMP_JOB = "timestamp_head"
CATCH_UP = 8  # heads left without a token that each head's job also stamps, oldest first


def issued(session: Session, tree_size: int) -> None:
    """A head was issued in this transaction: timestamp it once the transaction commits (never if it rolls back)."""
    commit_queue.enqueue(session, ISSUED, tree_size)


@commit_queue.after_commit(ISSUED)
def _after_commit(sizes: list[Any], database: Database) -> None:
    services = database.services
    if services.tsa is None:
        return
    for size in sizes:
        try:
            if services.jobs is None:  # a script (`fieldcase custody refresh-head`): no runner, so ask now
                timestamp_head(database, services.tsa, size)
                continue
            with database.transaction() as session:
                services.jobs.submit(session, TIMESTAMP_JOB, size)
        except Exception as exc:  # noqa: BLE001 - the head is committed and stays; a later run stamps it
            log.warning("tree head %s is not timestamped yet (%s); the next head's job, `fieldcase custody "
                        "timestamp` or `fieldcase jobs sweep` will try again", size, _why(exc))


def _why(exc: Exception) -> str:
    return exc.message if isinstance(exc, TimestampFailed) else f"{type(exc).__name__}: {exc}"


def timestamp_head(database: Database, tsa: Timestamper, tree_size: int) -> bool:
    """Get the head at `tree_size` its token, unless it has one: True when one was stored now.

    Three steps, none holding a transaction across the network: read the head, ask the TSA, store the token.
    Raises TimestampFailed when the TSA fails (an RQ job is then retried).
    """
    with database.transaction() as session:
        head = session.get(TreeHead, tree_size)
        if head is None or session.get(HeadTimestamp, tree_size) is not None:
            return False
        message = head_message({"tree_size": head.tree_size, "root_hash": head.root_hash,
                                "timestamp": head.timestamp})
    token, facts = tsa.stamp(message)
    try:
        with database.transaction() as session:
            if session.get(HeadTimestamp, tree_size) is not None:
                return False
            session.add(_row(tree_size, token, facts, tsa.url, database.services.clock()))
    except IntegrityError:  # another worker stored one first: heads need one token
        return False
    return True


def _row(tree_size: int, token: bytes, facts: TokenFacts, url: str, now: Any) -> HeadTimestamp:
    return HeadTimestamp(tree_size=tree_size, token=token, gen_time=facts.gen_time, tsa=facts.tsa[:1000],
                         serial=str(facts.serial), tsa_url=url[:1000], received_at=now)


def timestamp_pending(database: Database, tsa: Timestamper, *, limit: int | None = None) -> tuple[int, int]:
    """Stamp heads without a token, oldest first, until `limit` or the first failure: (stamped, still pending).

    Stops at the first failure: a TSA that is down for one head is down for the next.
    """
    with database.session() as session:
        pending = heads_without_token(session, limit=limit)
    stamped = 0
    for size in pending:
        try:
            stamped += timestamp_head(database, tsa, size)
        except TimestampFailed as exc:
            log.warning("tree head %s is still not timestamped: %s", size, exc.message)
            break
    with database.session() as session:
        return stamped, len(heads_without_token(session))


def heads_without_token(session: Session, *, limit: int | None = None) -> list[int]:
    """The sizes of the stored tree heads that have no timestamp token yet, oldest first."""
    query = (select(TreeHead.tree_size).outerjoin(HeadTimestamp, HeadTimestamp.tree_size == TreeHead.tree_size)
             .where(HeadTimestamp.tree_size.is_(None)).order_by(TreeHead.tree_size))
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def token_of(session: Session, tree_size: int) -> bytes | None:
    """The head's token (DER), or None when it has none (yet)."""
    row = session.get(HeadTimestamp, tree_size)
    return bytes(row.token) if row is not None else None
