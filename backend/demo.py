"""`fieldcase demo`: a real server on embedded defaults, driven over HTTP as a client would."""

from __future__ import annotations

import shutil
import tempfile
from datetime import date, timedelta
from pathlib import Path

import click
import requests

from .accounts import create_officer
from .config import Settings
from .db import Database
from .liveserver import running_server
from .schema import prepare

PASSWORD = "demo-password-2026"  # noqa: S105 - throwaway accounts in a temporary database


def _officers(db: Database) -> None:
    today = date.today()
    with db.transaction() as session:
        for username, name, dept, region, roles, cert in (
            ("admin", "系统管理员", "education", "330100", ["officer", "admin"], None),
            ("zhang.min", "张敏", "education", "330106", ["officer"], "ZJ330106-E-0007"),
            ("li.qiang", "李强", "market", "330106", ["officer"], "ZJ330106-M-0113"),
        ):
            create_officer(session, username=username, password=PASSWORD, name=name, department=dept,
                           region=region, roles=roles, cert_number=cert,
                           cert_valid_from=today - timedelta(days=400) if cert else None,
                           cert_valid_until=today + timedelta(days=700) if cert else None)


def run(keep: bool = False) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="fieldcase-demo-"))
    env = {"FIELDCASE_INSTANCE_DIR": str(workdir / "instance"), "DATABASE_URL": ""}
    settings = Settings.from_env(env)
    db = Database(settings.database_url)
    try:
        prepare(db)
        _officers(db)
        with running_server(env, workers=2, log_path=workdir / "server.log") as base:
            click.echo(f"fieldcase demo: server at {base} (SQLite and files in {workdir})")
            http = requests.Session()

            def login(username: str) -> dict[str, str]:
                r = http.post(base + "/api/v1/auth/token", json={"username": username, "password": PASSWORD},
                              timeout=10)
                r.raise_for_status()
                return {"Authorization": "Bearer " + r.json()["access_token"]}

            admin = login("admin")
            ref = http.get(base + "/api/v1/reference", headers=admin, timeout=10).json()
            click.echo(f"reference: {len(ref['regions'])} regions, {len(ref['departments'])} departments, "
                       f"{len(ref['violation_categories'])} violation categories")
            inst = http.post(base + "/api/v1/institutions", headers=admin, timeout=10, json={
                "name": "西湖区明日之星培训中心", "region": "330106", "address": "文三路 199 号 3 楼",
                "credit_code": "91330100799655058B", "category": "academic", "risk_level": "high",
                "licence_status": "unlicensed"})
            inst.raise_for_status()
            click.echo(f"registered institution {inst.json()['name']} ({inst.json()['credit_code']})")
            for username in ("zhang.min", "li.qiang"):
                headers = login(username)
                me = http.get(base + "/api/v1/me", headers=headers, timeout=10).json()
                seen = http.get(base + "/api/v1/institutions", headers=headers, params={"q": "明日之星"},
                                timeout=10).json()
                click.echo(f"officer {me['name']} ({me['department']}, {me['region']}, certificate "
                           f"{me['certificate']['number']}): sees {seen['total']} matching institution(s)")
            bad = http.post(base + "/api/v1/auth/token", json={"username": "li.qiang", "password": "wrong"},
                            timeout=10)
            click.echo(f"a wrong password answers {bad.status_code}: {bad.json()['message']}")
        click.echo("demo finished: OK")
        return 0
    finally:
        db.dispose()
        if keep:
            click.echo(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
