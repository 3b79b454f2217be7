"""The phone's HTTP conversation with the server: one session, the bearer token, and bounded retries.

Phones sync over bad networks with a server that may be saturated, so every request goes through the one place
that knows when trying again is safe: a network error or a 5xx is retried with jittered exponential back-off,
a busy answer (``503``/``429`` with ``Retry-After``) is waited out, a ``401`` spends the refresh token once, and
no call waits longer than its budget. The errors the rest of the client raises and sees are defined here too.
"""

from __future__ import annotations

import email.utils
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from sync.client.wire import LOGIN_PATH, REFRESH_PATH, compact_json

log = logging.getLogger("fieldcase.phone")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# "Busy" answers: the server is saturated (or throttling) and says when to come back with Retry-After. Nothing
# was done, so waiting and trying again is always safe; such waits are bounded by time, not by attempts.
BUSY_STATUSES = frozenset({429, 503})
MAX_BUSY_RETRIES = 50  # a last bound when a server answers Retry-After: 0 forever

Timeout = float | tuple[float, float]


class ApiError(Exception):
    """The server answered with an error; `payload` is PROTOCOL's JSON error shape when it sent one."""

    def __init__(self, status: int, payload: Mapping[str, Any] | None = None, *, method: str = "",
                 url: str = "") -> None:
        self.status = status
        self.payload: dict[str, Any] = dict(payload or {})
        self.message = str(self.payload.get("message") or f"HTTP {status}")
        self.method = method
        self.url = url
        super().__init__(f"{method} {url} -> {status}: {self.message}".strip())

    @classmethod
    def from_response(cls, resp: requests.Response) -> ApiError:
        try:
            payload = resp.json()
            if not isinstance(payload, dict):
                payload = {"message": str(payload)[:200]}
        except ValueError:
            payload = {"message": (resp.text or "")[:200]}
        method = resp.request.method if resp.request is not None else ""
        err_cls = AuthError if resp.status_code == 401 else cls
        return err_cls(resp.status_code, payload, method=method or "", url=resp.url)


class AuthError(ApiError):
    """Not (or no longer) logged in: the app must ask the officer for the password again."""


class SimulatedCutOff(requests.ConnectionError, ConnectionError):
    """Raised by ``push(fail_after_batches=...)``: the request went out, its answer never came back.

    Both a builtin ConnectionError and a requests one, so either kind of handler sees a real-looking drop.
    """


def parse_retry_after(value: str | None) -> float | None:
    """Seconds a `Retry-After` header asks to wait (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached the server, so even a single-use token is safe to resend."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


_UNSET: Any = object()


class Retrier:
    """How long one call keeps trying: failures by attempts, busy answers by their number, all by time waited.

    Only the back-off counts against `max_total_wait`: each try is bounded by the request timeouts, and a
    long upload that fails late still gets its retries.
    """

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.attempt = 1  # the try under way; drives the exponential step
        self.failures = 0
        self.busy = 0
        self.waited = 0.0

    def next_delay(self, retry_after: float | None, *, busy: bool) -> float | None:
        """The back-off before trying again, or None: give up and let the caller see the last outcome."""
        if busy:
            self.busy += 1
            if self.busy > MAX_BUSY_RETRIES:
                return None
        else:
            self.failures += 1
            if self.failures >= self.transport.max_attempts:
                return None
        delay = self.transport.backoff_delay(self.attempt, retry_after)
        budget = self.transport.max_total_wait
        if self.waited + delay > budget:
            log.info("giving up: waiting %.1f s more would pass the %.0f s limit", delay, budget)
            return None
        return delay

    def wait(self, delay: float) -> None:
        """Sleep out the back-off and count it against the budget."""
        self.transport._sleep(delay)
        self.waited += delay
        self.attempt += 1


class Transport:
    """The HTTP side of one phone: its session and tokens, and the retry policy the phone exposes as settings.

    The tokens are kept in memory only, so a stolen outbox file holds no credentials.
    """

    def __init__(self, base_url: str, *, session: requests.Session | None, timeout: Timeout,
                 upload_timeout: Timeout, max_attempts: int, backoff_base: float, backoff_cap: float,
                 max_retry_after: float, max_total_wait: float, sleep: Callable[[float], None],
                 rng: Callable[[], float]) -> None:
        self.base_url = base_url.rstrip("/")
        self._own_session = session is None
        self.session = session or requests.Session()
        self.session.headers["Accept"] = "application/json"
        self.session.headers["User-Agent"] = "fieldcase-phone/1"
        self.timeout = timeout
        self.upload_timeout = upload_timeout
        self.max_attempts = max(1, max_attempts)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_retry_after = max_retry_after
        self.max_total_wait = max_total_wait
        self._sleep = sleep
        self._rng = rng
        self._access_token: str | None = None
        self._refresh_token: str | None = None
        self._auth_lock = threading.Lock()

    def close(self) -> None:
        """Release the HTTP pool when we created it."""
        if self._own_session:
            self.session.close()

    def backoff_delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before try `attempt + 1`: exponential, capped, jittered, never before Retry-After.

        Without Retry-After this is "equal jitter" (half the exponential step, plus up to another half at
        random), so phones that lost the network together spread out. With it, the server's time is the
        floor and the jitter comes on top, so phones told "2 s" at the same moment do not all come back
        at the same moment and saturate the server again.
        """
        step = min(self.backoff_cap, self.backoff_base * (2 ** (attempt - 1)))
        if retry_after is None:
            return step / 2 + self._rng() * step / 2
        floor = min(max(0.0, retry_after), self.max_retry_after)
        return max(floor, step / 2) + self._rng() * max(floor, step) / 2

    def call(self, method: str, url: str, *, auth: bool = True, json_body: Any = _UNSET,
             data_factory: Callable[[], Any] | None = None, headers: Mapping[str, str] | None = None,
             params: Mapping[str, Any] | None = None, retry: bool = True, retry_network: bool = True,
             retry_statuses: frozenset[int] = RETRY_STATUSES,
             timeout: Timeout | None = None) -> requests.Response:
        """Send with bounded retries and one token refresh; returns the last response whatever its status.

        ``data_factory`` builds a fresh body per attempt, since a streamed body cannot be replayed.
        """
        full = url if url.startswith(("http://", "https://")) else self.base_url + url
        retrier = Retrier(self)
        refreshed = False
        while True:
            hdrs = dict(headers or {})
            body: Any = None
            if json_body is not _UNSET:
                body = compact_json(json_body)
                hdrs.setdefault("Content-Type", "application/json; charset=utf-8")
            elif data_factory is not None:
                body = data_factory()
            token = self._access_token if auth else None
            if token:
                hdrs["Authorization"] = f"Bearer {token}"
            try:
                resp = self.session.request(method, full, data=body, headers=hdrs, params=params,
                                            timeout=timeout or self.timeout)
            except requests.RequestException as exc:
                network = isinstance(exc, requests.ConnectionError | requests.Timeout
                                     | requests.exceptions.ChunkedEncodingError)
                may_retry = retry and network and (retry_network or _never_sent(exc))
                delay = retrier.next_delay(None, busy=False) if may_retry else None
                if delay is None:
                    raise
                log.info("%s %s failed (%s); retry %d in %.1f s", method, full, exc, retrier.attempt, delay)
                retrier.wait(delay)
                continue
            finally:
                if hasattr(body, "close"):
                    body.close()
            if resp.status_code == 401 and auth and not refreshed and self._refresh_token:
                refreshed = True
                resp.close()
                self._refresh(token)
                continue
            if retry and resp.status_code in retry_statuses:
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                busy = resp.status_code in BUSY_STATUSES and retry_after is not None
                delay = retrier.next_delay(retry_after, busy=busy)
                if delay is not None:
                    log.info("%s %s -> %d; retry %d in %.1f s", method, full, resp.status_code, retrier.attempt,
                             delay)
                    resp.close()
                    retrier.wait(delay)
                    continue
            return resp

    @staticmethod
    def json(resp: requests.Response) -> Any:
        """The body of a 2xx answer (``{}`` when empty); any other answer raises :class:`ApiError`."""
        if not 200 <= resp.status_code < 300:
            raise ApiError.from_response(resp)
        if resp.status_code == 204 or not resp.content:
            return {}
        return resp.json()

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """:meth:`call`, then :meth:`json`."""
        return self.json(self.call(method, path, **kwargs))

    def same_origin(self, url: str) -> bool:
        """Whether ``url`` is the server's own (so it may see the bearer token), not e.g. a presigned S3 URL."""
        return _origin(url) == _origin(self.base_url)

    # ------------------------------------------------------------------ auth (PROTOCOL §1)

    def login(self, username: str, password: str) -> dict[str, Any]:
        """Get a token pair and keep it."""
        payload = self.api("POST", LOGIN_PATH, auth=False, json_body={"username": username, "password": password})
        self._store_tokens(payload)
        return payload

    def set_tokens(self, access_token: str | None, refresh_token: str | None = None) -> None:
        """Hand over tokens the app kept in its own secure storage."""
        with self._auth_lock:
            self._access_token = access_token
            self._refresh_token = refresh_token

    def _store_tokens(self, payload: Mapping[str, Any]) -> None:
        self._access_token = payload["access_token"]
        self._refresh_token = payload.get("refresh_token") or self._refresh_token

    def _refresh(self, used_token: str | None) -> None:
        """Spend the refresh token once; never resend it blindly, since reuse revokes the whole family."""
        with self._auth_lock:
            if self._access_token != used_token:
                return  # another thread refreshed meanwhile
            if not self._refresh_token:
                raise AuthError(401, {"message": "no refresh token; log in again"})
            resp = self.call("POST", REFRESH_PATH, auth=False,
                             json_body={"refresh_token": self._refresh_token},
                             retry_network=False, retry_statuses=frozenset({429, 503}))
            if resp.status_code != 200:
                if resp.status_code == 401:
                    self._access_token = self._refresh_token = None
                raise ApiError.from_response(resp)
            self._store_tokens(resp.json())
