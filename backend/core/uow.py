"""The unit of work: a database's sessions, and what their commits must also do.

Every transaction (a request, a console form, a CLI command, a job) is a
session of one `backend.core.db.Database`, and commits there. Two logs are
written at commit time, under short locks (`backend.core.commit_queue`): the
custody log and the change feed. The custody log may sign a tree head while
it appends, or queue the signing, so its writer needs the signer and the job
runner. Those are `Services`, which the composition root (`backend.bootstrap`)
builds once per process and gives the `Database` explicitly; the writers are
handed them as an argument, never look them up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.orm import Session


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
