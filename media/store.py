"""Where evidence bytes live: a local content-addressed store (the default) and an S3 store.

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
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

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
    sha256: str
    size: int


def hash_stream(stream: BinaryIO, chunk: int = CHUNK) -> Digest:
    """SHA-256 and size in constant memory, whatever the size.

    Reading into one reused buffer (where the stream allows it) avoids a
    fresh megabyte allocation per block: the loop then runs at hashlib's speed.
    """
    h = hashlib.sha256()
    size = 0
    readinto = getattr(stream, "readinto", None)
    if readinto is not None:
        buf = bytearray(chunk)
        view = memoryview(buf)
        while n := readinto(buf):
            h.update(view[:n])
            size += n
        return Digest(h.hexdigest(), size)
    while block := stream.read(chunk):
        h.update(block)
        size += len(block)
    return Digest(h.hexdigest(), size)


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

    def plan(self, upload_id: str, size: int, sha256: str, content_url: str,
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

    def plan(self, upload_id: str, size: int, sha256: str, content_url: str,
             multipart_id: str | None = None) -> dict[str, Any]:
        self._staged(upload_id).touch(exist_ok=True)
        return {"method": "PUT", "url": content_url, "headers": {"Content-Type": "application/octet-stream"}}

    def offset(self, upload_id: str) -> int:
        path = self._staged(upload_id)
        return path.stat().st_size if path.exists() else 0

    def write(self, upload_id: str, stream: BinaryIO, start: int, length: int, total: int) -> int:
        """Append bytes [start, start+length) of a file of `total` bytes; returns the new offset.

        Only one writer at a time (a second concurrent upload is refused), and
        only at the current offset, so an interrupted upload resumes exactly.
        """
        path = self._staged(upload_id)
        with open(path, "r+b" if path.exists() else "w+b") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError("busy", "another upload of this item is in progress") from None
            current = os.fstat(fh.fileno()).st_size
            if start == 0 and current:
                fh.truncate(0)
                current = 0
            if start != current:
                raise StoreError("offset", f"this upload continues at byte {current}", offset=current)
            if start + length > total:
                raise StoreError("too_long", "bytes beyond the declared size")
            fh.seek(start)
            remaining = length
            while remaining:
                block = stream.read(min(CHUNK, remaining))
                if not block:
                    break
                fh.write(block)
                remaining -= len(block)
            extra = stream.read(1)
            fh.flush()
            os.fsync(fh.fileno())
            written = fh.tell()
            if remaining or extra:
                # A short or long body: keep what arrived in range, say where to resume.
                fh.truncate(min(written, start + length))
                kept = min(written, start + length)
                raise StoreError("length", "the body length does not match the range", offset=kept)
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


class S3Store:
    """Any S3-compatible store. Phones PUT to presigned URLs: the bytes never pass through the API."""

    kind = "s3"

    def __init__(self, bucket: str, *, endpoint_url: str | None = None, region: str | None = None,
                 multipart_threshold: int = 64 * 1024 * 1024, part_size: int = 16 * 1024 * 1024,
                 url_ttl: int = 3600, client: Any = None) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.multipart_threshold = multipart_threshold
        self.part_size = max(part_size, 5 * 1024 * 1024)
        self.url_ttl = url_ttl
        self.client = client or boto3.client(
            "s3", endpoint_url=endpoint_url, region_name=region or "us-east-1",
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                          retries={"max_attempts": 5, "mode": "standard"}))

    def ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)

    @staticmethod
    def _staging(upload_id: str) -> str:
        return f"staging/{upload_id}"

    def plan(self, upload_id: str, size: int, sha256: str, content_url: str,
             multipart_id: str | None = None) -> dict[str, Any]:
        key = self._staging(upload_id)
        if size <= self.multipart_threshold:
            # No x-amz-checksum-sha256: with it S3 refuses bytes other than the declared ones outright, and
            # the server never learns of them. Without it a changed file is staged like any other, hashed on
            # `complete` and kept apart as a `mismatch`, with its custody event, as on every other path.
            url = self.client.generate_presigned_url(
                "put_object", ExpiresIn=self.url_ttl,
                Params={"Bucket": self.bucket, "Key": key, "ContentLength": size})
            return {"method": "PUT", "url": url, "headers": {}}
        if multipart_id is None:
            multipart_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        count = -(-size // self.part_size)
        parts = [{"number": n, "url": self.client.generate_presigned_url(
            "upload_part", ExpiresIn=self.url_ttl,
            Params={"Bucket": self.bucket, "Key": key, "UploadId": multipart_id, "PartNumber": n})}
            for n in range(1, count + 1)]
        return {"method": "multipart", "upload_id": multipart_id, "part_size": self.part_size, "parts": parts}

    def finish_multipart(self, upload_id: str, multipart_id: str | None, parts: list[dict[str, Any]]) -> None:
        if not multipart_id:
            return
        from botocore.exceptions import ClientError

        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=self._staging(upload_id), UploadId=multipart_id,
                MultipartUpload={"Parts": [{"PartNumber": p["number"], "ETag": p["etag"]}
                                           for p in sorted(parts, key=lambda p: p["number"])]})
        except ClientError as exc:
            raise StoreError("parts", f"the parts could not be assembled: {exc.response['Error']['Code']}") from None

    def staged_digest(self, upload_id: str) -> Digest:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._staging(upload_id))["Body"]
        except ClientError:
            raise StoreError("missing", "no bytes were uploaded") from None
        try:
            return hash_stream(body)
        finally:
            body.close()

    def _copy(self, source: str, target: str) -> None:
        self.client.copy({"Bucket": self.bucket, "Key": source}, self.bucket, target)

    def promote(self, upload_id: str, sha256: str) -> str:
        from botocore.exceptions import ClientError

        key = object_key(sha256)
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            exists = True
        except ClientError:
            exists = False
        if not exists:
            self._copy(self._staging(upload_id), key)
        self.client.delete_object(Bucket=self.bucket, Key=self._staging(upload_id))
        return key

    def set_apart(self, upload_id: str) -> str:
        key = f"mismatch/{upload_id}"
        self._copy(self._staging(upload_id), key)
        self.client.delete_object(Bucket=self.bucket, Key=self._staging(upload_id))
        return key

    def open(self, key: str) -> BinaryIO:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except ClientError:
            raise StoreError("missing", "no such object") from None

    def put_derived(self, key: str, data: bytes, content_type: str) -> str:
        full = f"derived/{key}"
        self.client.put_object(Bucket=self.bucket, Key=full, Body=data, ContentType=content_type)
        return full

    def abort(self, upload_id: str, multipart_id: str | None) -> None:
        if multipart_id:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self._staging(upload_id), UploadId=multipart_id)
        self.client.delete_object(Bucket=self.bucket, Key=self._staging(upload_id))

    def remove(self, key: str) -> None:
        """Deletes every version, so a versioned bucket keeps no copy either; Object Lock refuses (a StoreError)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            listed = self.client.list_object_versions(Bucket=self.bucket, Prefix=key)
            versions = [v["VersionId"] for v in listed.get("Versions", []) + listed.get("DeleteMarkers", [])
                        if v["Key"] == key]
            for version in versions:
                self.client.delete_object(Bucket=self.bucket, Key=key, VersionId=version)
            if not versions:
                self.client.delete_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            raise StoreError("unavailable", f"could not delete {key}: {exc.response['Error']['Code']}") from None
        except BotoCoreError as exc:
            raise StoreError("unavailable", f"could not delete {key}: {exc}") from None


@contextmanager
def opened(store: Store, key: str) -> Iterator[BinaryIO]:
    stream = store.open(key)
    try:
        yield stream
    finally:
        stream.close()
