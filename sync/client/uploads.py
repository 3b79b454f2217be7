"""Evidence upload (PROTOCOL §6): sending each declared file's bytes and hearing the server's verdict.

Photos and videos are big and networks drop, so an upload follows the server's plan (one PUT, resumable on the
server's own store from ``Upload-Offset``; or presigned multipart PUTs to an object store), streams from the
file, and never trusts a lost answer: it asks where things stand before sending again. The phone keeps its copy
until the server has verified the bytes against the signed declaration and allows deleting it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import suppress
from typing import Any

import requests

from sync.client.outbox import ACKED, LEDGER, Outbox
from sync.client.transport import BUSY_STATUSES, RETRY_STATUSES, ApiError, Retrier, Transport, parse_retry_after
from sync.client.wire import API, CHUNK

log = logging.getLogger("fieldcase.phone")


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


def _verifying(evidence: Mapping[str, Any]) -> bool:
    """Whether the server says a job worker is verifying this item's upload (fieldcase's `202` extension)."""
    return any(isinstance(u, Mapping) and u.get("status") == "verifying" for u in evidence.get("uploads") or [])


class Uploader:
    """Uploads one phone's captured files and keeps their status in its outbox."""

    def __init__(self, http: Transport, outbox: Outbox) -> None:
        self._http = http
        self._outbox = outbox

    def upload_pending(self) -> list[dict[str, Any]]:
        """Upload every captured file whose declaration the ledger holds (see :meth:`Phone.upload_pending`)."""
        rows = self._outbox.q(
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
                with self._outbox.tx() as db:
                    db.execute("UPDATE evidence SET last_error = ?, updated_at = ? WHERE evidence_id = ?",
                               (str(exc)[:500], self._outbox.stamp(), eid))
                out.append({"evidence_id": eid, "status": self._outbox.evidence_status(eid), "purge_allowed": False,
                            "error": str(exc)})
        return out

    def purgeable(self) -> list[dict[str, Any]]:
        """Files the server verified (or deleted under retention) and allows deleting; the app decides when."""
        return [dict(r) for r in self._outbox.q("SELECT evidence_id, path, size FROM evidence WHERE purge_allowed = 1 "
                                                "AND status IN ('verified', 'deleted')")]

    def purge(self, evidence_id: str) -> bool:
        """Delete a local copy, but only one the server has allowed; returns whether a file was removed."""
        rows = self._outbox.q("SELECT path, purge_allowed, status FROM evidence WHERE evidence_id = ?",
                              (evidence_id,))
        if not rows or not rows[0]["purge_allowed"] or rows[0]["status"] not in ("verified", "deleted"):
            return False
        with suppress(FileNotFoundError):
            os.remove(rows[0]["path"])
        self._outbox.set_evidence_status(evidence_id, "purged")
        return True

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
        self._outbox.set_evidence_status(evidence_id, "changed", error)
        return {"evidence_id": evidence_id, "status": "changed", "purge_allowed": False, "error": error}

    def _upload_one(self, row: sqlite3.Row) -> dict[str, Any]:
        try:
            return self._try_upload(row)
        except ApiError as exc:
            if exc.status != 410:
                raise
            # Deleted under the retention policy: the server will never take this file again.
            log.info("evidence %s: %s", row["evidence_id"], exc.message)
            noted = self._outbox.note_evidence_status(row["evidence_id"], {"status": "deleted", "purge_allowed": True})
            with self._outbox.tx() as db:
                db.execute("UPDATE evidence SET last_error = ? WHERE evidence_id = ?",
                           (exc.message[:500], row["evidence_id"]))
            return {**noted, "error": exc.message}

    def _try_upload(self, row: sqlite3.Row) -> dict[str, Any]:
        http = self._http
        eid, path, size, sha256 = row["evidence_id"], row["path"], int(row["size"]), row["sha256"]
        base = f"{API}/evidence/{eid}"
        resuming = row["status"] == "uploading"
        if row["status"] == "uploaded":
            # The bytes went up but the verdict never arrived: ask for it instead of sending again.
            current = http.api("GET", base)
            if current.get("status") in ("verified", "mismatch", "deleted"):
                return self._finish_upload(eid, current)
            if _verifying(current):
                # A job worker has it. Completing again is safe: it answers the verdict once there is one, and
                # otherwise has the server queue the check again, in case the first job was lost.
                return self._after_complete(eid, http.api("POST", f"{base}/complete", json_body={}))
            # No verdict: completing found bytes missing (or never ran). Continue where the server stopped.
            resuming = True
        if not os.path.exists(path):
            raise FileNotFoundError(f"evidence file {path} is gone")
        if os.path.getsize(path) < size:
            # Fewer bytes than declared can never complete an upload, and a Content-Length the body
            # cannot fill would leave the server waiting for the rest: report it instead.
            return self._changed(eid, self._local_difference(path, sha256, size) or "the file is shorter")
        try:
            plan = http.api("POST", f"{base}/uploads", json_body={})
        except ApiError as exc:
            if exc.status != 409:
                raise
            current = http.api("GET", base)  # verified already: the verdict's answer was lost on the way
            if _verifying(current):
                self._outbox.set_evidence_status(eid, "uploaded")
                return self._waiting(eid)
            if current.get("status") != "verified":
                raise
            return self._finish_upload(eid, current)
        self._outbox.set_evidence_status(eid, "uploading")
        method = str(plan.get("method", "")).upper()
        if method == "PUT":
            url = str(plan["url"])
            try:
                self._put_whole(path, size, url, plan.get("headers") or {}, resume=resuming)
            except ApiError as exc:
                # An object store that checks the bytes itself (S3 does when a plan carries x-amz-checksum-sha256)
                # refuses other bytes outright, so the server never sees them: find out whether the phone's copy
                # changed.
                if http.same_origin(url) or exc.status != 400:
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
        self._outbox.set_evidence_status(eid, "uploaded")
        try:
            result = http.api("POST", f"{base}/complete", json_body=complete)
        except ApiError as exc:
            if exc.status == 409:  # e.g. bytes still missing: the next try probes the offset and resumes
                self._outbox.set_evidence_status(eid, "uploading")
            raise
        return self._after_complete(eid, result)

    def _after_complete(self, evidence_id: str, result: Mapping[str, Any]) -> dict[str, Any]:
        """The answer to `complete`: a verdict, or (`202`, upload `verifying`) a verdict still to come."""
        if result.get("status") in ("verified", "mismatch", "deleted"):
            return self._finish_upload(evidence_id, result)
        return self._waiting(evidence_id)

    def _waiting(self, evidence_id: str) -> dict[str, Any]:
        """Stay `uploaded`: the server has every byte and a worker gives the verdict, which :meth:`Phone.pull` (the
        evidence change) or the next :meth:`upload_pending` brings. Never purge before it: purge_allowed is 0."""
        with self._outbox.tx() as db:
            db.execute("UPDATE evidence SET purge_allowed = 0, updated_at = ? WHERE evidence_id = ?",
                       (self._outbox.stamp(), evidence_id))
        return {"evidence_id": evidence_id, "status": "uploaded", "purge_allowed": False}

    def _finish_upload(self, evidence_id: str, result: Mapping[str, Any]) -> dict[str, Any]:
        if "purge_allowed" not in result and result.get("status") in ("verified", "mismatch"):
            try:  # the verdict may come without the flag: only the server may allow deleting the copy
                result = {**self._http.api("GET", f"{API}/evidence/{evidence_id}"), **result}
            except (ApiError, requests.RequestException) as exc:
                log.info("could not read purge_allowed for %s: %s", evidence_id, exc)
        noted = self._outbox.note_evidence_status(evidence_id, result)
        if noted["status"] == "mismatch":
            noted["error"] = self._mismatch_error(evidence_id, result)
            log.warning("evidence %s: %s", evidence_id, noted["error"])
            with self._outbox.tx() as db:
                db.execute("UPDATE evidence SET last_error = ? WHERE evidence_id = ?",
                           (noted["error"][:500], evidence_id))
        return noted

    def _mismatch_error(self, evidence_id: str, result: Mapping[str, Any]) -> str:
        """What a `mismatch` means for this phone: the server's received hash, and whether our copy changed."""
        rows = self._outbox.q("SELECT path, sha256, size FROM evidence WHERE evidence_id = ?", (evidence_id,))
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
            resp = self._http.call("HEAD", url, auth=True, timeout=self._http.timeout)
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
        own = self._http.same_origin(url)  # bearer token only for our API, never for a presigned object-store URL
        offset = (self._probe_offset(url) or 0) if own and resume else 0
        retrier = Retrier(self._http)
        while True:
            if size and offset >= size:
                return  # every byte is there already; only the answer was lost
            headers = dict(plan_headers)
            if offset:
                headers["Content-Range"] = f"bytes {offset}-{size - 1}/{size}"
            retry_after: float | None = None
            busy = False
            try:
                resp = self._http.call("PUT", url, auth=own, headers=headers, retry=False,
                                       timeout=self._http.upload_timeout,
                                       data_factory=lambda s=offset: _FileSlice(path, s, size - s) if size else b"")
                if 200 <= resp.status_code < 300:
                    return
                # 409/422 with Upload-Offset: the server holds another amount than we assumed (a retry after
                # a drop it had not yet seen, a body cut short): continue from its offset.
                resumable = own and resp.status_code in (409, 422) and "Upload-Offset" in resp.headers
                if resp.status_code not in RETRY_STATUSES and not resumable:
                    raise ApiError.from_response(resp)
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
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
            resp = self._http.call("PUT", url, auth=self._http.same_origin(url), headers=part.get("headers"),
                                   timeout=self._http.upload_timeout,
                                   data_factory=lambda s=start, n=length: _FileSlice(path, s, n))
            if not 200 <= resp.status_code < 300:
                raise ApiError.from_response(resp)
            etag = resp.headers.get("ETag")
            if not etag:
                raise ValueError(f"no ETag for part {number}; is the bucket's CORS exposing it?")
            done.append({"number": number, "etag": etag})
        return done
