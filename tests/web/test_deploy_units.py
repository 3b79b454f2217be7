"""The files `fieldcase deploy-files` writes (backend/deploy/): the systemd units are run here as systemd would run
them — each ExecStart as written, with the unit's EnvironmentFile and Environment lines and nothing inherited — and
stopped as systemd stops them, within their TimeoutStopSec."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import select

from backend.bootstrap import ALL_JOBS
from backend.cli import main
from backend.core.config import defaults
from backend.core.db import Database
from backend.core.jobs import RQRunner, timeout_of
from backend.core.models import AuditRun
from backend.core.variables import read
from backend.deploy_cli import DEPLOY_DIR
from backend.liveserver import free_port
from backend.server import gunicorn_settings
from backend.settings_cli import EX_CONFIG

UNITS = ("fieldcase-serve.service", "fieldcase-worker@.service", "fieldcase-sweep.service", "fieldcase-sweep.timer")
WRITTEN = {*UNITS, "gunicorn.conf.py", "fieldcase.env"}
# Where the units expect things on a host, and where this test puts them.
BIN, ETC, STATE = "/opt/fieldcase/bin/", "/etc/fieldcase/", "/var/lib/fieldcase"
# The lines of fieldcase.env an operator changes for their own site; every other line is used as shipped.
SITE = ("DATABASE_URL", "PGPASSFILE", "FIELDCASE_INSTANCE_DIR", "FIELDCASE_REDIS_URL", "FIELDCASE_JOB_QUEUE")
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # what systemd gives a service


def unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file: section -> key -> its values in order (a key may repeat, as Environment= does)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        assert not line.endswith("\\"), f"{path.name}: no continued lines here"
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, _, value = line.partition("=")
            current.setdefault(key, []).append(value)
    return sections


def one(section: dict[str, list[str]], key: str) -> str:
    (value,) = section[key]
    return value


def seconds(span: str) -> float:
    """A systemd time span: `30`, `30s`, `5min`, `1h 2min`."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "ms": 0.001}
    parts = re.findall(r"(\d+)\s*([a-z]*)", span)
    assert parts and "".join(n + u for n, u in parts) == span.replace(" ", ""), span
    return sum(int(n) * units[u] for n, u in parts)


def expand(value: str, instance: str = "") -> str:
    """systemd's specifiers the units use: %H (host name), %i (instance), %% (a per cent sign)."""
    out = re.sub(r"%([Hi%])", lambda m: {"H": socket.gethostname(), "i": instance, "%": "%"}[m.group(1)], value)
    assert "%" not in out.replace("%%", ""), f"a specifier this test does not know: {value}"
    return out


def env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith(("#", ";")):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def on_this_host(value: str, etc: Path, state: Path) -> str:
    return value.replace(BIN, str(Path(sys.executable).parent) + "/").replace(ETC, f"{etc}/").replace(
        STATE, str(state))


class Host:
    """The files as `fieldcase deploy-files` wrote them to this host's /etc/fieldcase (a temporary folder), with an
    operator's edits: fieldcase.env's site lines, and gunicorn.conf.py's bind (a free port)."""

    def __init__(self, root: Path, site: dict[str, str]) -> None:
        self.etc, self.state = root / "etc", root / "state"
        self.state.mkdir(parents=True)
        done = subprocess.run([str(Path(sys.executable).parent / "fieldcase"), "deploy-files", "--out", str(self.etc)],
                              capture_output=True, text=True, check=True, env=self.base_env())
        assert {Path(line.split()[1]).name for line in done.stdout.splitlines()} == WRITTEN
        shipped = (self.etc / "fieldcase.env").read_text()
        lines = [f"{name}={site[name]}" if (name := line.partition("=")[0]) in site else line
                 for line in shipped.splitlines()]
        (self.etc / "fieldcase.env").write_text("\n".join(lines) + "\n")
        self.port = free_port()
        conf = self.etc / "gunicorn.conf.py"
        edited = conf.read_text().replace('bind = "127.0.0.1:8000"', f'bind = "127.0.0.1:{self.port}"')
        assert edited != conf.read_text()
        conf.write_text(edited)
        self.units = {name: unit(self.etc / name) for name in UNITS}

    def base_env(self) -> dict[str, str]:
        return {"PATH": SYSTEMD_PATH, "LANG": "C.UTF-8", "HOME": str(self.state)}

    def environment(self, name: str, instance: str = "") -> dict[str, str]:
        service = self.units[name]["Service"]
        env = self.base_env()
        for path in service.get("EnvironmentFile", []):
            env.update(env_file(Path(on_this_host(path, self.etc, self.state))))
        for line in service.get("Environment", []):
            for pair in shlex.split(expand(line, instance)):
                key, _, value = pair.partition("=")
                env[key] = value
        return env

    def command(self, name: str, instance: str = "") -> list[str]:
        return [on_this_host(arg, self.etc, self.state)
                for arg in shlex.split(expand(one(self.units[name]["Service"], "ExecStart"), instance))]

    def start(self, name: str, instance: str = "", **extra_env: str) -> subprocess.Popen:
        service = self.units[name]["Service"]
        log = open(self.state / f"{name}{instance}.log", "ab")  # noqa: SIM115 - the child keeps it
        return subprocess.Popen(self.command(name, instance), env={**self.environment(name, instance), **extra_env},
                                cwd=on_this_host(one(service, "WorkingDirectory"), self.etc, self.state),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self, name: str, proc: subprocess.Popen, *, at_most: float) -> float:
        """SIGTERM to the main process alone (KillMode=mixed), as `systemctl stop` does; how long it took."""
        assert one(self.units[name]["Service"], "KillMode") == "mixed"
        limit = seconds(one(self.units[name]["Service"], "TimeoutStopSec"))
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=min(limit, at_most))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail(f"{name} did not stop within {min(limit, at_most)} s of SIGTERM")
        assert code == 0, f"{name} exited {code} on SIGTERM: systemd would mark it failed"
        return time.monotonic() - started

    def log(self, name: str, instance: str = "") -> str:
        return (self.state / f"{name}{instance}.log").read_text(errors="replace")


def _kill(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _wait_for(what: str, check, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.2)


def test_given_the_units_when_started_as_systemd_runs_them_then_they_serve_work_sweep_and_stop_in_time(
        fresh_database_url, redis_url, job_queue, tmp_path):
    from redis import Redis
    from rq import Worker

    url = fresh_database_url()
    host = Host(tmp_path, {"DATABASE_URL": url, "PGPASSFILE": str(tmp_path / "pgpass"),
                           "FIELDCASE_INSTANCE_DIR": str(tmp_path / "state"), "FIELDCASE_REDIS_URL": redis_url,
                           "FIELDCASE_JOB_QUEUE": job_queue})
    env = host.environment("fieldcase-serve.service")
    for step in (["init-secrets"], ["migrate"]):  # once per deployment, and the release step (docs/deployment.md)
        done = subprocess.run([*host.command("fieldcase-serve.service")[:1], *step], env=env, capture_output=True,
                              text=True, cwd=host.state)
        assert done.returncode == 0, done.stderr

    notify_dir = Path(tempfile.mkdtemp(prefix="fc-notify-", dir="/tmp"))  # a short path: sun_path is 108 bytes
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_dir / "n"))
    notify.settimeout(90)
    instance = f"t{uuid.uuid4().hex[:8]}"
    serve = worker = None
    try:
        # fieldcase-serve: Type=notify, so systemd waits for gunicorn's READY=1 on NOTIFY_SOCKET
        assert one(host.units["fieldcase-serve.service"]["Service"], "Type") == "notify"
        serve = host.start("fieldcase-serve.service", NOTIFY_SOCKET=str(notify_dir / "n"))
        assert b"READY=1" in notify.recv(4096), host.log("fieldcase-serve.service")
        base = f"http://127.0.0.1:{host.port}"

        def ready() -> bool:
            try:
                return requests.get(base + "/api/v1/health/ready", timeout=5).status_code == 200
            except requests.RequestException:
                return False

        _wait_for("the API answering ready", ready)
        answer = requests.get(base + "/api/v1/health/ready", timeout=5).json()
        assert {check["name"] for check in answer["checks"] if check["ok"]} >= {"database", "redis", "store"}

        # fieldcase-worker@<instance>: registers in Redis under the unit's name, and works the queue
        worker = host.start("fieldcase-worker@.service", instance)
        name = f"{socket.gethostname()}-{instance}"
        redis = Redis.from_url(redis_url)
        _wait_for("the worker registering", lambda: name in {w.name for w in Worker.all(connection=redis)})
        job = RQRunner(redis_url, job_queue, ALL_JOBS).enqueue_now("system_audit", [0, 3600, 0])
        _wait_for("the audit job finishing", lambda: job.get_status(refresh=True) in ("finished", "failed"))
        assert job.get_status() == "finished", host.log("fieldcase-worker@.service", instance)
        db = Database(url)
        try:
            with db.session() as session:
                assert [run.trigger for run in session.scalars(select(AuditRun))] == ["job"]
        finally:
            db.dispose()

        # fieldcase-sweep.service, as its timer starts it: a oneshot that ends 0 within its TimeoutStartSec
        sweep = host.units["fieldcase-sweep.service"]["Service"]
        assert one(sweep, "Type") == "oneshot"
        assert host.units["fieldcase-sweep.timer"]["Timer"].get("Unit", ["fieldcase-sweep.service"]) == [
            "fieldcase-sweep.service"]
        swept = subprocess.run(host.command("fieldcase-sweep.service"), cwd=host.state, capture_output=True, text=True,
                               env=host.environment("fieldcase-sweep.service"),
                               timeout=seconds(one(sweep, "TimeoutStartSec")))
        assert swept.returncode == 0 and swept.stdout.strip(), swept.stderr  # what it queued is its report

        # systemctl stop: SIGTERM, and each is gone well before its TimeoutStopSec (idle: no job to finish)
        host.stop("fieldcase-worker@.service", worker, at_most=60)
        assert name not in {w.name for w in Worker.all(connection=redis)}  # it said goodbye to Redis
        took = host.stop("fieldcase-serve.service", serve, at_most=60)
        assert took < seconds(one(host.units["fieldcase-serve.service"]["Service"], "TimeoutStopSec"))
    finally:
        _kill(worker)
        _kill(serve)
        notify.close()
        shutil.rmtree(notify_dir, ignore_errors=True)


def test_given_the_units_then_their_timeouts_match_what_they_run(tmp_path):
    units = {name: unit(DEPLOY_DIR / name) for name in UNITS}
    worker, serve = units["fieldcase-worker@.service"]["Service"], units["fieldcase-serve.service"]["Service"]
    # systemd's SIGKILL never cuts short the longest job a worker was asked to finish, nor serve's graceful stop
    longest_job = max(timeout_of(ALL_JOBS, name) for name in ALL_JOBS)
    assert seconds(one(worker, "TimeoutStopSec")) > longest_job
    graceful = gunicorn_settings(DEPLOY_DIR / "gunicorn.conf.py")["graceful_timeout"]
    assert seconds(one(serve, "TimeoutStopSec")) > graceful
    for name in ("fieldcase-serve.service", "fieldcase-worker@.service"):
        service = units[name]["Service"]
        assert one(service, "RestartPreventExitStatus") == str(EX_CONFIG)  # a wrong setting is not restarted
    # every file a unit names under /etc/fieldcase is one deploy-files writes
    named = {Path(word).name for u in units.values() for section in u.values() for values in section.values()
             for value in values for word in value.split() if word.startswith(ETC)}
    assert named and named <= WRITTEN


def test_given_the_example_environment_file_then_it_names_real_settings_and_holds_no_secret():
    env = env_file(DEPLOY_DIR / "fieldcase.env")
    reading = read(env, defaults())
    assert reading.problems == [] and reading.unknown == []
    for name, value in env.items():
        assert urlsplit(value).password is None, name
        assert name.endswith("_FILE") or not re.search(r"PASSWORD|SECRET|TOKEN|_KEY$", name), name


def test_given_an_edited_file_when_deploy_files_runs_again_then_it_is_kept_unless_forced(tmp_path):
    first = CliRunner().invoke(main, ["deploy-files", "--out", str(tmp_path / "etc")])
    assert first.exit_code == 0, first.output
    assert {p.name for p in (tmp_path / "etc").iterdir()} == WRITTEN
    conf = tmp_path / "etc" / "gunicorn.conf.py"
    assert conf.read_bytes() == (DEPLOY_DIR / "gunicorn.conf.py").read_bytes()
    conf.write_text("workers = 8\n")
    again = CliRunner().invoke(main, ["deploy-files", "--out", str(tmp_path / "etc")])
    assert f"kept {conf} (exists; --force replaces it)" in again.output and conf.read_text() == "workers = 8\n"
    forced = CliRunner().invoke(main, ["deploy-files", "--out", str(tmp_path / "etc"), "--force"])
    assert f"wrote {conf}" in forced.output and conf.read_bytes() == (DEPLOY_DIR / "gunicorn.conf.py").read_bytes()


def test_given_a_config_file_when_serve_builds_gunicorns_settings_then_the_command_line_wins_over_the_file(tmp_path):
    shipped = gunicorn_settings(DEPLOY_DIR / "gunicorn.conf.py")
    assert shipped["bind"] == "127.0.0.1:8000" and shipped["workers"] == 2 and shipped["threads"] == 4
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text('bind = "10.0.3.7:8001"\nworkers = 6\nkeepalive = 75\nsomething_of_ours = 1\n')
    assert gunicorn_settings(conf, port=9000, threads=2) == {"bind": "10.0.3.7:9000", "workers": 6, "threads": 2,
                                                             "keepalive": 75}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_given_the_units_when_systemd_analyze_verifies_them_then_it_finds_nothing(tmp_path):
    """`systemd-analyze verify` warns of an unknown key or a bad value and still exits 0: so nothing may be said.
    The binary a unit starts must exist, so the units are checked as installed on this host (the venv's fieldcase)."""
    for name in UNITS:
        text = (DEPLOY_DIR / name).read_text()
        (tmp_path / name).write_text(on_this_host(text, tmp_path, tmp_path))
    done = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / name) for name in UNITS)],
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr
