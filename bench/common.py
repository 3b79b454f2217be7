"""Shared helpers for the benches: the machine, throw-away databases, a live server, officers, phones.

A bench phone signs and chains records by hand exactly as the protocol tests do
(PROTOCOL §3): compact JWS, EdDSA, `prev` = SHA-256 of the previous record's text.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from backend.casework.accounts import create_officer
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.schema import prepare
from backend.core.secret_files import init_secrets
from backend.liveserver import running_server

PG_SERVER = os.environ.get("FIELDCASE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
PASSWORD = "bench-password-1234"
SHANGHAI = timezone(timedelta(hours=8))
ZERO = "0" * 64


# --- the machine ---------------------------------------------------------------------------------------------

def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        out = subprocess.run(["free", "-h"], capture_output=True, text=True, check=True).stdout
        memory = next(line.split()[1] for line in out.splitlines() if line.startswith("Mem:"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    return {"cores": str(os.cpu_count()), "cpu": model, "memory": memory, "python": platform.python_version()}


def print_machine() -> None:
    m = machine()
    print(f"machine: {m['cores']} cores, {m['cpu']}, memory {m['memory']}, Python {m['python']}")


# --- throw-away databases ------------------------------------------------------------------------------------

@dataclass
class BenchDatabase:
    kind: str            # "sqlite" or "postgres"
    url: str             # SQLAlchemy URL the bench process uses
    env: dict[str, str]  # what the live server gets
    instance_dir: Path


def _admin_url() -> str:
    return make_url(PG_SERVER).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


@contextmanager
def fresh_database(kind: str) -> Iterator[BenchDatabase]:
    """An empty database of the given kind with the schema and reference data; dropped afterwards."""
    instance = Path(tempfile.mkdtemp(prefix=f"fieldcase-bench-{kind}-"))
    name = None
    try:
        if kind == "postgres":
            name = f"fieldcase_bench_{uuid.uuid4().hex[:12]}"
            admin = create_engine(_admin_url(), isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            admin.dispose()
            url = make_url(_admin_url()).set(database=name).render_as_string(hide_password=False)
            env_url = url
        else:
            env_url = ""  # the default: SQLite in the instance folder
            url = Settings.from_env({"FIELDCASE_INSTANCE_DIR": str(instance), "DATABASE_URL": ""}).database_url
        env = {"FIELDCASE_INSTANCE_DIR": str(instance), "DATABASE_URL": env_url}
        db = Database(url)
        prepare(db)
        db.dispose()
        init_secrets(Settings.from_env(env))  # PostgreSQL: a shared database's hosts make no keys themselves
        yield BenchDatabase(kind, url, env, instance)
    finally:
        if name:
            admin = create_engine(_admin_url(), isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        shutil.rmtree(instance, ignore_errors=True)


LOG_DIR = Path(tempfile.gettempdir()) / "fieldcase-bench-logs"


@contextmanager
def live_server(bdb: BenchDatabase, name: str, workers: int = 2) -> Iterator[str]:
    """The production server (gunicorn) on this database; its log is kept in LOG_DIR/<name>.log."""
    LOG_DIR.mkdir(exist_ok=True)
    log = LOG_DIR / f"{name}.log"
    log.unlink(missing_ok=True)
    for attempt in range(3):
        server = running_server(bdb.env, workers=workers, log_path=log)
        try:
            base = server.__enter__()
            break
        except requests.RequestException as exc:
            # A health check that times out on a loaded machine aborts the start; the child is already stopped.
            if attempt == 2:
                raise
            print(f"  (server start failed: {exc.__class__.__name__}; starting again)", flush=True)
    try:
        yield base
    except BaseException:
        if not server.__exit__(*sys.exc_info()):
            raise
    else:
        server.__exit__(None, None, None)


def server_errors(name: str, limit: int = 30) -> list[str]:
    """Tracebacks and error lines from a kept server log."""
    log = LOG_DIR / f"{name}.log"
    if not log.exists():
        return []
    lines = log.read_text(errors="replace").splitlines()
    out: list[str] = []
    for n, line in enumerate(lines):
        if any(word in line for word in (" ERROR ", " WARNING ", "Traceback")):
            out += [line, *(x for x in lines[n + 1:n + 3] if x.startswith(("DETAIL", "Process ")))]
    return out[:limit]


def cpu_busy(seconds: float = 1.0) -> float:
    """Share of all cores busy over `seconds`, from /proc/stat: tells whether something else is running."""
    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except OSError:
        return float("nan")
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def make_officers(url: str, specs: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Create officers directly in the database; returns [{"id", "username", "region"}]."""
    db = Database(url)
    out = []
    try:
        with db.transaction() as session:
            for n, spec in enumerate(specs):
                username = spec.get("username") or f"bench{n}-{uuid.uuid4().hex[:6]}"
                officer = create_officer(
                    session, username=username, password=PASSWORD, name=spec.get("name", f"警员{n}"),
                    department=spec.get("department", "education"), region=spec.get("region", "330106"),
                    roles=spec.get("roles", ["officer"]), cert_number=f"ZJ-BENCH-{uuid.uuid4().hex[:10]}",
                    cert_valid_from=date(2025, 1, 1), cert_valid_until=date(2029, 12, 31),
                    now=datetime.now(UTC))
                out.append({"id": officer.id, "username": username, "region": officer.region_code})
    finally:
        db.dispose()
    return out


def login(base: str, username: str, http: requests.Session | None = None) -> dict[str, str]:
    r = (http or requests).post(f"{base}/api/v1/auth/token", json={"username": username, "password": PASSWORD},
                                timeout=30)
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


# --- a phone that signs by hand ------------------------------------------------------------------------------

def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def jws_hash(text_: str) -> str:
    return hashlib.sha256(text_.encode("ascii")).hexdigest()


def uid() -> str:
    return str(uuid.uuid4())


class BenchPhone:
    """One enrolled device: an Ed25519 key, its chain, and a clock in the past (no clock_ahead flags).

    bench/push_sm.py's SM2 phone changes only what its suite changes: the key, the header's alg, the signature,
    the chain hash and the evidence digest (the `_`-methods and `evidence_digest`)."""

    ALG = "EdDSA"

    def __init__(self, base: str, officer: dict[str, str], headers: dict[str, str], label: str = "bench phone"):
        self.officer, self.headers = officer, headers
        self._generate()
        enrolment = {"public_key": b64(self.public_raw), "label": label}
        if self.ALG != BenchPhone.ALG:
            enrolment["alg"] = self.ALG
        r = requests.post(f"{base}/api/v1/devices", json=enrolment, headers=headers, timeout=30)
        if r.status_code != 201:
            raise RuntimeError(f"enrolment failed: {r.status_code} {r.text}")
        self.device_id = r.json()["id"]
        self.header = b64(compact({"alg": self.ALG, "kid": self.device_id, "typ": "fieldcase-record"}))
        self.seq, self.prev = 0, ZERO
        self.clock = datetime.now(SHANGHAI).replace(microsecond=0) - timedelta(days=60)

    def _generate(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.public_raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def _sign(self, signing_input: bytes) -> bytes:
        return self.key.sign(signing_input)

    def _chain_hash(self, jws: str) -> str:
        return jws_hash(jws)

    def evidence_digest(self, data: bytes) -> dict[str, str]:
        """The file digest an evidence.capture declares."""
        return {"sha256": hashlib.sha256(data).hexdigest()}

    def record(self, type_: str, body: dict[str, Any]) -> str:
        """Sign the next record of this phone's chain and advance the chain."""
        self.clock += timedelta(seconds=20)
        payload = {"v": 1, "op": uid(), "seq": self.seq + 1, "prev": self.prev, "at": self.clock.isoformat(),
                   "by": self.officer["id"], "type": type_, "body": body}
        signing_input = f"{self.header}.{b64(compact(payload))}"
        jws = f"{signing_input}.{b64(self._sign(signing_input.encode('ascii')))}"
        self.seq += 1
        self.prev = self._chain_hash(jws)
        return jws


# --- figures -------------------------------------------------------------------------------------------------

def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table, so the output can be pasted into docs/performance.md as it is."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def wait_quiet(max_wait: float, threshold: float = 0.2) -> float:
    """Wait up to `max_wait` seconds for the machine to be quiet (others' work skews timings); returns busy share."""
    deadline = time.monotonic() + max_wait
    busy = cpu_busy(1.0)
    while busy > threshold and time.monotonic() < deadline:
        busy = cpu_busy(2.0)
    return busy



# --- CPU accounting: what a figure costs in CPU seconds, whatever else runs on the machine -------------------

def process_cpu(pid: int) -> float:
    """utime + stime of a process in seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pids(base: str) -> list[int]:
    """The gunicorn master and workers serving `base` (they share the master's command line)."""
    port = base.rsplit(":", 1)[1]
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"backend" in args and b"serve" in args and b"--port" in args and port.encode() in args:
            pids.append(int(entry.name))
    return pids


class CpuMeter:
    """CPU seconds used by the server processes and, on PostgreSQL, the backends serving the bench database."""

    def __init__(self, base: str | list[str], url: str) -> None:
        self.bases = [base] if isinstance(base, str) else list(base)  # every API process of the run
        self.base, self.url = self.bases[0], url
        self.postgres = make_url(url).get_backend_name() == "postgresql"
        self.start: dict[str, dict[int, float]] = {}
        self.server_split: list[float] = []  # CPU seconds per server process, busiest first (after end())

    def _backends(self) -> list[int]:
        if not self.postgres:
            return []
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                return list(conn.scalars(text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")))
        finally:
            engine.dispose()

    def _sample(self) -> dict[str, dict[int, float]]:
        return {"server": {pid: process_cpu(pid) for base in self.bases for pid in server_pids(base)},
                "database": {pid: process_cpu(pid) for pid in self._backends()}}

    def begin(self) -> None:
        self.start = self._sample()

    def end(self) -> dict[str, float]:
        """CPU seconds since begin(), per side; a backend that appeared meanwhile counts whole."""
        now = self._sample()
        self.server_split = sorted((cpu - self.start["server"].get(pid, 0.0) for pid, cpu in now["server"].items()),
                                   reverse=True)
        return {side: sum(cpu - self.start[side].get(pid, 0.0) for pid, cpu in now[side].items())
                for side in now}
