"""Work queued on a session to be written when, and only if, its transaction commits.

The change feed and the custody log hand out their sequence numbers at
commit time, under a short lock (see sync.feed, media.custody.log). Queued items
follow the transaction's fate exactly: a rolled-back savepoint drops what was
queued inside it and nothing else; a rolled-back transaction drops everything.
The hooks also ignore savepoint commits: SQLAlchemy fires `before_commit` for
those too, and taking a sequencing lock there would hold it for the rest of
the transaction.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from backend.core.uow import Services

_QUEUES = "fieldcase.commit_queues"


def enqueue(session: Session, name: str, item: Any) -> None:
    session.info.setdefault(_QUEUES, {}).setdefault(name, []).append(item)


def take(session: Session, name: str) -> list[Any]:
    return session.info.get(_QUEUES, {}).pop(name, [])


Writer = Callable[[Session, Services], None]
_writers: list[tuple[int, int, Writer]] = []


def on_commit(writer: Writer | None = None, *, order: int = 100) -> Any:
    """Register `writer` to run just before the outermost commit of every `Database` session, given that
    database's services (`run_writers`).

    Writers run by `order` (then registration), never by import order: the
    custody log (10) and the feed (20) each take a lock there, and every
    process (API, job worker, CLI) must take them in the same order, or two
    processes that happened to import the modules the other way round could
    deadlock on PostgreSQL.
    """

    def register(fn: Writer) -> Writer:
        _writers.append((order, len(_writers), fn))
        _writers.sort(key=lambda w: w[:2])
        return fn

    return register(writer) if writer is not None else register


def run_writers(session: Session, services: Services) -> None:
    """What `backend.core.db.Database` runs before each of its sessions commits (savepoints excepted)."""
    if session.in_nested_transaction():
        return
    for _order, _n, writer in list(_writers):
        writer(session, services)


class Database(Protocol):
    """What a follower is handed (`backend.core.db.Database` is one): its services, and transactions of its own."""

    services: Services

    def session(self) -> Session: ...

    def transaction(self) -> AbstractContextManager[Session]: ...


Follower = Callable[[list[Any], Database], None]
_followers: dict[str, Follower] = {}


def after_commit(name: str) -> Callable[[Follower], Follower]:
    """Register a follower for queue `name`: once the outermost commit of a `Database` session is done, it is
    handed what that transaction queued there (`enqueue`), and the database (`run_followers`).

    For work that must wait for the commit and must not hold its locks: a call over the network (a tree head's
    RFC 3161 timestamp) runs here, in transactions of its own opened on the database, and only if the
    transaction that asked for it committed. The commit is done when a follower runs, and its caller's work
    succeeded: a follower catches its own failures and leaves a trace in the rows for a later run to finish.
    """

    def register(fn: Follower) -> Follower:
        _followers[name] = fn
        return fn

    return register


def run_followers(session: Session, database: Database) -> None:
    """What `backend.core.db.Database` runs after each of its sessions commits (savepoints excepted)."""
    if session.in_nested_transaction():
        return
    for name, follower in list(_followers.items()):
        items = take(session, name)
        if items:
            follower(items, database)


# Queue lengths when each savepoint began, forgotten with the savepoint itself.
_marks: weakref.WeakKeyDictionary[SessionTransaction, dict[str, int]] = weakref.WeakKeyDictionary()


@event.listens_for(Session, "after_transaction_create")
def _mark(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested:
        _marks[transaction] = {k: len(v) for k, v in session.info.get(_QUEUES, {}).items()}


@event.listens_for(Session, "after_soft_rollback")
def _drop(session: Session, previous: SessionTransaction) -> None:
    if previous.nested:
        mark = _marks.pop(previous, None)
        if mark is not None:
            for name, items in session.info.get(_QUEUES, {}).items():
                del items[mark.get(name, 0):]
    elif previous.parent is None:
        session.info.pop(_QUEUES, None)
