"""Is the evidence store there? A cheap check for readiness (`GET /api/v1/health/ready`).

A process whose store is gone takes pushes (the ledger is in the database) but cannot accept, verify or serve a
single evidence file, so it should not be given phones. The check costs little and never waits long:

- the local store: its folder and areas exist, and a file can be created and removed in it (a full or read-only
  disk, or an unmounted volume, fails here);
- S3: `HeadBucket` with a client of its own, built once, with a short connect and read timeout and no retries (the
  store's own client retries five times, which is right for an upload and wrong for a probe that must answer
  within a load balancer's check interval).

The answer is `None` when the store is fine, else a short reason that names no path, bucket or credential (the
readiness answer is public: a load balancer reads it).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from media.s3_store import S3Store
from media.store import LocalStore, Store

AREAS = ("staging", "objects", "mismatch", "derived")


def local_problem(root: Path) -> str | None:
    if not root.is_dir():
        return "the evidence folder is missing"
    missing = [area for area in AREAS if not (root / area).is_dir()]
    if missing:
        return "the evidence folder lacks its areas: " + ", ".join(missing)
    probe = root / f".ready-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"ok")
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as exc:
        return f"the evidence folder is not writable ({exc.strerror or type(exc).__name__})"
    return None


def s3_prober(store: S3Store, timeout: float) -> Callable[[], str | None]:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    meta = store.client.meta
    client = boto3.client("s3", endpoint_url=meta.endpoint_url, region_name=meta.region_name,
                          config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                        connect_timeout=timeout, read_timeout=timeout,
                                        retries={"max_attempts": 1, "mode": "standard"}))

    def problem() -> str | None:
        try:
            client.head_bucket(Bucket=store.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            return f"the bucket does not answer HeadBucket ({code})"
        except BotoCoreError as exc:
            return f"the bucket's endpoint does not answer ({type(exc).__name__})"
        return None

    return problem


def prober(store: Store, timeout: float = 2.0) -> Callable[[], str | None]:
    """A function telling what is wrong with `store` now (None: nothing), each call as cheap as the store allows."""
    if isinstance(store, LocalStore):
        root = store.root
        return lambda: local_problem(root)
    if isinstance(store, S3Store):
        return s3_prober(store, timeout)
    kind = getattr(store, "kind", type(store).__name__)
    return lambda: f"no check for a {kind} store"
