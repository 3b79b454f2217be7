"""Reference phone client, built from PROTOCOL.md alone.

A phone works offline: everything the officer does becomes a signed,
hash-chained record in a local SQLite outbox, and evidence files wait next
to it. When a network is there the phone pushes records, pulls changes and
uploads files. Nothing here imports the server: if this client and the
server disagree, one of them breaks the protocol, and tests can tell which.

Typical use::

    phone = Phone("/data/phone-1", "https://fieldcase.example")
    phone.login("officer", "secret")
    phone.enrol("Officer Wang's phone")
    case = phone.open_case({"name": "...", "region": "330106"})
    insp = phone.start_inspection({"client_case_id": case}, officers=[])
    phone.push()
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import logging
import os
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

__all__ = [
    "ApiError",
    "AuthError",
    "Phone",
    "Record",
    "SimulatedCutOff",
    "ZERO_HASH",
    "b64url",
    "compact_json",
    "jws_hash",
]

log = logging.getLogger("fieldcase.phone")

ZERO_HASH = "0" * 64
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")  # no DST since 1991, so a fixed offset is exact

MAX_PUSH_RECORDS = 500
MAX_PUSH_BYTES = 8 * 1024 * 1024 - 64 * 1024  # PROTOCOL §4 allows 8 MiB; keep room for the envelope
CHUNK = 1024 * 1024

# Record statuses in the outbox.
PENDING = "pending"    # not known to the server's ledger: (re)send it
DEFERRED = "deferred"  # held by the server behind a gap: the gap's filler releases it
LEDGER = "ledger"      # a result said it is in the ledger, but no head has passed it yet
ACKED = "acked"        # the server's head has passed it: out of the outbox, kept as history
UNACKED = (PENDING, DEFERRED, LEDGER)

IN_LEDGER = frozenset({"applied", "duplicate", "conflict", "invalid"})
# Rejections that are about the device, not about one record: dropping records
# would not help, so the outbox is kept and pushing stops.
DEVICE_REJECTIONS = frozenset({"unknown_device", "device_revoked", "not_owner"})

KINDS = frozenset({"photo", "video", "audio", "document", "signature"})
# Evidence files on the phone: captured (waiting for its declaration to reach the ledger), uploading, uploaded
# (bytes sent, verdict not heard yet), verified, mismatch (the server received other bytes), changed (the file
# on the phone no longer matches its declaration and cannot be sent), purged, not_declared, record_dropped, deleted
# (the server deleted its file under the retention policy: never sent again).
# Only verified or deleted with the server's purge_allowed may be purged.
OUTCOMES = frozenset({"no_violation", "violation_found", "rectification_ordered", "not_inspected"})

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# "Busy" answers: the server is saturated (or throttling) and says when to come back with Retry-After. Nothing
# was done, so waiting and trying again is always safe; such waits are bounded by time, not by attempts.
BUSY_STATUSES = frozenset({429, 503})
MAX_BUSY_RETRIES = 50  # a last bound when a server answers Retry-After: 0 forever

_API = "/api/v1"
_LOGIN_PATH = _API + "/auth/token"  # noqa: S105 - a URL path, not a secret
_REFRESH_PATH = _API + "/auth/refresh"
_DEVICES_PATH = _API + "/devices"
_PUSH_PATH = _API + "/sync/push"
_PULL_PATH = _API + "/sync/pull"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    op TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    prev TEXT NOT NULL,
    type TEXT NOT NULL,
    body TEXT NOT NULL,
    at TEXT NOT NULL,
    jws TEXT NOT NULL,
    hash TEXT NOT NULL,
    status TEXT NOT NULL,
    result_status TEXT,
    result_code TEXT,
    result_detail TEXT,
    refs TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_seq ON records (seq);
CREATE INDEX IF NOT EXISTS records_by_status ON records (status, seq);
CREATE INDEX IF NOT EXISTS records_by_hash ON records (hash);
CREATE TABLE IF NOT EXISTS dropped (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL,
    seq INTEGER NOT NULL,
    prev TEXT NOT NULL,
    type TEXT NOT NULL,
    body TEXT NOT NULL,
    at TEXT NOT NULL,
    jws TEXT NOT NULL,
    code TEXT,
    detail TEXT,
    result TEXT,
    dropped_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS evidence (
    evidence_id TEXT PRIMARY KEY,
    op TEXT NOT NULL,
    path TEXT NOT NULL,
    owned INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    kind TEXT NOT NULL,
    media_type TEXT NOT NULL,
    status TEXT NOT NULL,
    purge_allowed INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS changes (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    data TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
"""


# --------------------------------------------------------------------------- encoding helpers


def b64url(data: bytes) -> str:
    """base64url without padding, as JWS (RFC 7515) and PROTOCOL §2 want it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def compact_json(obj: Any) -> bytes:
    """Compact UTF-8 JSON: the bytes that get signed, so they must not depend on whims of the encoder."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def jws_hash(jws: str) -> str:
    """The chain link of PROTOCOL §3: SHA-256 of the compact JWS's ASCII bytes."""
    return hashlib.sha256(jws.encode("ascii")).hexdigest()


def rfc3339(value: datetime | date | str) -> str:
    """Timestamps on the wire always carry an offset; naive ones are taken as the phone's local +08:00."""
    if isinstance(value, str):
        return value
    if not isinstance(value, datetime):
        return value.isoformat()
    if value.tzinfo is None:
        value = value.replace(tzinfo=SHANGHAI)
    return value.isoformat(timespec="milliseconds" if value.microsecond else "seconds")


def _jsonable(obj: Any) -> Any:
    """Let callers hand datetimes and UUIDs straight into bodies."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, datetime | date):
        return rfc3339(obj)
    if isinstance(obj, uuid.UUID):
        return str(obj)
    return obj


def _now_shanghai() -> datetime:
    return datetime.now(SHANGHAI)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def _verifying(evidence: Mapping[str, Any]) -> bool:
    """Whether the server says a job worker is verifying this item's upload (fieldcase's `202` extension)."""
    return any(isinstance(u, Mapping) and u.get("status") == "verifying" for u in evidence.get("uploads") or [])


def _parse_retry_after(value: str | None) -> float | None:
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


# --------------------------------------------------------------------------- public types


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


@dataclass(frozen=True)
class Record:
    """One outbox row; `jws` is exactly what is (or was) sent."""

    op: str
    seq: int
    prev: str
    type: str
    body: dict[str, Any]
    at: str
    jws: str
    hash: str
    status: str
    result_status: str | None = None
    result_code: str | None = None
    refs: dict[str, Any] | None = None

    @classmethod
    def _from_row(cls, row: sqlite3.Row) -> Record:
        return cls(op=row["op"], seq=row["seq"], prev=row["prev"], type=row["type"],
                   body=json.loads(row["body"]), at=row["at"], jws=row["jws"], hash=row["hash"],
                   status=row["status"], result_status=row["result_status"], result_code=row["result_code"],
                   refs=json.loads(row["refs"]) if row["refs"] else None)


class _FileSlice:
    """A byte range of a file as a streaming request body, so big videos never sit in memory."""

    def __init__(self, path: str | os.PathLike[str], start: int, length: int) -> None:
        self._fh = open(path, "rb")  # noqa: SIM115 - closed by close() after the request
        self._fh.seek(start)
        self._left = length
        self._length = length

    def __len__(self) -> int:
        return self._length

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        n = self._left if n is None or n < 0 else min(n, self._left)
        data = self._fh.read(n)
        self._left -= len(data)
        return data

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(CHUNK):
            yield chunk

    def close(self) -> None:
        self._fh.close()


_UNSET: Any = object()


class _Retrier:
    """How long one call keeps trying: failures by attempts, busy answers by their number, all by time waited.

    Only the back-off counts against `max_total_wait`: each try is bounded by the request timeouts, and a
    long upload that fails late still gets its retries.
    """

    def __init__(self, phone: Phone) -> None:
        self.phone = phone
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
            if self.failures >= self.phone.max_attempts:
                return None
        delay = self.phone.backoff_delay(self.attempt, retry_after)
        budget = self.phone.max_total_wait
        if self.waited + delay > budget:
            log.info("giving up: waiting %.1f s more would pass the %.0f s limit", delay, budget)
            return None
        return delay

    def wait(self, delay: float) -> None:
        self.phone._sleep(delay)
        self.waited += delay
        self.attempt += 1


# --------------------------------------------------------------------------- the phone


class Phone:
    """One officer's phone: device key, outbox, and the HTTP conversation with the server.

    ``path_dir`` holds ``device.key`` (raw Ed25519 private key, 0600), ``outbox.sqlite3`` and
    ``evidence/`` (files captured from bytes). ``clock`` and ``sleep`` are injectable so tests
    control time and back-off; ``rng`` gives the jitter.

    Retries: a network error or a 5xx is tried ``max_attempts`` times in all, with jittered exponential
    back-off (``backoff_base`` doubling up to ``backoff_cap`` seconds). A busy answer (``503``/``429``
    with ``Retry-After``, seconds or an HTTP date) is waited out, never sooner than the server asked
    (at most ``max_retry_after``) plus jitter, and does not count as a failed attempt. Whatever happens,
    one call stops retrying once its back-off would pass ``max_total_wait`` seconds in all, so a phone
    never hangs on a server that stays saturated: the call fails and the app syncs again later.
    """

    def __init__(self, path_dir: str | os.PathLike[str], base_url: str, *,
                 session: requests.Session | None = None,
                 timeout: float | tuple[float, float] = (5.0, 30.0),
                 upload_timeout: float | tuple[float, float] = (5.0, 300.0),
                 clock: Callable[[], datetime] | None = None,
                 max_attempts: int = 5,
                 backoff_base: float = 0.5,
                 backoff_cap: float = 30.0,
                 max_retry_after: float = 120.0,
                 max_total_wait: float = 180.0,
                 sleep: Callable[[float], None] = time.sleep,
                 rng: Callable[[], float] = random.random) -> None:
        self.dir = Path(path_dir)
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.dir / "evidence").mkdir(mode=0o700, exist_ok=True)
        self.base_url = base_url.rstrip("/")
        self._own_session = session is None
        self.session = session or requests.Session()
        self.session.headers["Accept"] = "application/json"
        self.session.headers["User-Agent"] = "fieldcase-phone/1"
        self.timeout = timeout
        self.upload_timeout = upload_timeout
        self.clock = clock or _now_shanghai
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
        self._db_lock = threading.RLock()
        self._tx_depth = 0
        self._db = sqlite3.connect(self.dir / "outbox.sqlite3", isolation_level=None,
                                   check_same_thread=False, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # an officer's record must survive a power cut
        self._db.executescript(_SCHEMA)
        self._key = self._load_key()
        self.public_key = b64url(self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
        known = self._get("public_key")
        if known is None:
            self._set("public_key", self.public_key)
        elif known != self.public_key:
            raise RuntimeError("device.key does not match the key this outbox was enrolled with")

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Release the outbox file (and the HTTP pool when we created it)."""
        with self._db_lock:
            self._db.close()
        if self._own_session:
            self.session.close()

    def __enter__(self) -> Phone:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rotate_key(self) -> None:
        """Replace a key that was never attached to this outbox; refused once records may depend on it."""
        if self.device_id or self._q("SELECT 1 FROM records LIMIT 1"):
            raise RuntimeError("the device key of an enrolled phone cannot be replaced")
        (self.dir / "device.key").unlink(missing_ok=True)
        self._key = self._load_key()
        self.public_key = b64url(self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
        self._set("public_key", self.public_key)

    def _load_key(self) -> Ed25519PrivateKey:
        path = self.dir / "device.key"
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            if self._get("device_id"):
                # A new key would make every queued record fail bad_signature and be dropped.
                raise RuntimeError("device.key is missing for an enrolled device; enrol a new device") from None
            key = Ed25519PrivateKey.generate()
            raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process won the race: use its key
                return self._load_key()
            with os.fdopen(fd, "wb") as fh:
                fh.write(raw)
                fh.flush()
                os.fsync(fh.fileno())
            return key
        if len(raw) != 32:
            raise RuntimeError(f"{path} is not a raw 32-byte Ed25519 private key")
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return Ed25519PrivateKey.from_private_bytes(raw)

    # ------------------------------------------------------------------ local storage

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction (nesting joins the outer one), so seq numbers are never handed out twice."""
        with self._db_lock:
            if self._tx_depth:
                self._tx_depth += 1
                try:
                    yield self._db
                finally:
                    self._tx_depth -= 1
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._tx_depth = 1
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")
            finally:
                self._tx_depth = 0

    def _q(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._db_lock:
            return self._db.execute(sql, params).fetchall()

    def _get(self, key: str) -> str | None:
        rows = self._q("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    def _set(self, key: str, value: str | None) -> None:
        with self._db_lock:
            if value is None:
                self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                self._db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                                 "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def _stamp(self) -> str:
        return rfc3339(self.clock())

    @property
    def device_id(self) -> str | None:
        """The server's id for this device, once enrolled."""
        return self._get("device_id")

    @property
    def officer_id(self) -> str | None:
        """The device owner's officer id: the `by` of every record."""
        return self._get("officer_id")

    @property
    def head(self) -> dict[str, Any]:
        """The last head the server reported for this device (`{"seq", "hash"}`)."""
        return {"seq": int(self._get("head_seq") or 0), "hash": self._get("head_hash") or ZERO_HASH}

    @property
    def pull_cursor(self) -> str | None:
        """Where the next pull continues; None means from the beginning."""
        return self._get("pull_cursor")

    def set_device(self, device_id: str, officer_id: str, head: Mapping[str, Any] | None = None) -> None:
        """Attach an already enrolled device (tests, or an app restoring its own state)."""
        head = head or {"seq": 0, "hash": ZERO_HASH}
        with self._tx():
            self._set("device_id", device_id)
            self._set("officer_id", officer_id)
            self._set("head_seq", str(int(head["seq"])))
            self._set("head_hash", str(head["hash"]))

    def records(self, status: str | None = None) -> list[Record]:
        """Outbox and history in chain order, optionally of one status (pending/deferred/ledger/acked)."""
        if status is None:
            rows = self._q("SELECT * FROM records ORDER BY seq, created_at")
        else:
            rows = self._q("SELECT * FROM records WHERE status = ? ORDER BY seq", (status,))
        return [Record._from_row(r) for r in rows]

    def outbox(self) -> list[Record]:
        """What the server's head has not passed yet."""
        rows = self._q("SELECT * FROM records WHERE status IN (?, ?, ?) ORDER BY seq", UNACKED)
        return [Record._from_row(r) for r in rows]

    def dropped(self) -> list[dict[str, Any]]:
        """Records dropped after a rejection, kept for forensics (PROTOCOL §4 Recovery)."""
        rows = self._q("SELECT * FROM dropped ORDER BY id")
        return [{**dict(r), "body": json.loads(r["body"]),
                 "result": json.loads(r["result"]) if r["result"] else None} for r in rows]

    def evidence_files(self) -> list[dict[str, Any]]:
        """Captured files and where their upload stands."""
        return [dict(r) for r in self._q("SELECT * FROM evidence ORDER BY updated_at, evidence_id")]

    def changes(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The local copy of what pull delivered (latest state per kind and id)."""
        if kind is None:
            rows = self._q("SELECT * FROM changes ORDER BY kind, id")
        else:
            rows = self._q("SELECT * FROM changes WHERE kind = ? ORDER BY id", (kind,))
        return [{"kind": r["kind"], "id": r["id"], "data": json.loads(r["data"])} for r in rows]

    def stats(self) -> dict[str, int]:
        """Counts per outbox status, plus dropped records and evidence awaiting upload."""
        out = {s: 0 for s in (*UNACKED, ACKED)}
        for r in self._q("SELECT status, COUNT(*) AS n FROM records GROUP BY status"):
            out[r["status"]] = r["n"]
        out["dropped"] = self._q("SELECT COUNT(*) AS n FROM dropped")[0]["n"]
        out["evidence_waiting"] = self._q(
            "SELECT COUNT(*) AS n FROM evidence WHERE status IN ('captured', 'uploading', 'uploaded')")[0]["n"]
        return out

    def server_case_id(self, client_case_id: str) -> str | None:
        """The server's case id for a case this phone opened (from push refs or pulled aliases)."""
        for row in self._q("SELECT body, refs FROM records WHERE type = 'case.open' AND refs IS NOT NULL"):
            if json.loads(row["body"]).get("client_case_id") == client_case_id:
                case_id = json.loads(row["refs"]).get("case_id")
                if case_id:
                    return str(case_id)
        for row in self._q("SELECT data FROM changes WHERE kind = 'case_alias'"):
            data = json.loads(row["data"])
            if data.get("client_case_id") == client_case_id and data.get("case_id"):
                return str(data["case_id"])
        return None

    # ------------------------------------------------------------------ HTTP

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

    def _call(self, method: str, url: str, *, auth: bool = True, json_body: Any = _UNSET,
              data_factory: Callable[[], Any] | None = None, headers: Mapping[str, str] | None = None,
              params: Mapping[str, Any] | None = None, retry: bool = True, retry_network: bool = True,
              retry_statuses: frozenset[int] = RETRY_STATUSES,
              timeout: float | tuple[float, float] | None = None) -> requests.Response:
        """Send with bounded retries and one token refresh; returns the last response whatever its status.

        ``data_factory`` builds a fresh body per attempt, since a streamed body cannot be replayed.
        """
        full = url if url.startswith(("http://", "https://")) else self.base_url + url
        retrier = _Retrier(self)
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
                retry_after = _parse_retry_after(resp.headers.get("Retry-After"))
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
    def _json(resp: requests.Response) -> Any:
        if not 200 <= resp.status_code < 300:
            raise ApiError.from_response(resp)
        if resp.status_code == 204 or not resp.content:
            return {}
        return resp.json()

    def _api(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._json(self._call(method, path, **kwargs))

    def _same_origin(self, url: str) -> bool:
        return _origin(url) == _origin(self.base_url)

    # ------------------------------------------------------------------ auth (PROTOCOL §1)

    def login(self, username: str, password: str) -> dict[str, Any]:
        """Get a token pair; kept in memory only, so a stolen outbox file holds no credentials."""
        payload = self._api("POST", _LOGIN_PATH, auth=False,
                            json_body={"username": username, "password": password})
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
            resp = self._call("POST", _REFRESH_PATH, auth=False,
                              json_body={"refresh_token": self._refresh_token},
                              retry_network=False, retry_statuses=frozenset({429, 503}))
            if resp.status_code != 200:
                if resp.status_code == 401:
                    self._access_token = self._refresh_token = None
                raise ApiError.from_response(resp)
            self._store_tokens(resp.json())

    def me(self) -> dict[str, Any]:
        """The logged-in officer's profile."""
        return self._api("GET", _API + "/me")

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """Read any API resource (a case, an inspection, ...) with this phone's token, refresh and retries.

        ``path`` is relative to the base URL (``/api/v1/cases/...``); errors raise :class:`ApiError`.
        """
        return self._api("GET", path, params=params)

    # ------------------------------------------------------------------ devices (PROTOCOL §2)

    def enrol(self, label: str = "fieldcase phone") -> dict[str, Any]:
        """Register the public key once; records cannot be signed before the server names the device."""
        if self.device_id:
            return {"id": self.device_id, "officer_id": self.officer_id, "head": self.head}
        try:
            payload = self._api("POST", _DEVICES_PATH, json_body={"public_key": self.public_key, "label": label})
        except ApiError as exc:
            if exc.status != 409:
                raise
            # The key is enrolled but the 201 never reached us (a dropped answer, then our retry), and
            # PROTOCOL §2 offers no way to look a device up by key: without its id this key can sign
            # nothing, so enrol a fresh one. The orphan device stays on the server, revocable.
            log.warning("public key already enrolled but its device id is unknown; enrolling a new key")
            self._rotate_key()
            payload = self._api("POST", _DEVICES_PATH, json_body={"public_key": self.public_key, "label": label})
        officer_id = payload.get("officer_id") or self.me()["id"]
        self.set_device(str(payload["id"]), str(officer_id),
                        payload.get("head") or {"seq": 0, "hash": ZERO_HASH})
        self._set("label", label)
        return payload

    def device_status(self) -> dict[str, Any]:
        """The server's view of this device; its head also lets the outbox shrink without a push."""
        device_id = self._require_device()
        payload = self._api("GET", f"{_DEVICES_PATH}/{device_id}")
        if isinstance(payload.get("head"), Mapping):
            with self._tx():
                self._apply_head(payload["head"])
        return payload

    def _require_device(self) -> str:
        device_id = self.device_id
        if not device_id or not self.officer_id:
            raise RuntimeError("enrol the device first: records are signed with its id")
        return device_id

    # ------------------------------------------------------------------ records (PROTOCOL §3)

    def _sign(self, *, op: str, seq: int, prev: str, at: str, type_: str, body: Mapping[str, Any]) -> str:
        header = {"alg": "EdDSA", "kid": self._require_device(), "typ": "fieldcase-record"}
        payload = {"v": 1, "op": op, "seq": seq, "prev": prev, "at": at, "by": self.officer_id,
                   "type": type_, "body": body}
        signing_input = b64url(compact_json(header)) + "." + b64url(compact_json(payload))
        return signing_input + "." + b64url(self._key.sign(signing_input.encode("ascii")))

    def _tail(self) -> tuple[int, str]:
        """Where the next record chains on: the last unacknowledged record, else the server's head."""
        rows = self._q("SELECT seq, hash FROM records WHERE status IN (?, ?, ?) ORDER BY seq DESC LIMIT 1",
                       UNACKED)
        if rows:
            return rows[0]["seq"], rows[0]["hash"]
        head = self.head
        return head["seq"], head["hash"]

    def record(self, type: str, body: Mapping[str, Any], at: datetime | str | None = None) -> Record:
        """Sign and queue any record; the typed helpers below only shape bodies for it."""
        self._require_device()
        if not type:
            raise ValueError("a record needs a type")
        body = _jsonable(dict(body))
        when = rfc3339(at if at is not None else self.clock())
        op = str(uuid.uuid4())
        with self._tx() as db:
            seq, prev = self._tail()
            seq += 1
            jws = self._sign(op=op, seq=seq, prev=prev, at=when, type_=type, body=body)
            now = self._stamp()
            db.execute("INSERT INTO records (op, seq, prev, type, body, at, jws, hash, status, created_at, "
                       "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (op, seq, prev, type, compact_json(body).decode("utf-8"), when, jws, jws_hash(jws),
                        PENDING, now, now))
        return Record(op=op, seq=seq, prev=prev, type=type, body=body, at=when, jws=jws, hash=jws_hash(jws),
                      status=PENDING)

    def _case_ref(self, ref: str | Mapping[str, Any]) -> dict[str, Any]:
        """A dict passes through; a bare string is this phone's client_case_id if it opened it, else a server id."""
        if isinstance(ref, Mapping):
            ref = dict(ref)
            if not ({"id", "client_case_id"} & ref.keys()):
                raise ValueError("a case reference is {'id'} or {'client_case_id'}")
            return ref
        ref = str(ref)
        for row in self._q("SELECT body FROM records WHERE type = 'case.open'"):
            if json.loads(row["body"]).get("client_case_id") == ref:
                return {"client_case_id": ref}
        return {"id": ref}

    @staticmethod
    def _institution(inst: str | Mapping[str, Any]) -> dict[str, Any]:
        if isinstance(inst, Mapping):
            inst = dict(inst)
            if "id" not in inst and not ({"name", "region"} <= inst.keys()):
                raise ValueError("an institution is {'id'} or {'name', 'region', 'credit_code'?, 'address'?}")
            return inst
        return {"id": str(inst)}

    def open_case(self, institution: str | Mapping[str, Any], summary: str | None = None, *,
                  at: datetime | str | None = None) -> str:
        """Open a case offline; returns its client_case_id (the server may merge it into an open case)."""
        client_case_id = str(uuid.uuid4())
        body: dict[str, Any] = {"client_case_id": client_case_id, "institution": self._institution(institution)}
        if summary is not None:
            body["summary"] = summary
        self.record("case.open", body, at)
        return client_case_id

    def start_inspection(self, case_ref: str | Mapping[str, Any], officers: Sequence[str],
                         location: Mapping[str, Any] | None = None, task_id: str | None = None, *,
                         at: datetime | str | None = None) -> str:
        """Start an inspection; its `at` opens the window full-process recording must cover."""
        owner = self.officer_id
        present = [str(o) for o in officers]
        if owner and owner not in present:
            present.insert(0, owner)  # PROTOCOL: the device owner is always among them
        inspection_id = str(uuid.uuid4())
        body: dict[str, Any] = {"inspection_id": inspection_id, "case": self._case_ref(case_ref),
                                "officers": present}
        if location is not None:
            body["location"] = dict(location)
        if task_id is not None:
            body["task_id"] = task_id
        self.record("inspection.start", body, at)
        return inspection_id

    def add_finding(self, inspection_id: str, category: str, description: str,
                    evidence: Sequence[str] = (), *, at: datetime | str | None = None) -> str:
        """Record a finding; the category is not checked here because the catalogue is the server's."""
        finding_id = str(uuid.uuid4())
        self.record("inspection.finding", {"inspection_id": inspection_id, "finding_id": finding_id,
                                           "category": category, "description": description,
                                           "evidence": [str(e) for e in evidence]}, at)
        return finding_id

    def end_inspection(self, inspection_id: str, outcome: str, notes: str | None = None, *,
                       at: datetime | str | None = None) -> str:
        """Close an inspection (closing its recording window); returns the record's op."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}")
        body: dict[str, Any] = {"inspection_id": inspection_id, "outcome": outcome}
        if notes is not None:
            body["notes"] = notes
        return self.record("inspection.end", body, at).op

    def capture_evidence(self, path_or_bytes: str | os.PathLike[str] | bytes | bytearray | memoryview,
                         kind: str, media_type: str, inspection_id: str | None = None,
                         case: str | Mapping[str, Any] | None = None,
                         captured_at: datetime | str | None = None,
                         location: Mapping[str, Any] | None = None,
                         clip: Mapping[str, Any] | None = None, *,
                         at: datetime | str | None = None) -> str:
        """Declare a file by hash and size before it is uploaded, so the server can tell if it changed."""
        self._require_device()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}")
        evidence_id = str(uuid.uuid4())
        if isinstance(path_or_bytes, bytes | bytearray | memoryview):
            path = self.dir / "evidence" / evidence_id
            data = bytes(path_or_bytes)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            owned = True
        else:
            path = Path(path_or_bytes).resolve()
            owned = False
        digest = hashlib.sha256()
        size = 0
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
        body: dict[str, Any] = {"evidence_id": evidence_id}
        if inspection_id is not None:
            body["inspection_id"] = inspection_id
        if case is not None:
            body["case"] = self._case_ref(case)
        body.update({"kind": kind, "media_type": media_type, "sha256": digest.hexdigest(), "size": size,
                     "captured_at": rfc3339(captured_at if captured_at is not None else self.clock())})
        if location is not None:
            body["location"] = dict(location)
        if clip is not None:
            body["clip"] = dict(clip)
        with self._tx() as db:
            rec = self.record("evidence.capture", body, at)
            db.execute("INSERT INTO evidence (evidence_id, op, path, owned, sha256, size, kind, media_type, "
                       "status, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'captured', ?)",
                       (evidence_id, rec.op, str(path), int(owned), body["sha256"], size, kind, media_type,
                        self._stamp()))
        return evidence_id

    def update_case(self, case_ref: str | Mapping[str, Any], base_version: int,
                    fields: Mapping[str, Any], *, at: datetime | str | None = None) -> str:
        """Change case fields against the version the phone saw, so the server can spot conflicts."""
        if not fields:
            raise ValueError("update_case needs at least one changed field")
        return self.record("case.update", {"case": self._case_ref(case_ref), "base_version": base_version,
                                           "fields": dict(fields)}, at).op

    def report_clue(self, source: str, institution: str | Mapping[str, Any], description: str, *,
                    at: datetime | str | None = None) -> str:
        """Report a clue about an institution; returns its clue_id."""
        clue_id = str(uuid.uuid4())
        self.record("clue.report", {"clue_id": clue_id, "source": source,
                                    "institution": self._institution(institution),
                                    "description": description}, at)
        return clue_id

    def recording_interruption(self, inspection_id: str, camera_serial: str, started_at: datetime | str,
                               ended_at: datetime | str, reason: str, *,
                               at: datetime | str | None = None) -> str:
        """Explain, under signature, why the body camera stopped; returns the record's op."""
        return self.record("recording.interruption", {
            "inspection_id": inspection_id, "camera_serial": camera_serial,
            "started_at": rfc3339(started_at), "ended_at": rfc3339(ended_at), "reason": reason}, at).op

    # ------------------------------------------------------------------ push (PROTOCOL §4)

    def _sendable(self) -> list[Record]:
        """Pending records, plus held ones only when nothing of ours precedes them that could fill their gap."""
        out: list[Record] = []
        seen_pending = False
        for rec in self.outbox():
            if rec.status == PENDING:
                seen_pending = True
                out.append(rec)
            elif not seen_pending:
                out.append(rec)  # the server said held/in ledger, yet its head stops short: ask again
        return out

    @staticmethod
    def _batches(records: list[Record], batch_size: int) -> Iterator[list[Record]]:
        batch: list[Record] = []
        size = 0
        for rec in records:
            n = len(rec.jws) + 3
            if batch and (len(batch) >= batch_size or size + n > MAX_PUSH_BYTES):
                yield batch
                batch, size = [], 0
            batch.append(rec)
            size += n
        if batch:
            yield batch

    def push(self, batch_size: int = 100, *, fail_after_batches: int | None = None,
             max_rounds: int | None = None) -> dict[str, Any]:
        """Send the outbox until the server has everything it will take.

        Returns ``{"counts": {status: n}, "results": [raw results], "heads": {...}, "batches": n,
        "dropped": [ops], "rechained": n, "device_error": code | None, "remaining": n}``.
        ``fail_after_batches=N`` raises :class:`SimulatedCutOff` once N batches reached the server
        but before their answer is used, to show that pushing again is safe.
        """
        device_id = self._require_device()
        batch_size = max(1, min(int(batch_size), MAX_PUSH_RECORDS))
        summary: dict[str, Any] = {"counts": {}, "results": [], "heads": {}, "batches": 0, "dropped": [],
                                   "rechained": 0, "device_error": None, "remaining": 0}
        rounds_left = max_rounds if max_rounds is not None else len(self.outbox()) + 5
        while rounds_left > 0:
            rounds_left -= 1
            todo = self._sendable()
            if not todo:
                break
            again = False
            for batch in self._batches(todo, batch_size):
                resp = self._call("POST", _PUSH_PATH, json_body={"records": [r.jws for r in batch]})
                if resp.status_code == 413 and len(batch) > 1:
                    batch_size = max(1, len(batch) // 2)
                    again = True
                    break
                payload = self._json(resp)
                summary["batches"] += 1
                if fail_after_batches is not None and summary["batches"] >= fail_after_batches:
                    raise SimulatedCutOff(f"connection dropped after batch {summary['batches']} was sent")
                outcome = self._take_push_answer(device_id, payload, summary, batch)
                if outcome == "stop":
                    summary["remaining"] = len(self.outbox())
                    return summary
                if outcome == "recovered":
                    again = True
                    break
            if not again:
                break
        summary["remaining"] = len(self.outbox())
        return summary

    def _take_push_answer(self, device_id: str, payload: Mapping[str, Any], summary: dict[str, Any],
                          batch: Sequence[Record] = ()) -> str:
        results = payload.get("results") or []
        heads = payload.get("heads") or {}
        rejected: list[Mapping[str, Any]] = []
        with self._tx() as db:
            now = self._stamp()
            for i, res in enumerate(results):
                summary["results"].append(res)
                if not res.get("op") and i < len(batch):
                    # e.g. a bad signature the server would not read further: results come in the order sent
                    res = {**res, "op": batch[i].op, "seq": res.get("seq") or batch[i].seq}
                status = str(res.get("status"))
                summary["counts"][status] = summary["counts"].get(status, 0) + 1
                rows = db.execute("SELECT seq, status FROM records WHERE op = ?", (res.get("op"),)).fetchall()
                if not rows or rows[0]["status"] == ACKED:
                    continue
                if res.get("seq") is not None and int(res["seq"]) != rows[0]["seq"]:
                    continue  # an answer about an earlier numbering of this record
                new_status = rows[0]["status"]
                if status in IN_LEDGER:
                    new_status = LEDGER
                elif status == "deferred":
                    new_status = DEFERRED
                elif status == "rejected":
                    rejected.append(res)
                refs = res.get("refs")
                db.execute("UPDATE records SET status = ?, result_status = ?, result_code = ?, "
                           "result_detail = ?, refs = COALESCE(?, refs), updated_at = ? WHERE op = ?",
                           (new_status, status, res.get("code"),
                            None if res.get("detail") is None else str(res.get("detail")),
                            None if refs is None else compact_json(refs).decode("utf-8"), now, res.get("op")))
                if status == "invalid":
                    db.execute("UPDATE evidence SET status = 'not_declared', last_error = ?, updated_at = ? "
                               "WHERE op = ? AND status = 'captured'", (res.get("code"), now, res.get("op")))
            head = heads.get(device_id)
            if isinstance(head, Mapping):
                summary["heads"][device_id] = dict(head)
                self._apply_head(head)
            if not rejected:
                return "ok"
            device_codes = sorted({str(r.get("code")) for r in rejected} & DEVICE_REJECTIONS)
            if device_codes:
                summary["device_error"] = device_codes[0]
                log.warning("push stopped: device rejected (%s); outbox kept", device_codes[0])
                return "stop"
            done = self._recover(head if isinstance(head, Mapping) else self.head, rejected)
        summary["dropped"].extend(done["dropped"])
        summary["rechained"] += done["rechained"]
        return "recovered"

    def _apply_head(self, head: Mapping[str, Any]) -> int:
        """Acknowledge what the head has passed: its record and the chain behind it, by hash, not by count."""
        seq, digest = int(head["seq"]), str(head["hash"])
        with self._tx() as db:
            self._set("head_seq", str(seq))
            self._set("head_hash", digest)
            if seq == 0:
                return 0
            acked = 0
            now = self._stamp()
            row = db.execute("SELECT op, seq, prev, status FROM records WHERE seq = ? AND hash = ?",
                             (seq, digest)).fetchone()
            if row is None:
                if db.execute("SELECT 1 FROM records WHERE status IN (?, ?, ?) AND seq <= ?",
                              (*UNACKED, seq)).fetchone():
                    log.warning("server head %d:%s is not on this phone's chain", seq, digest[:12])
                return 0
            while row is not None and row["status"] != ACKED:
                db.execute("UPDATE records SET status = ?, updated_at = ? WHERE op = ?", (ACKED, now, row["op"]))
                acked += 1
                row = db.execute("SELECT op, seq, prev, status FROM records WHERE seq = ? AND hash = ?",
                                 (row["seq"] - 1, row["prev"])).fetchone()
            return acked

    def _recover(self, head: Mapping[str, Any], rejected: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """PROTOCOL §4 Recovery: drop the rejected records, then rebuild the chain on the server's head."""
        dropped: list[str] = []
        with self._tx() as db:
            now = self._stamp()
            for res in rejected:
                row = db.execute("SELECT * FROM records WHERE op = ?", (res.get("op"),)).fetchone()
                if row is None or row["status"] == ACKED:
                    continue
                if res.get("seq") is not None and int(res["seq"]) != row["seq"]:
                    continue
                db.execute("INSERT INTO dropped (op, seq, prev, type, body, at, jws, code, detail, result, "
                           "dropped_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (row["op"], row["seq"], row["prev"], row["type"], row["body"], row["at"], row["jws"],
                            res.get("code"), None if res.get("detail") is None else str(res.get("detail")),
                            compact_json(dict(res)).decode("utf-8"), now))
                db.execute("DELETE FROM records WHERE op = ?", (row["op"],))
                db.execute("UPDATE evidence SET status = 'record_dropped', last_error = ?, updated_at = ? "
                           "WHERE op = ?", (res.get("code"), now, row["op"]))
                dropped.append(row["op"])
            self._apply_head(head)
            rechained = self._rechain(head)
        log.info("recovery: dropped %d, re-chained %d on head %s", len(dropped), rechained, head.get("seq"))
        return {"dropped": dropped, "rechained": rechained}

    def _rechain(self, head: Mapping[str, Any]) -> int:
        """Renumber and re-sign every unacknowledged record from the head on; op, type, body and at stay."""
        seq, prev = int(head["seq"]), str(head["hash"])
        changed = 0
        with self._tx() as db:
            now = self._stamp()
            rows = db.execute("SELECT * FROM records WHERE status IN (?, ?, ?) ORDER BY seq, created_at",
                              UNACKED).fetchall()
            for row in rows:
                seq += 1
                if row["seq"] == seq and row["prev"] == prev:
                    prev = row["hash"]
                    continue
                jws = self._sign(op=row["op"], seq=seq, prev=prev, at=row["at"], type_=row["type"],
                                 body=json.loads(row["body"]))
                db.execute("UPDATE records SET seq = ?, prev = ?, jws = ?, hash = ?, status = ?, "
                           "result_status = NULL, result_code = NULL, result_detail = NULL, updated_at = ? "
                           "WHERE op = ?", (seq, prev, jws, jws_hash(jws), PENDING, now, row["op"]))
                prev = jws_hash(jws)
                changed += 1
        return changed

    # ------------------------------------------------------------------ pull (PROTOCOL §5)

    def pull(self, limit: int = 100) -> list[dict[str, Any]]:
        """Page through the server's changes into the local copy; the cursor is saved with each page."""
        limit = max(1, min(int(limit), 500))
        received: list[dict[str, Any]] = []
        restarted = False
        cursor = self.pull_cursor
        while True:
            params: dict[str, Any] = {"limit": limit}
            if cursor:
                params["cursor"] = cursor
            resp = self._call("GET", _PULL_PATH, params=params)
            if resp.status_code == 410 and cursor and not restarted:
                # The server forgot our place: start over and rebuild the local copy from scratch.
                restarted = True
                cursor = None
                received = []
                with self._tx() as db:
                    db.execute("DELETE FROM changes")
                    self._set("pull_cursor", None)
                continue
            payload = self._json(resp)
            changes = list(payload.get("changes") or [])
            new_cursor = payload.get("cursor") or cursor
            with self._tx():
                for change in changes:
                    self._store_change(change)
                if new_cursor:
                    self._set("pull_cursor", str(new_cursor))
            received.extend(changes)
            if not payload.get("has_more"):
                break
            if not changes and new_cursor == cursor:
                log.warning("pull: has_more without progress; stopping")
                break
            cursor = new_cursor
        return received

    def _store_change(self, change: Mapping[str, Any]) -> None:
        kind, ident = str(change.get("kind")), str(change.get("id"))
        data = change.get("data") or {}
        with self._tx() as db:
            if change.get("op") == "delete":
                db.execute("DELETE FROM changes WHERE kind = ? AND id = ?", (kind, ident))
            else:
                db.execute("INSERT INTO changes (kind, id, data, received_at) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT (kind, id) DO UPDATE SET data = excluded.data, "
                           "received_at = excluded.received_at",
                           (kind, ident, compact_json(data).decode("utf-8"), self._stamp()))
                if kind == "evidence" and isinstance(data, Mapping):
                    self._note_evidence_status(ident, data)

    def _note_evidence_status(self, evidence_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        status = data.get("status")
        purge = bool(data.get("purge_allowed")) and status in ("verified", "deleted")  # belt and braces
        with self._tx() as db:
            if status in ("verified", "mismatch", "deleted"):
                # A purged copy stays purged: a later pull of the same verdict must not offer it again.
                db.execute("UPDATE evidence SET status = ?, purge_allowed = ?, last_error = NULL, updated_at = ? "
                           "WHERE evidence_id = ? AND status != 'purged'",
                           (status, int(purge), self._stamp(), evidence_id))
            elif status is not None:
                db.execute("UPDATE evidence SET purge_allowed = 0, updated_at = ? WHERE evidence_id = ?",
                           (self._stamp(), evidence_id))
        return {"evidence_id": evidence_id, "status": status, "purge_allowed": purge}

    # ------------------------------------------------------------------ evidence upload (PROTOCOL §6)

    def upload_pending(self) -> list[dict[str, Any]]:
        """Upload every captured file whose declaration the ledger holds; one failure never stops the rest.

        Returns one ``{"evidence_id", "status", "purge_allowed", "error"?}`` per file tried. ``status`` is
        the server's verdict (``verified``, ``mismatch``) or where the upload stands (``uploading``,
        ``uploaded``: every byte sent, the verdict still to come, e.g. from a server's job worker, which
        :meth:`pull` or the next call brings; ``changed``: the file on the phone is no longer the one declared and
        cannot be sent).
        ``error`` says what went wrong, a ``mismatch`` included; it is also kept as ``last_error`` in
        :meth:`evidence_files`. ``deleted`` (a 410: retention removed the server's file) is never tried again.
        Only ``verified`` or ``deleted`` with ``purge_allowed`` lets :meth:`purge` delete the copy.
        """
        rows = self._q(
            "SELECT e.*, r.result_status FROM evidence e JOIN records r ON r.op = e.op "
            "WHERE e.status IN ('captured', 'uploading', 'uploaded') AND r.status IN (?, ?) ORDER BY r.seq",
            (LEDGER, ACKED))
        out: list[dict[str, Any]] = []
        for row in rows:
            eid = row["evidence_id"]
            try:
                out.append(self._upload_one(row))
            except (ApiError, requests.RequestException, OSError, ValueError, KeyError) as exc:
                log.warning("upload of %s failed: %s", eid, exc)
                with self._tx() as db:
                    db.execute("UPDATE evidence SET last_error = ?, updated_at = ? WHERE evidence_id = ?",
                               (str(exc)[:500], self._stamp(), eid))
                out.append({"evidence_id": eid, "status": self._evidence_status(eid), "purge_allowed": False,
                            "error": str(exc)})
        return out

    def _evidence_status(self, evidence_id: str) -> str:
        rows = self._q("SELECT status FROM evidence WHERE evidence_id = ?", (evidence_id,))
        return rows[0]["status"] if rows else "unknown"

    def _set_evidence_status(self, evidence_id: str, status: str, error: str | None = _UNSET) -> None:
        with self._tx() as db:
            if error is _UNSET:
                db.execute("UPDATE evidence SET status = ?, updated_at = ? WHERE evidence_id = ?",
                           (status, self._stamp(), evidence_id))
            else:
                db.execute("UPDATE evidence SET status = ?, last_error = ?, updated_at = ? WHERE evidence_id = ?",
                           (status, None if error is None else error[:500], self._stamp(), evidence_id))

    @staticmethod
    def _local_difference(path: str, sha256: str, size: int) -> str | None:
        """How the file on the phone differs from its signed declaration; None when it is still the same."""
        digest = hashlib.sha256()
        actual = 0
        try:
            with open(path, "rb") as fh:
                while chunk := fh.read(CHUNK):
                    digest.update(chunk)
                    actual += len(chunk)
        except FileNotFoundError:
            return f"the file {path} is gone"
        if actual != size:
            return f"the file on the phone is now {actual} bytes, {size} were declared"
        if digest.hexdigest() != sha256:
            return f"the file on the phone now hashes to {digest.hexdigest()}, {sha256} was declared"
        return None

    def _changed(self, evidence_id: str, problem: str) -> dict[str, Any]:
        """The file changed on the phone after capture, in a way the server cannot be shown: stop, keep it, say so."""
        error = f"changed after capture: {problem}; the file is kept and not uploaded again"
        log.warning("evidence %s %s", evidence_id, error)
        self._set_evidence_status(evidence_id, "changed", error)
        return {"evidence_id": evidence_id, "status": "changed", "purge_allowed": False, "error": error}

    def _upload_one(self, row: sqlite3.Row) -> dict[str, Any]:
        try:
            return self._try_upload(row)
        except ApiError as exc:
            if exc.status != 410:
                raise
            # Deleted under the retention policy: the server will never take this file again.
            log.info("evidence %s: %s", row["evidence_id"], exc.message)
            noted = self._note_evidence_status(row["evidence_id"], {"status": "deleted", "purge_allowed": True})
            with self._tx() as db:
                db.execute("UPDATE evidence SET last_error = ? WHERE evidence_id = ?",
                           (exc.message[:500], row["evidence_id"]))
            return {**noted, "error": exc.message}

    def _try_upload(self, row: sqlite3.Row) -> dict[str, Any]:
        eid, path, size, sha256 = row["evidence_id"], row["path"], int(row["size"]), row["sha256"]
        base = f"{_API}/evidence/{eid}"
        resuming = row["status"] == "uploading"
        if row["status"] == "uploaded":
            # The bytes went up but the verdict never arrived: ask for it instead of sending again.
            current = self._api("GET", base)
            if current.get("status") in ("verified", "mismatch", "deleted"):
                return self._finish_upload(eid, current)
            if _verifying(current):
                # A job worker has it. Completing again is safe: it answers the verdict once there is one, and
                # otherwise has the server queue the check again, in case the first job was lost.
                return self._after_complete(eid, self._api("POST", f"{base}/complete", json_body={}))
            # No verdict: completing found bytes missing (or never ran). Continue where the server stopped.
            resuming = True
        if not os.path.exists(path):
            raise FileNotFoundError(f"evidence file {path} is gone")
        if os.path.getsize(path) < size:
            # Fewer bytes than declared can never complete an upload, and a Content-Length the body
            # cannot fill would leave the server waiting for the rest: report it instead.
            return self._changed(eid, self._local_difference(path, sha256, size) or "the file is shorter")
        try:
            plan = self._api("POST", f"{base}/uploads", json_body={})
        except ApiError as exc:
            if exc.status != 409:
                raise
            current = self._api("GET", base)  # verified already: the verdict's answer was lost on the way
            if _verifying(current):
                self._set_evidence_status(eid, "uploaded")
                return self._waiting(eid)
            if current.get("status") != "verified":
                raise
            return self._finish_upload(eid, current)
        self._set_evidence_status(eid, "uploading")
        method = str(plan.get("method", "")).upper()
        if method == "PUT":
            url = str(plan["url"])
            try:
                self._put_whole(path, size, url, plan.get("headers") or {}, resume=resuming)
            except ApiError as exc:
                # An object store that checks the bytes itself (S3 does when a plan carries x-amz-checksum-sha256)
                # refuses other bytes outright, so the server never sees them: find out whether the phone's copy
                # changed.
                if self._same_origin(url) or exc.status != 400:
                    raise
                problem = self._local_difference(path, sha256, size)
                if problem is None:
                    raise
                return self._changed(eid, f"{problem} (the object store refused it: {exc.message})")
            complete: dict[str, Any] = {}
        elif method == "MULTIPART":
            complete = {"parts": self._put_parts(path, size, plan)}
        else:
            raise ValueError(f"unknown upload plan method {plan.get('method')!r}")
        self._set_evidence_status(eid, "uploaded")
        try:
            result = self._api("POST", f"{base}/complete", json_body=complete)
        except ApiError as exc:
            if exc.status == 409:  # e.g. bytes still missing: the next try probes the offset and resumes
                self._set_evidence_status(eid, "uploading")
            raise
        return self._after_complete(eid, result)

    def _after_complete(self, evidence_id: str, result: Mapping[str, Any]) -> dict[str, Any]:
        """The answer to `complete`: a verdict, or (`202`, upload `verifying`) a verdict still to come."""
        if result.get("status") in ("verified", "mismatch", "deleted"):
            return self._finish_upload(evidence_id, result)
        return self._waiting(evidence_id)

    def _waiting(self, evidence_id: str) -> dict[str, Any]:
        """Stay `uploaded`: the server has every byte and a worker gives the verdict, which :meth:`pull` (the
        evidence change) or the next :meth:`upload_pending` brings. Never purge before it: purge_allowed is 0."""
        with self._tx() as db:
            db.execute("UPDATE evidence SET purge_allowed = 0, updated_at = ? WHERE evidence_id = ?",
                       (self._stamp(), evidence_id))
        return {"evidence_id": evidence_id, "status": "uploaded", "purge_allowed": False}

    def _finish_upload(self, evidence_id: str, result: Mapping[str, Any]) -> dict[str, Any]:
        if "purge_allowed" not in result and result.get("status") in ("verified", "mismatch"):
            try:  # the verdict may come without the flag: only the server may allow deleting the copy
                result = {**self._api("GET", f"{_API}/evidence/{evidence_id}"), **result}
            except (ApiError, requests.RequestException) as exc:
                log.info("could not read purge_allowed for %s: %s", evidence_id, exc)
        noted = self._note_evidence_status(evidence_id, result)
        if noted["status"] == "mismatch":
            noted["error"] = self._mismatch_error(evidence_id, result)
            log.warning("evidence %s: %s", evidence_id, noted["error"])
            with self._tx() as db:
                db.execute("UPDATE evidence SET last_error = ? WHERE evidence_id = ?",
                           (noted["error"][:500], evidence_id))
        return noted

    def _mismatch_error(self, evidence_id: str, result: Mapping[str, Any]) -> str:
        """What a `mismatch` means for this phone: the server's received hash, and whether our copy changed."""
        rows = self._q("SELECT path, sha256, size FROM evidence WHERE evidence_id = ?", (evidence_id,))
        uploads = [u for u in result.get("uploads") or [] if isinstance(u, Mapping) and u.get("status") == "mismatch"]
        got = uploads[-1] if uploads else {}
        text = (f"mismatch: the server received {got.get('received_size', '?')} bytes with sha256 "
                f"{got.get('received_sha256') or '?'}, not the declared ones; the local copy is kept")
        if rows:
            problem = self._local_difference(rows[0]["path"], rows[0]["sha256"], int(rows[0]["size"]))
            text += f" ({problem})" if problem else " (the phone's copy still matches its declaration)"
        return text

    def _probe_offset(self, url: str) -> int | None:
        """Ask the server's own store how much it kept; None means start over."""
        try:
            resp = self._call("HEAD", url, auth=True, timeout=self.timeout)
        except requests.RequestException as exc:
            log.info("HEAD %s failed: %s", url, exc)
            return None
        if resp.status_code // 100 != 2:
            return None
        try:
            return int(resp.headers.get("Upload-Offset", ""))
        except ValueError:
            return None

    def _put_whole(self, path: str, size: int, url: str, plan_headers: Mapping[str, str], *,
                   resume: bool) -> None:
        """One PUT of the whole file; on the server's own store resume from `Upload-Offset` after a failure."""
        own = self._same_origin(url)  # bearer token only for our API, never for a presigned object-store URL
        offset = (self._probe_offset(url) or 0) if own and resume else 0
        retrier = _Retrier(self)
        while True:
            if size and offset >= size:
                return  # every byte is there already; only the answer was lost
            headers = dict(plan_headers)
            if offset:
                headers["Content-Range"] = f"bytes {offset}-{size - 1}/{size}"
            retry_after: float | None = None
            busy = False
            try:
                resp = self._call("PUT", url, auth=own, headers=headers, retry=False,
                                  timeout=self.upload_timeout,
                                  data_factory=lambda s=offset: _FileSlice(path, s, size - s) if size else b"")
                if 200 <= resp.status_code < 300:
                    return
                # 409/422 with Upload-Offset: the server holds another amount than we assumed (a retry after
                # a drop it had not yet seen, a body cut short): continue from its offset.
                resumable = own and resp.status_code in (409, 422) and "Upload-Offset" in resp.headers
                if resp.status_code not in RETRY_STATUSES and not resumable:
                    raise ApiError.from_response(resp)
                retry_after = _parse_retry_after(resp.headers.get("Retry-After"))
                busy = resp.status_code in BUSY_STATUSES and retry_after is not None
                error: Exception = ApiError.from_response(resp)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                error = exc
            delay = retrier.next_delay(retry_after, busy=busy)
            if delay is None:
                raise error
            log.info("PUT %s failed (%s); retry %d in %.1f s", url, error, retrier.attempt, delay)
            retrier.wait(delay)
            if own:
                probed = self._probe_offset(url)
                offset = probed if probed is not None and 0 <= probed <= size else 0
            else:
                offset = 0  # presigned PUTs cannot resume: send it all again

    def _put_parts(self, path: str, size: int, plan: Mapping[str, Any]) -> list[dict[str, Any]]:
        part_size = int(plan["part_size"])
        done: list[dict[str, Any]] = []
        for part in sorted(plan["parts"], key=lambda p: int(p["number"])):
            number, url = int(part["number"]), str(part["url"])
            start = (number - 1) * part_size
            length = min(part_size, size - start)
            if length <= 0:
                raise ValueError(f"part {number} lies past the end of a {size}-byte file")
            resp = self._call("PUT", url, auth=self._same_origin(url), headers=part.get("headers"),
                              timeout=self.upload_timeout,
                              data_factory=lambda s=start, n=length: _FileSlice(path, s, n))
            if not 200 <= resp.status_code < 300:
                raise ApiError.from_response(resp)
            etag = resp.headers.get("ETag")
            if not etag:
                raise ValueError(f"no ETag for part {number}; is the bucket's CORS exposing it?")
            done.append({"number": number, "etag": etag})
        return done

    def purgeable(self) -> list[dict[str, Any]]:
        """Files the server verified (or deleted under retention) and allows deleting; the app decides when."""
        return [dict(r) for r in self._q("SELECT evidence_id, path, size FROM evidence WHERE purge_allowed = 1 "
                                         "AND status IN ('verified', 'deleted')")]

    def purge(self, evidence_id: str) -> bool:
        """Delete a local copy, but only one the server has allowed; returns whether a file was removed."""
        rows = self._q("SELECT path, purge_allowed, status FROM evidence WHERE evidence_id = ?", (evidence_id,))
        if not rows or not rows[0]["purge_allowed"] or rows[0]["status"] not in ("verified", "deleted"):
            return False
        with suppress(FileNotFoundError):
            os.remove(rows[0]["path"])
        self._set_evidence_status(evidence_id, "purged")
        return True
