"""The unit of work: a database's sessions, and what their commits must also do.

Every transaction (a request, a console form, a CLI command, a job) is a
session of one `backend.core.db.Database`, and commits there. Two logs are
written at commit time, under short locks (`backend.core.commit_queue`): the
custody log and the change feed. The custody log may sign a tree head while
it appends, or queue the signing, so its writer needs the signer and the job
runner. Those are `Services`, which the composition root (`backend.bootstrap`)
builds once per process and gives the `Database` explicitly; the writers are
handed them as an argument, never look them up.

Who commits: the edges. A request commits once its domain call succeeded
(`backend.web.api.context.committed`, which runs `commit_retrying`), a
console form likewise, a CLI command or a job at the end of its
`Database.transaction()`. A domain function works inside its caller's
transaction and does not commit it, with these exceptions, each of which
ends the transaction part-way for the reason its docstring gives (on SQLite
a request can hold only one transaction at a time, so they commit the
caller's session rather than open a second one):
- `media.package.prepare_package`: the export is in the custody log before
  the first byte of the package leaves;
- `media.retention.purge`: one item per transaction, so one failure never
  rolls back the items already deleted;
- `media.uploads.put_content`: no connection is held while a phone's bytes
  trickle in;
- `backend.web.auth.login`: an attempt is counted before its password is
  checked, and stays counted when the login fails;
- `backend.casework.tokens.rotate_refresh`: a reused refresh token's family
  stays revoked although the request is refused.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

T = TypeVar("T")


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


@dataclass(frozen=True)
class Services:
    """What commit-time writers may use. Empty for a script that only migrates or reads."""

    jobs: JobRunner | None = None
    signer: HeadSigner | None = None


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
            result = work(session)
            session.commit()
            return result
        except (OperationalError, IntegrityError) as exc:
            session.rollback()
            if attempt == attempts or not transient(exc):
                raise
            time.sleep(random.uniform(0.01, 0.05) * attempt)
    raise AssertionError("unreachable")
