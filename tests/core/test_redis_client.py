"""A Redis call fails once, within its timeouts: no retries hidden behind the caller's own answer to failure."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from backend.core.redis_client import bounded_redis
from backend.web.readiness import redis_probe


@pytest.fixture
def slamming_server() -> Iterator[tuple[str, list[int]]]:
    """A port that accepts connections and closes each at once, counting them: a Redis that is going down."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    accepted: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            accepted.append(1)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0", accepted
    stop.set()
    thread.join()
    server.close()


def test_given_a_redis_that_drops_connections_when_pinged_then_the_call_fails_after_one_attempt(slamming_server):
    url, accepted = slamming_server
    with pytest.raises(RedisConnectionError):
        bounded_redis(url, connect_timeout=1, read_timeout=1).ping()
    assert len(accepted) == 1  # redis-py's default would have connected four times, backing off between


def test_given_a_redis_that_drops_connections_when_readiness_asks_then_it_says_so_after_one_attempt(slamming_server):
    url, accepted = slamming_server
    said = redis_probe(url, timeout=1)()
    assert said is not None and said.startswith("Redis does not answer")
    assert len(accepted) == 1
