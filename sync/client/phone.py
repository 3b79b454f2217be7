"""The phone an app holds: one officer's device, tying its key, outbox, chain, transport and uploads together.

Each responsibility lives in its own module; this one is the single object an app (or a test, or the demo)
talks to, and the only one that knows how the parts are wired: which settings are the transport's, which
state is the outbox's, and how enrolment joins the key, the outbox and the server.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from sync.client import pulling, reference
from sync.client.chain import Chain
from sync.client.checks import Checker, CheckReport, Override
from sync.client.outbox import Outbox, Record
from sync.client.pushing import Pusher
from sync.client.record_types import RecordTypes
from sync.client.signing import ZERO_HASH, DeviceKey
from sync.client.transport import ApiError, Timeout, Transport
from sync.client.uploads import Uploader
from sync.client.wire import API, DEVICES_PATH, now_shanghai, rfc3339

log = logging.getLogger("fieldcase.phone")


class _Forward:
    """A phone attribute that lives on one of its parts: reading and setting it on the phone reach the part."""

    def __init__(self, part: str) -> None:
        self.part = part
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, phone: Phone | None, owner: type | None = None) -> Any:
        if phone is None:
            return self
        return getattr(getattr(phone, self.part), self.name)

    def __set__(self, phone: Phone, value: Any) -> None:
        setattr(getattr(phone, self.part), self.name, value)


class Phone:
    """One officer's phone: device key, outbox, and the HTTP conversation with the server.

    ``path_dir`` holds ``device.key`` (the private key, 0600), ``outbox.sqlite3`` and
    ``evidence/`` (files captured from bytes). ``clock`` and ``sleep`` are injectable so tests
    control time and back-off; ``rng`` gives the jitter.

    ``suite`` is the phone's kind, fixed when its key is made: ``"intl"`` (an Ed25519 key, records `EdDSA`
    chained by SHA-256; the default) or ``"sm"`` (an SM2 key, records `SM2SM3` chained by SM3). Left out, a
    phone opened again keeps the kind its outbox was made with.

    Retries: a network error or a 5xx is tried ``max_attempts`` times in all, with jittered exponential
    back-off (``backoff_base`` doubling up to ``backoff_cap`` seconds). A busy answer (``503``/``429``
    with ``Retry-After``, seconds or an HTTP date) is waited out, never sooner than the server asked
    (at most ``max_retry_after``) plus jitter, and does not count as a failed attempt. Whatever happens,
    one call stops retrying once its back-off would pass ``max_total_wait`` seconds in all, so a phone
    never hangs on a server that stays saturated: the call fails and the app syncs again later.
    """

    # Settings and state kept by the parts, read and set here as before.
    base_url = _Forward("_http")
    session = _Forward("_http")
    timeout = _Forward("_http")
    upload_timeout = _Forward("_http")
    max_attempts = _Forward("_http")
    backoff_base = _Forward("_http")
    backoff_cap = _Forward("_http")
    max_retry_after = _Forward("_http")
    max_total_wait = _Forward("_http")
    clock = _Forward("_outbox")
    public_key = _Forward("_key")
    evidence_digests = _Forward("_typed")  # which hashes an evidence.capture declares: see capture_evidence

    def __init__(self, path_dir: str | os.PathLike[str], base_url: str, *,
                 session: requests.Session | None = None,
                 timeout: Timeout = (5.0, 30.0),
                 upload_timeout: Timeout = (5.0, 300.0),
                 clock: Callable[[], datetime] | None = None,
                 max_attempts: int = 5,
                 backoff_base: float = 0.5,
                 backoff_cap: float = 30.0,
                 max_retry_after: float = 120.0,
                 max_total_wait: float = 180.0,
                 sleep: Callable[[float], None] = time.sleep,
                 rng: Callable[[], float] = random.random,
                 suite: str | None = None) -> None:
        self.dir = Path(path_dir)
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.dir / "evidence").mkdir(mode=0o700, exist_ok=True)
        self._http = Transport(base_url, session=session, timeout=timeout, upload_timeout=upload_timeout,
                               max_attempts=max_attempts, backoff_base=backoff_base, backoff_cap=backoff_cap,
                               max_retry_after=max_retry_after, max_total_wait=max_total_wait, sleep=sleep,
                               rng=rng)
        self._outbox = outbox = Outbox(self.dir / "outbox.sqlite3", clock or now_shanghai)
        # An outbox made before SM2 phones has a key but no suite: it is an Ed25519 phone's.
        made = outbox.get("suite") or ("intl" if outbox.get("public_key") is not None else None)
        if made is not None and suite is not None and suite != made:
            raise RuntimeError(f"this phone's key is of suite {made!r}, not {suite!r}: a phone keeps its kind")
        self._key = DeviceKey(self.dir / "device.key", enrolled=lambda: bool(outbox.device_id),
                              suite=made or suite or "intl")
        if made is None:
            outbox.set("suite", self._key.suite)
        known = outbox.get("public_key")
        if known is None:
            outbox.set("public_key", self.public_key)
        elif known != self.public_key:
            raise RuntimeError("device.key does not match the key this outbox was enrolled with")
        self._checker = Checker(outbox)
        self._chain = Chain(outbox, self._key, guard=self._checker)
        self._typed = RecordTypes(outbox, self._chain, self.dir / "evidence")
        self._pusher = Pusher(self._http, outbox, self._chain)
        self._uploader = Uploader(self._http, outbox)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Release the outbox file (and the HTTP pool when we created it)."""
        self._outbox.close()
        self._http.close()

    def __enter__(self) -> Phone:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rotate_key(self) -> None:
        """Replace a key that was never attached to this outbox; refused once records may depend on it."""
        if self.device_id or self._outbox.q("SELECT 1 FROM records LIMIT 1"):
            raise RuntimeError("the device key of an enrolled phone cannot be replaced")
        self._key.replace()
        self._outbox.set("public_key", self.public_key)

    # ------------------------------------------------------------------ local state

    @property
    def device_id(self) -> str | None:
        """The server's id for this device, once enrolled."""
        return self._outbox.device_id

    @property
    def suite(self) -> str:
        """``intl`` (an Ed25519 phone) or ``sm`` (an SM2 phone)."""
        return self._key.suite

    @property
    def officer_id(self) -> str | None:
        """The device owner's officer id: the `by` of every record."""
        return self._outbox.officer_id

    @property
    def head(self) -> dict[str, Any]:
        """The last head the server reported for this device (`{"seq", "hash"}`)."""
        return self._outbox.head

    @property
    def pull_cursor(self) -> str | None:
        """Where the next pull continues; None means from the beginning."""
        return self._outbox.pull_cursor

    def set_device(self, device_id: str, officer_id: str, head: Mapping[str, Any] | None = None) -> None:
        """Attach an already enrolled device (tests, or an app restoring its own state)."""
        self._outbox.set_device(device_id, officer_id, head)

    def records(self, status: str | None = None) -> list[Record]:
        """Outbox and history in chain order, optionally of one status (pending/deferred/ledger/acked)."""
        return self._outbox.records(status)

    def outbox(self) -> list[Record]:
        """What the server's head has not passed yet."""
        return self._outbox.unacknowledged()

    def dropped(self) -> list[dict[str, Any]]:
        """Records dropped after a rejection, kept for forensics (PROTOCOL §4 Recovery)."""
        return self._outbox.dropped()

    def evidence_files(self) -> list[dict[str, Any]]:
        """Captured files and where their upload stands."""
        return self._outbox.evidence_files()

    def changes(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The local copy of what pull delivered (latest state per kind and id)."""
        return self._outbox.changes(kind)

    def stats(self) -> dict[str, int]:
        """Counts per outbox status, plus dropped records and evidence awaiting upload."""
        return self._outbox.stats()

    def server_case_id(self, client_case_id: str) -> str | None:
        """The server's case id for a case this phone opened (from push refs or pulled aliases)."""
        return self._outbox.server_case_id(client_case_id)

    # ------------------------------------------------------------------ HTTP and auth (PROTOCOL §1)

    def backoff_delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before try `attempt + 1`: exponential, capped, jittered, never before Retry-After."""
        return self._http.backoff_delay(attempt, retry_after)

    def login(self, username: str, password: str) -> dict[str, Any]:
        """Get a token pair; kept in memory only, so a stolen outbox file holds no credentials."""
        return self._http.login(username, password)

    def set_tokens(self, access_token: str | None, refresh_token: str | None = None) -> None:
        """Hand over tokens the app kept in its own secure storage."""
        self._http.set_tokens(access_token, refresh_token)

    def me(self) -> dict[str, Any]:
        """The logged-in officer's profile."""
        return self._http.api("GET", API + "/me")

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """Read any API resource (a case, an inspection, ...) with this phone's token, refresh and retries.

        ``path`` is relative to the base URL (``/api/v1/cases/...``); errors raise :class:`ApiError`.
        """
        return self._http.api("GET", path, params=params)

    # ------------------------------------------------------------------ devices (PROTOCOL §2)

    def enrol(self, label: str = "fieldcase phone") -> dict[str, Any]:
        """Register the public key once; records cannot be signed before the server names the device."""
        if self.device_id:
            return {"id": self.device_id, "officer_id": self.officer_id, "head": self.head}
        try:
            payload = self._http.api("POST", DEVICES_PATH, json_body=self._enrolment(label))
        except ApiError as exc:
            if exc.status != 409:
                raise
            # The key is enrolled but the 201 never reached us (a dropped answer, then our retry), and
            # PROTOCOL §2 offers no way to look a device up by key: without its id this key can sign
            # nothing, so enrol a fresh one. The orphan device stays on the server, revocable.
            log.warning("public key already enrolled but its device id is unknown; enrolling a new key")
            self._rotate_key()
            payload = self._http.api("POST", DEVICES_PATH, json_body=self._enrolment(label))
        officer_id = payload.get("officer_id") or self.me()["id"]
        self.set_device(str(payload["id"]), str(officer_id),
                        payload.get("head") or {"seq": 0, "hash": ZERO_HASH})
        self._outbox.set("label", label)
        return payload

    def _enrolment(self, label: str) -> dict[str, Any]:
        """PROTOCOL §2's body: an Ed25519 key needs no `alg` (what servers before SM2 devices knew); SM2 says so."""
        body = {"public_key": self.public_key, "label": label}
        if self._key.suite != "intl":
            body["alg"] = self._key.alg
        return body

    def device_status(self) -> dict[str, Any]:
        """The server's view of this device; its head also lets the outbox shrink without a push."""
        device_id = self._outbox.require_device()
        payload = self._http.api("GET", f"{DEVICES_PATH}/{device_id}")
        if isinstance(payload.get("head"), Mapping):
            with self._outbox.tx():
                self._outbox.apply_head(payload["head"])
        return payload

    # ------------------------------------------------------------------ checks before signing

    def fetch_reference(self) -> dict[str, Any]:
        """Download the reference data the checks use (codes and the crew's certificates) and keep it offline.

        Call it whenever the phone is online (after login, each morning): certificates expire and are renewed.
        Returns ``{"regions", "departments", "categories", "officers" (None: the server gave none), "fetched_at"}``.
        """
        ref = reference.fetch(self._http, self._outbox)
        return {"regions": len(ref.regions), "departments": len(ref.departments), "categories": len(ref.categories),
                "officers": None if ref.officers is None else len(ref.officers), "fetched_at": ref.fetched_at}

    def check(self, type: str, body: Mapping[str, Any], at: datetime | str | None = None) -> CheckReport:
        """What signing this record would find, without signing it (``at`` defaults to now)."""
        return self._checker.check(type, body, rfc3339(at if at is not None else self._outbox.clock()))

    @property
    def last_check(self) -> CheckReport | None:
        """The check of the last record this phone signed: its ``unchecked`` says what could not be checked."""
        return self._checker.last

    # ------------------------------------------------------------------ records (PROTOCOL §3)

    def record(self, type: str, body: Mapping[str, Any], at: datetime | str | None = None, *,
               override: str | Override | Mapping[str, Any] | None = None) -> Record:
        """Check, sign and queue any record; the typed helpers below only shape bodies for it.

        A problem the check finds raises :class:`~sync.client.checks.RecordRefused` and nothing is signed.
        ``override`` signs anyway: a reason (every problem found is acknowledged), or
        ``Override(reason, codes)`` / ``{"reason", "codes"}`` to acknowledge only those problem codes. The record
        then carries ``override: {"codes", "reason"}`` (docs/protocol.md, "Checks before signing").
        """
        return self._chain.append(type, body, at, override=override)

    def open_case(self, institution: str | Mapping[str, Any], summary: str | None = None, *,
                  at: datetime | str | None = None, override: Any = None) -> str:
        """Open a case offline; returns its client_case_id (the server may merge it into an open case).

        Checked first: the credit code's check character, the region code (``override`` as in :meth:`record`).
        """
        return self._typed.open_case(institution, summary, at=at, override=override)

    def start_inspection(self, case_ref: str | Mapping[str, Any], officers: Sequence[str],
                         location: Mapping[str, Any] | None = None, task_id: str | None = None, *,
                         at: datetime | str | None = None, override: Any = None) -> str:
        """Start an inspection; its `at` opens the window full-process recording must cover.

        Checked first: every officer present holds a certificate valid that day, and at least two do.
        """
        return self._typed.start_inspection(case_ref, officers, location, task_id, at=at, override=override)

    def add_finding(self, inspection_id: str, category: str, description: str,
                    evidence: Sequence[str] = (), *, at: datetime | str | None = None, override: Any = None) -> str:
        """Record a finding; checked first: the category is in the cached violation catalogue."""
        return self._typed.add_finding(inspection_id, category, description, evidence, at=at, override=override)

    def end_inspection(self, inspection_id: str, outcome: str, notes: str | None = None, *,
                       at: datetime | str | None = None) -> str:
        """Close an inspection (closing its recording window); returns the record's op."""
        return self._typed.end_inspection(inspection_id, outcome, notes, at=at)

    def capture_evidence(self, path_or_bytes: str | os.PathLike[str] | bytes | bytearray | memoryview,
                         kind: str, media_type: str, inspection_id: str | None = None,
                         case: str | Mapping[str, Any] | None = None,
                         captured_at: datetime | str | None = None,
                         location: Mapping[str, Any] | None = None,
                         clip: Mapping[str, Any] | None = None, *,
                         at: datetime | str | None = None, digests: Sequence[str] | None = None) -> str:
        """Declare a file by hash and size before it is uploaded, so the server can tell if it changed.

        ``digests`` says which hashes the declaration carries: ``("sha256",)``, ``("sm3",)`` or both; left out, the
        phone's ``evidence_digests`` (``("sha256",)`` unless set, e.g. ``phone.evidence_digests = ("sm3",)`` on a
        phone held to the national algorithms)."""
        return self._typed.capture_evidence(path_or_bytes, kind, media_type, inspection_id, case, captured_at,
                                              location, clip, at=at, digests=digests)

    def update_case(self, case_ref: str | Mapping[str, Any], base_version: int,
                    fields: Mapping[str, Any], *, at: datetime | str | None = None) -> str:
        """Change case fields against the version the phone saw, so the server can spot conflicts."""
        return self._typed.update_case(case_ref, base_version, fields, at=at)

    def correct_record(self, op: str, fields: Mapping[str, Any], reason: str, *, at: datetime | str | None = None,
                       override: Any = None) -> str:
        """Correct what one of this officer's records said (docs/protocol.md, "Corrections"); returns its op."""
        return self._typed.correct_record(op, fields, reason, at=at, override=override)

    def report_clue(self, source: str, institution: str | Mapping[str, Any], description: str, *,
                    at: datetime | str | None = None, override: Any = None) -> str:
        """Report a clue about an institution (checked as in :meth:`open_case`); returns its clue_id."""
        return self._typed.report_clue(source, institution, description, at=at, override=override)

    def recording_interruption(self, inspection_id: str, camera_serial: str, started_at: datetime | str,
                               ended_at: datetime | str, reason: str, *,
                               at: datetime | str | None = None) -> str:
        """Explain, under signature, why the body camera stopped; returns the record's op."""
        return self._typed.recording_interruption(inspection_id, camera_serial, started_at, ended_at, reason,
                                                    at=at)

    # ------------------------------------------------------------------ push and pull (PROTOCOL §4, §5)

    def push(self, batch_size: int = 100, *, fail_after_batches: int | None = None,
             max_rounds: int | None = None) -> dict[str, Any]:
        """Send the outbox until the server has everything it will take.

        Returns ``{"counts": {status: n}, "results": [raw results], "heads": {...}, "batches": n,
        "dropped": [ops], "rechained": n, "device_error": code | None, "remaining": n}``.
        ``fail_after_batches=N`` raises :class:`SimulatedCutOff` once N batches reached the server
        but before their answer is used, to show that pushing again is safe.
        """
        return self._pusher.push(batch_size, fail_after_batches=fail_after_batches, max_rounds=max_rounds)

    def pull(self, limit: int = 100) -> list[dict[str, Any]]:
        """Page through the server's changes into the local copy; the cursor is saved with each page."""
        return pulling.pull(self._http, self._outbox, limit)

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
        return self._uploader.upload_pending()

    def purgeable(self) -> list[dict[str, Any]]:
        """Files the server verified (or deleted under retention) and allows deleting; the app decides when."""
        return self._uploader.purgeable()

    def purge(self, evidence_id: str) -> bool:
        """Delete a local copy, but only one the server has allowed; returns whether a file was removed."""
        return self._uploader.purge(evidence_id)
