"""What the lower layers tell an observer (the metrics), without knowing there are metrics.

On-call needs a few counts that only the code below the web layer sees: custody leaves appended (at commit, by a
follower of the custody log), jobs that could not be handed to Redis (after a commit), jobs run and how they ended
(by the job runners). Those places are handed an `Observer` and call it; what it does with the news is the edge's
business. The composition root (`backend.bootstrap`) builds the real one (`backend.web.metrics.PrometheusObserver`,
Prometheus counters) and passes it to the database's `Services`, the job runners and the workers. Nothing in
core, sync or media imports a metrics library, and a process without metrics gets `NO_OBSERVER`, which does
nothing.

An observer must be cheap and must never raise: it is called on the hot path, some of it after a commit that
has already happened.
"""

from __future__ import annotations

from typing import Protocol


class Observer(Protocol):
    def custody_leaves(self, count: int) -> None:
        """`count` custody leaves were appended by a transaction that has committed."""

    def enqueue_failed(self, job: str) -> None:
        """A committed transaction's job could not be queued (Redis down); a sweep or a retry queues it later."""

    def job_finished(self, job: str, outcome: str, seconds: float) -> None:
        """A job ran to `outcome` (`done` or `failed`: this attempt raised) in `seconds`."""


class NullObserver:
    """Nobody is listening: every call does nothing."""

    def custody_leaves(self, count: int) -> None:
        return None

    def enqueue_failed(self, job: str) -> None:
        return None

    def job_finished(self, job: str, outcome: str, seconds: float) -> None:
        return None


NO_OBSERVER: Observer = NullObserver()
