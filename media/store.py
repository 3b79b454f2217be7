"""Where evidence bytes live: the store's contract, hashing, and the local content-addressed store (the default);
the S3 store is `media.s3_store`.

Both keep the same three areas: `staging` (an upload in progress, keyed by
upload id), `objects` (verified originals, keyed by SHA-256, so identical
bytes are stored once) and `mismatch` (bytes that did not match their
declaration, kept apart for forensics), plus `derived` (thumbnails).
Nothing in here overwrites a verified object, and only `remove` deletes one:
retention (media.retention) calls it, under a custody event, once an item's
period has run out.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from backend.core.crypto import INTL, SM, digests

CHUNK = 1024 * 1024


class StoreError(Exception):
    """A store-level problem the API maps to a 4xx (bad range, busy upload, missing bytes)."""

    def __init__(self, code: str, message: str, *, offset: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.offset = offset


@dataclass(frozen=True)
class Digest:
    """What a file's bytes hash to: SHA-256, size, and SM3 (None only where it was not computed)."""

    sha256: str
    size: int
    sm3: str | None = None

    def digests(self) -> dict[str, str | None]:
        """By the names a declaration uses (`sync.records.EVIDENCE_DIGESTS`)."""
        return {"sha256": self.sha256, "sm3": self.sm3}


def hash_stream(stream: BinaryIO, chunk: int = CHUNK) -> Digest:
    """SHA-256, SM3 and size in one pass, in constant memory, whatever the size.

    Every path that verifies evidence comes here (the local store, S3 single PUT and multipart, inline or in a
    job worker), so each gives both digests of the same bytes. Reading into one reused buffer (where the stream
    allows it) avoids a fresh megabyte allocation per block; SM3 (OpenSSL's) takes most of the time.
    """
    sha256, sm3 = INTL.hasher(), SM.hasher()
    size = 0
    readinto = getattr(stream, "readinto", None)
    if readinto is not None:
        buf = bytearray(chunk)
        view = memoryview(buf)
        while n := readinto(buf):
            block = view[:n]
            sha256.update(block)
            sm3.update(block)
            size += n
    else:
        while block := stream.read(chunk):
            sha256.update(block)
            sm3.update(block)
            size += len(block)
    return Digest(sha256.digest().hex(), size, sm3.digest().hex())


def _feed(h: Any, stream: BinaryIO, length: int, chunk: int = CHUNK) -> None:
    """Hash the next `length` bytes of `stream` into `h`, block by block (a resumed file's part already held)."""
    while length > 0:
        block = stream.read(min(chunk, length))
        if not block:
            break
        h.update(block)
        length -= len(block)


def blocks(stream: BinaryIO, chunk: int = CHUNK) -> Iterator[bytes]:
    """A stored file as a response body: block by block, closed when the last one is sent (or the client left)."""
    try:
        while block := stream.read(chunk):
            yield block
    finally:
        stream.close()


def object_key(sha256: str) -> str:
    return f"objects/{sha256[:2]}/{sha256[2:4]}/{sha256}"


class Store(Protocol):
    kind: str

    def plan(self, upload_id: str, size: int, sha256: str | None, content_url: str,
             multipart_id: str | None = None) -> dict[str, Any]:
        """The upload plan of PROTOCOL §6; asked again for an open upload, the same upload continues."""

    def finish_multipart(self, upload_id: str, multipart_id: str | None, parts: list[dict[str, Any]]) -> None:
        """Assemble uploaded parts (S3 multipart); nothing for a single PUT."""

    def staged_digest(self, upload_id: str) -> Digest:
        """Stream the staged bytes back and hash them."""

    def promote(self, upload_id: str, sha256: str) -> str:
        """Move verified staged bytes to their content address; returns the object key."""

    def set_apart(self, upload_id: str) -> str:
        """Move mismatched staged bytes to the mismatch area; returns their key."""

    def open(self, key: str) -> BinaryIO:
        """Read an object (verified original, mismatch or derived)."""

    def put_derived(self, key: str, data: bytes, content_type: str) -> str:
        """Store a derived file (a thumbnail); returns its key."""

    def abort(self, upload_id: str, multipart_id: str | None) -> None:
        """Drop staged bytes of an upload that will not complete."""

    def remove(self, key: str) -> None:
        """Delete a stored file for good (every version of it); a missing one is no error, so retries are safe."""

    def size_of(self, key: str) -> int | None:
        """The stored size of an object, or None when there is none; no byte is read (a stat, a HEAD request), so a
        restored store can be checked object by object in minutes (`fieldcase restore-check`). A store that does
        not answer raises StoreError("unavailable")."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore:
    """Files under the instance folder; bytes come through the API's own `PUT .../content`."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        for area in ("staging", "objects", "mismatch", "derived"):
            (self.root / area).mkdir(parents=True, exist_ok=True)

    def _staged(self, upload_id: str) -> Path:
        if not upload_id.replace("_", "").isascii() or not upload_id.replace("_", "").isalnum():
            raise StoreError("bad_upload", "malformed upload id")
        return self.root / "staging" / upload_id

    def plan(self, upload_id: str, size: int, sha256: str | None, content_url: str,
             multipart_id: str | None = None) -> dict[str, Any]:
        self._staged(upload_id).touch(exist_ok=True)
        return {"method": "PUT", "url": content_url, "headers": {"Content-Type": "application/octet-stream"}}

    def offset(self, upload_id: str) -> int:
        path = self._staged(upload_id)
        return path.stat().st_size if path.exists() else 0

    def write(self, upload_id: str, stream: BinaryIO, start: int, length: int, total: int, *,
              restart: bool = False, content_sha256: str | None = None, repr_sha256: str | None = None) -> int:
        """Append bytes [start, start+length) of a file of `total` bytes; returns the new offset.

        Only one writer at a time (a second concurrent upload is refused), and
        only at the current offset, so an interrupted upload resumes exactly:
        bytes for any other place change nothing held. Only `restart` (a PUT of
        the whole file, without a range) throws away what is held and starts
        over. `content_sha256` is the SHA-256 the sender stated for these bytes:
        if they hash otherwise, none of them is kept. `repr_sha256` is the one it
        stated for the whole file: checked when these bytes complete it, and if
        the file then hashes otherwise, nothing of it is kept (which part went
        wrong cannot be told).
        """
        path = self._staged(upload_id)
        with open(path, "r+b" if path.exists() else "w+b") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError("busy", "another upload of this item is in progress") from None
            current = os.fstat(fh.fileno()).st_size
            if restart and current:
                fh.truncate(0)
                current = 0
            if start != current:
                raise StoreError("offset", f"this upload continues at byte {current}; send the bytes from there "
                                 f"(Content-Range: bytes {current}-{total - 1}/{total})", offset=current)
            if start + length > total:
                raise StoreError("too_long", "bytes beyond the declared size")
            # RFC 9530 names its digests (`sha-256`): they are SHA-256 whatever suites the deployment keeps.
            body = digests.sha256_hasher() if content_sha256 is not None else None
            whole = digests.sha256_hasher() if repr_sha256 is not None and start + length == total else None
            if whole is not None and start:
                fh.seek(0)
                _feed(whole, fh, start)
            fh.seek(start)
            remaining = length
            while remaining:
                block = stream.read(min(CHUNK, remaining))
                if not block:
                    break
                fh.write(block)
                for h in (body, whole):
                    if h is not None:
                        h.update(block)
                remaining -= len(block)
            extra = stream.read(1)
            fh.flush()
            written = fh.tell()
            if remaining or extra:
                # A short or long body: keep what arrived in range (unless it came with a digest, which bytes cut
                # short cannot be checked against), say where to resume.
                kept = start if body is not None else min(written, start + length)
                fh.truncate(kept)
                os.fsync(fh.fileno())
                raise StoreError("length", "the body length does not match the range", offset=kept)
            if body is not None and body.digest().hex() != content_sha256:
                fh.truncate(start)
                os.fsync(fh.fileno())
                raise StoreError("content_digest", f"these bytes do not hash to their Content-Digest; none of them "
                                 f"was kept: send them again from byte {start}", offset=start)
            if whole is not None and whole.digest().hex() != repr_sha256:
                fh.truncate(0)
                os.fsync(fh.fileno())
                raise StoreError("repr_digest", "the file received does not hash to its Repr-Digest; nothing of it "
                                 "was kept: send it again from byte 0", offset=0)
            os.fsync(fh.fileno())
            return written

    def finish_multipart(self, upload_id: str, multipart_id: str | None, parts: list[dict[str, Any]]) -> None:
        return None

    def staged_digest(self, upload_id: str) -> Digest:
        path = self._staged(upload_id)
        if not path.exists():
            raise StoreError("missing", "no bytes were uploaded")
        with open(path, "rb") as fh:
            return hash_stream(fh)

    def promote(self, upload_id: str, sha256: str) -> str:
        key = object_key(sha256)
        target = self.root / key
        staged = self._staged(upload_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            staged.unlink(missing_ok=True)  # identical bytes are stored once
            return key
        with open(staged, "rb") as fh:
            os.fsync(fh.fileno())
        os.link(staged, target)  # never replaces an existing object, unlike rename
        staged.unlink()
        _fsync_dir(target.parent)
        os.chmod(target, 0o440)
        return key

    def set_apart(self, upload_id: str) -> str:
        key = f"mismatch/{upload_id}"
        os.replace(self._staged(upload_id), self.root / key)
        _fsync_dir(self.root / "mismatch")
        return key

    def _inside(self, key: str) -> Path:
        """The file a key names, refused (as missing) when the key would lead out of the store."""
        if "\x00" in key:
            raise StoreError("missing", "no such object")
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise StoreError("missing", "no such object")
        return path

    def open(self, key: str) -> BinaryIO:
        path = self._inside(key)
        try:
            return open(path, "rb")  # noqa: SIM115 - the caller streams and closes it
        except FileNotFoundError:
            raise StoreError("missing", "no such object") from None

    def put_derived(self, key: str, data: bytes, content_type: str) -> str:
        path = self._inside(f"derived/{key}")
        if (self.root / "derived").resolve() not in path.parents:
            raise StoreError("bad_key", f"not a derived file: {key!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return f"derived/{key}"

    def abort(self, upload_id: str, multipart_id: str | None) -> None:
        self._staged(upload_id).unlink(missing_ok=True)

    def remove(self, key: str) -> None:
        if "\x00" in key or not key.startswith(("objects/", "derived/", "mismatch/")):
            raise StoreError("bad_key", f"not a stored file: {key!r}")
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise StoreError("bad_key", f"not a stored file: {key!r}")
        try:
            path.unlink(missing_ok=True)
            _fsync_dir(path.parent)
        except OSError as exc:
            raise StoreError("unavailable", f"could not delete {key}: {exc.strerror or exc}") from None

    def size_of(self, key: str) -> int | None:
        try:
            return self._inside(key).stat().st_size
        except (StoreError, FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StoreError("unavailable", f"the evidence folder cannot be read ({exc.strerror or exc})") from None


@contextmanager
def opened(store: Store, key: str) -> Iterator[BinaryIO]:
    stream = store.open(key)
    try:
        yield stream
    finally:
        stream.close()
