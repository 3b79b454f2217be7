"""The unit of work: a database's sessions, and what their commits must also do.

Every transaction (a request, a console form, a CLI command, a job) is a
session of one `backend.core.db.Database`, and commits there. Two logs are
written at commit time, under short locks (`backend.core.commit_queue`): the
custody log and the change feed. The custody log may sign a tree head while
it appends, or queue the signing, so its writer needs the signer, the job
runner and the clock (a head carries the time it was signed). Those are
`Services`, which the composition root (`backend.bootstrap`) builds once per
process and gives the `Database` explicitly; the writers are handed them as
an argument, never look them up.

Who commits: the edges, and only they. A request commits once its domain call
succeeded (`backend.web.api.context.committed`, which runs `commit_retrying`),
a console form likewise, a CLI command or a job at the end of its
`Database.transaction()`. A domain function works inside its caller's
transaction and never commits, rolls back or ends it. Where part of the work
must be durable before the rest runs, the domain offers the parts as separate
functions and the edge commits between them:
- an export (`media.package.record_export`) is committed, so its events are
  custody leaves, before the signed head that proves them is taken
  (`media.custody.heads.latest_head`) and the package is gathered;
- a retention purge is planned (`media.retention.plan_purge`), then each
  item is deleted in a transaction of its own (`commit_each` here), so one
  failure never rolls back the items already deleted;
- an upload's PUT is checked (`media.uploads.content_target`) and that
  transaction ended before the bytes are written (`write_content`), so no
  connection is held while a phone's bytes trickle in;
- a login attempt is counted (`backend.web.auth.count_attempt`) and
  committed before its password is checked (`finish_login`), so it stays
  counted when the login fails.
A refusal that must keep what it wrote (a reused refresh token revokes its
family; a login attempt the throttle refuses is no longer counted) raises a
`DomainError` with `commit_first`: the edge commits, then answers the error
(`settle_refusal`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from backend.core.errors import DomainError
from backend.core.observe import NO_OBSERVER, Observer
from backend.core.times import Clock, system_clock

T = TypeVar("T")
Item = TypeVar("Item")


class JobRunner(Protocol):
    """Runs slow work now or after the commit (`backend.core.jobs` has the two runners)."""

    deferred: bool  # True when the work happens after the caller's transaction, in another process

    def submit(self, session: Session, name: str, *args: str | int) -> None:
        """Run job `name` of the runner's table with (context, session, *args) now, or queue it to run once
        `session` commits."""


class HeadSigner(Protocol):
    """Signs custody tree heads (`media.custody.keys.Signer` is one)."""

    @property
    def key_id(self) -> str: ...

    def sign(self, data: bytes) -> str: ...


class Timestamper(Protocol):
    """Asks a Time-Stamping Authority for an RFC 3161 token (`media.custody.timestamps.TimestampAuthority`)."""

    @property
    def url(self) -> str: ...

    def stamp(self, message: bytes, imprint: Any = ...) -> tuple[bytes, Any]:
        """A checked token over SHA-256 of `message` (or the digest `imprint` names: SM3 for an SM tree head), and
        what it says; raises when there is none."""


@dataclass(frozen=True)
class Services:
    """What commit-time writers may use. Empty (but for the wall clock) for a script that only migrates or reads.
    `tsa`, when configured, timestamps each tree head once the transaction that issued it has committed;
    `observer` hears what the commit-time writers did, once it is committed (`backend.core.observe`)."""

    jobs: JobRunner | None = None
    signer: HeadSigner | None = None
    clock: Clock = system_clock
    tsa: Timestamper | None = None
    observer: Observer = NO_OBSERVER


NO_SERVICES = Services()


def transient(exc: Exception) -> bool:
    """A deadlock, a serialisation failure or a unique key another transaction wrote first: worth running again."""
    if isinstance(exc, IntegrityError):
        return True
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return code in ("40P01", "40001")


def commit_retrying(session: Session, work: Callable[[Session], T], *, attempts: int = 3) -> T:
    """Run `work` in `session`'s transaction and commit it. A transaction that lost a race is rolled back and run
    again whole (nothing of it was kept), up to `attempts` times, with a short jittered pause: what the winner
    wrote is then seen, exactly as a client's own retry would see it."""
    for attempt in range(1, attempts + 1):
        try:
            try:
                result = work(session)
            except DomainError as exc:
                if exc.commit_first:  # the refusal's own writes stay (`settle_refusal`)
                    session.commit()
                raise
            session.commit()
            return result
        except (OperationalError, IntegrityError) as exc:
            session.rollback()
            if attempt == attempts or not transient(exc):
                raise
            time.sleep(random.uniform(0.01, 0.05) * attempt)
    raise AssertionError("unreachable")


def settle_refusal(session: Session, exc: DomainError) -> None:
    """End the transaction of a refused call: committed when the refusal must keep what it wrote
    (`DomainError.commit_first`), rolled back otherwise."""
    if exc.commit_first:
        session.commit()
    else:
        session.rollback()


def commit_each(session: Session, items: Iterable[Item], work: Callable[[Session, Item], T],
                failed: Callable[[Item, Exception], T], errors: tuple[type[Exception], ...]) -> list[T]:
    """Run `work` for each item in a transaction of its own, committed before the next begins. An item whose work
    (or commit) raises one of `errors` is rolled back alone and answered by `failed`: what the items before it
    did stays done."""
    results = []
    for item in items:
        try:
            result = work(session, item)
            session.commit()
        except errors as exc:
            session.rollback()
            result = failed(item, exc)
        results.append(result)
    return results
