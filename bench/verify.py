"""Evidence verification: throughput through the store and `complete` path against plain hashlib, and memory.

    .venv/bin/python bench/verify.py [--size-mib 1024] [--memory-sizes-mib 100,2048]

Prints MiB/s for `hashlib.sha256` over a file and for `media.uploads.verify_upload` (local store:
stream the staged file, hash it, compare with the signed declaration, link it into its content address)
over the same file, and their ratio (target ≥ 0.90). Then, in fresh child processes, the peak resident
memory while verifying files of each size (target: equal within 32 MiB, i.e. constant memory).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHUNK = 1024 * 1024


def make_file(path: Path, size: int) -> str:
    """Random-ish bytes written in 1 MiB blocks; returns the SHA-256."""
    h = hashlib.sha256()
    block = os.urandom(CHUNK)
    with open(path, "wb") as fh:
        written = 0
        while written < size:
            n = min(CHUNK, size - written)
            chunk = block[:n] if written % (4 * CHUNK) else os.urandom(n)
            fh.write(chunk)
            h.update(chunk)
            written += n
    return h.hexdigest()


def plain_hash(path: Path) -> float:
    t = time.perf_counter()
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    h.hexdigest()
    return time.perf_counter() - t


def _setup(workdir: Path, size: int, sha: str):
    from backend.casework.accounts import create_officer
    from backend.core.db import Database
    from backend.core.models import ZERO_HASH, Device, Evidence, Upload, new_id
    from backend.core.schema import prepare
    from media.store import LocalStore

    db = Database(f"sqlite:///{workdir / 'bench.db'}")
    prepare(db)
    store = LocalStore(workdir / "evidence")
    with db.transaction() as s:
        officer = create_officer(s, username=f"u{new_id('x')[-8:]}", password="x" * 12, name="bench",
                                 department="education", region="330106", roles=["officer"], now=datetime.now(UTC))
        device = Device(id=new_id("dev"), officer_id=officer.id, public_key=new_id("k")[:43], label="",
                        status="active", head_seq=0, head_hash=ZERO_HASH, quarantined_total=0)
        s.add(device)
        s.flush()
        evidence = Evidence(id=new_id("ev")[:36], inspection_id=None, case_id=None, region_code="330106",
                            device_id=device.id, officer_id=officer.id, kind="video", media_type="video/mp4",
                            sha256=sha, size=size, captured_at=datetime.now(UTC), status="declared", op="x")
        s.add(evidence)
        upload = Upload(id=new_id("upl"), evidence_id=evidence.id, officer_id=officer.id, store="local",
                        staging_key="", method="put", status="open", open_key=evidence.id)
        s.add(upload)
    return db, store, upload.id


def verify_through_store(path: Path, size: int, sha: str) -> tuple[float, str]:
    """Stage the file as an upload would leave it, then time verify_upload alone."""
    from media.uploads import MediaSettings, verify_upload

    workdir = Path(tempfile.mkdtemp(dir=path.parent))
    db, store, upload_id = _setup(workdir, size, sha)
    staged = store.root / "staging" / upload_id
    os.link(path, staged)  # the bytes are the same file: no copy, the page cache is shared with plain_hash
    try:
        with db.session() as s:
            t = time.perf_counter()
            evidence = verify_upload(s, store, upload_id, MediaSettings(), now=datetime.now(UTC))
            s.commit()
            elapsed = time.perf_counter() - t
            status = evidence.status
    finally:
        db.dispose()
    return elapsed, status


def child_peak(path: str, size: int, sha: str) -> None:
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    elapsed, status = verify_through_store(Path(path), size, sha)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{status} {elapsed:.3f} {base} {peak}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--memory-sizes-mib", default="100,2048")
    ap.add_argument("--dir", default=None, help="where to write the test files (needs room for the largest)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmpdir = Path(tmp)
        size = args.size_mib * CHUNK
        path = tmpdir / "clip.bin"
        print(f"writing a {args.size_mib} MiB file ...")
        sha = make_file(path, size)
        plain_hash(path)  # warm the page cache so both runs read from memory
        plain = min(plain_hash(path) for _ in range(3))
        runs = [verify_through_store(path, size, sha) for _ in range(3)]
        assert all(status == "verified" for _, status in runs), runs
        through = min(t for t, _ in runs)
        mib = size / CHUNK
        print(f"\nthroughput over {args.size_mib} MiB (best of 3)")
        print(f"  hashlib.sha256          {mib / plain:8.1f} MiB/s")
        print(f"  store + complete path   {mib / through:8.1f} MiB/s")
        ratio = plain / through
        print(f"  ratio                   {ratio:8.3f}  (target >= 0.90: {'met' if ratio >= 0.9 else 'NOT met'})")
        path.unlink()

        print("\npeak resident memory while verifying (fresh process each)")
        peaks = []
        for mib_size in (int(x) for x in args.memory_sizes_mib.split(",")):
            p = tmpdir / f"m{mib_size}.bin"
            s = make_file(p, mib_size * CHUNK)
            out = subprocess.run([sys.executable, __file__, "--child", str(p), str(mib_size * CHUNK), s],
                                 capture_output=True, text=True, check=True).stdout.split()
            status, elapsed, base_kib, peak_kib = out[0], float(out[1]), int(out[2]), int(out[3])
            assert status == "verified"
            peaks.append(peak_kib)
            print(f"  {mib_size:6d} MiB: peak {peak_kib / 1024:7.1f} MiB (after imports {base_kib / 1024:6.1f} MiB), "
                  f"{mib_size / elapsed:7.1f} MiB/s")
            p.unlink()
        spread = (max(peaks) - min(peaks)) / 1024
        verdict = "met" if spread <= 32 else "NOT met"
        print(f"  spread between sizes: {spread:.1f} MiB (target within 32 MiB: {verdict})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_peak(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        sys.exit(0)
    sys.exit(main())
