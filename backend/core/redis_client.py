"""The one way fieldcase opens a Redis client: every call ends within the timeouts given, or fails.

redis-py (6 and later) retries a failed call three times by default, backing off up to a second between tries. Against
a Redis that is down that is ~3 s hidden inside every call, and against one that does not answer four connect
timeouts: a readiness probe that should say "Redis does not answer" within its timeout hangs past it, and a request
that queues a job after its commit waits ~20 s instead of 5. Every caller here already answers a failure itself (the
probe reports it, the sweep queues again what could not be queued, the worker waits for Redis and registers again),
so the client does not retry behind their backs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis import Redis


def bounded_redis(url: str, *, connect_timeout: float, read_timeout: float | None) -> Redis:
    """A client of `url` with no retries: `connect_timeout` for a connection, `read_timeout` for an answer (None: a
    blocking pop may wait as long as it asks)."""
    from redis import Redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Redis.from_url(url, socket_connect_timeout=connect_timeout, socket_timeout=read_timeout,
                          retry=Retry(NoBackoff(), 0))
