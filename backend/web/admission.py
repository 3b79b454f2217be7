"""Admission control: a bounded number of heavy requests at once per process, the rest answer 503 soon.

A push (signature checks, ledger writes under a device lock) and an upload
(bytes streamed to disk, or read back and hashed) each hold one of the
worker's few threads and a database connection for a long time. When more
of them arrive than the process can work on, letting them queue for a thread
only turns a saturated server into one that times out: the phone gives up
after its read timeout, not knowing whether its push landed, and tries again
into the same queue. So each heavy kind has a gate: a bounded semaphore with
a short wait. A request that gets no slot within the wait answers
`503 Service Unavailable` with `Retry-After` before it has touched the
database, and the phone comes back after a jittered back-off.

The gates are per process on purpose. Each gunicorn worker is a process
with its own threads and its own database pool, so what runs out is a
process's resource: its threads and its connections. A per-process limit
bounds exactly that, needs no shared state (no lock file, no Redis, no
database round trip on the hot path), and scales with the number of workers:
the whole server admits at most workers × limit heavy requests, which is
what its pools and the database were sized for. A worker that dies takes its
slots with it; the new worker starts with all of them free.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from typing import Any

from flask import current_app

from backend.core.errors import DomainError
from backend.web.metrics import note_unavailable

PUSH = "push"
UPLOAD = "upload"
PLURAL = {PUSH: "pushes", UPLOAD: "uploads"}


class Busy(DomainError):
    """The server is saturated; nothing of the request was done. Retry after `Retry-After` seconds."""

    status = 503
    reason = "busy"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, int(retry_after)))})
        self.retry_after = retry_after


class Gate:
    """At most `limit` holders at once; a newcomer waits up to `wait` seconds for a slot, then is refused."""

    def __init__(self, kind: str, limit: int, wait: float, retry_after: int) -> None:
        if limit < 1:
            raise ValueError(f"the {kind} limit must be at least 1, not {limit}")
        self.kind = kind
        self.limit = limit
        self.wait = max(0.0, wait)
        self.retry_after = retry_after
        self._slots = threading.BoundedSemaphore(limit)

    @contextmanager
    def slot(self) -> Iterator[None]:
        if not self._slots.acquire(timeout=self.wait):
            note_unavailable("admission")
            raise Busy(f"the server is busy with other {PLURAL.get(self.kind, self.kind)} ({self.limit} at a time "
                       "per process); "
                       f"nothing was done: retry after {self.retry_after} s", self.retry_after)
        try:
            yield
        finally:
            self._slots.release()


@dataclass(frozen=True)
class Admission:
    """The gates of one app (one process)."""

    gates: dict[str, Gate]

    @classmethod
    def build(cls, *, pushes: int, uploads: int, wait: float, retry_after: int) -> Admission:
        return cls({PUSH: Gate(PUSH, pushes, wait, retry_after), UPLOAD: Gate(UPLOAD, uploads, wait, retry_after)})

    def gate(self, kind: str) -> Gate:
        return self.gates[kind]


def admitted(kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run the view only with a slot of `kind`; when none frees up within the wait, answer 503 + Retry-After.

    Put it above `@authenticated()`, so a refused request costs no database connection: under pool
    exhaustion, checking the token would itself wait for one.
    """

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with current_app.extensions["fieldcase"].admission.gate(kind).slot():
                return view(*args, **kwargs)

        doc = getattr(wrapper, "_apidoc", {})
        manual = doc.get("manual_doc", {})
        wrapper._apidoc = {**doc, "manual_doc": {**manual, "responses": {**manual.get("responses", {}), "503": {
            "description": "the server is saturated; nothing was done: retry after `Retry-After` seconds",
            "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}}}}}
        return wrapper

    return decorator
