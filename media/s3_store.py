"""Evidence bytes in any S3-compatible store (`FIELDCASE_S3_BUCKET`), in the same areas as the local store
(`media.store`): phones PUT to presigned URLs, so the bytes never pass through the API."""

from __future__ import annotations

from typing import Any, BinaryIO

from media.store import Digest, StoreError, hash_stream, object_key


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

    def plan(self, upload_id: str, size: int, sha256: str | None, content_url: str,
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

    def size_of(self, key: str) -> int | None:
        """HeadObject: 404 is an object that is not there. A bucket policy without s3:ListBucket answers 403 for a
        missing object too; that, like any other error, is the store not answering, not the object missing."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                return None
            raise StoreError("unavailable", f"the bucket answers HeadObject with {code or 'an error'}") from None
        except BotoCoreError as exc:
            raise StoreError("unavailable", f"the bucket's endpoint does not answer ({type(exc).__name__})") from None
