"""Log lines: one JSON object each, the request's id on every line of it and on its access line, one line per push
and per exception, and no personal data: a run full of names, phone numbers, certificate numbers, passwords and
tokens leaves none of them in the log."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from sqlalchemy.orm import Session

from backend.bootstrap import ALL_JOBS
from backend.casework.accounts import create_officer
from backend.core import logs
from backend.core.jobs import RQRunner
from backend.liveserver import free_port
from tests.conftest import PASSWORD, TEST_KDF
from tests.live import live_server
from tests.phones import TestPhone

CENTRE = {"name": "启航学科辅导中心", "region": "330106", "address": "西湖区文三路 100 号"}
# What must never reach a log line.
OFFICER = {"username": "zhang.sanfeng", "password": "Wudang-Taiji-1247", "name": "张三丰",
           "cert_number": "ZF33010600123"}
WRONG_PASSWORD = "Guess-Again-9981"
COMPLAINANT = {"name": "王晓梅", "phone": "13900001111", "email": "wxm@example.cn", "address": "文三路 8 号 2 单元"}
RACED_CERT = "ZF33010600999"


@pytest.fixture
def log_lines():
    """Every line logged while the test runs, parsed (each must be one JSON object), and the raw text."""
    buffer = io.StringIO()
    logs.configure("INFO", "json", buffer)

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in buffer.getvalue().splitlines()]

    lines.text = buffer.getvalue  # type: ignore[attr-defined]
    yield lines
    logs.configure("WARNING", "json")


def test_the_request_id_is_kept_when_sound_made_otherwise_and_always_answered(client):
    kept = client.get("/api/v1/no-such-thing", headers={"X-Request-Id": "lb-7f3a.9:2"})
    assert kept.status_code == 404 and kept.headers["X-Request-Id"] == "lb-7f3a.9:2"
    for unsound in ("x" * 129, "id with spaces", "<script>", "ünïcode"):
        made = client.get("/api/v1/no-such-thing", headers={"X-Request-Id": unsound}).headers["X-Request-Id"]
        assert re.fullmatch(r"[0-9a-f]{32}", made), unsound
    first, second = (client.get("/api/v1/no-such-thing").headers["X-Request-Id"] for _ in range(2))
    assert first != second and re.fullmatch(r"[0-9a-f]{32}", first)


def test_a_push_is_one_line_with_its_device_its_counts_by_status_and_its_duration(client, officers, log_lines):
    officer = officers.make()
    phone = TestPhone(client, officer, officers.headers(officer))
    _, record = phone.open_case(CENTRE)
    r = client.post("/api/v1/sync/push", json={"records": [record, "not.a.jws"]},
                    headers={**phone.headers, "X-Request-Id": "push-0001"})
    assert r.status_code == 200 and r.headers["X-Request-Id"] == "push-0001"
    again = client.post("/api/v1/sync/push", json={"records": [record]}, headers=phone.headers)
    assert again.json["results"][0]["status"] == "duplicate"

    pushes = [line for line in log_lines() if line["logger"] == "fieldcase.push"]
    assert len(pushes) == 2
    first, second = pushes
    assert first["request_id"] == "push-0001" and second["request_id"] == again.headers["X-Request-Id"]
    assert {k: first[k] for k in ("level", "msg", "outcome", "devices", "records", "counts", "officer")} == {
        "level": "INFO", "msg": "push", "outcome": "done", "devices": [phone.device_id], "records": 2,
        "counts": {"applied": 1, "rejected": 1}, "officer": officer.id}
    assert isinstance(first["duration_ms"], float) and first["duration_ms"] >= 0
    assert second["counts"] == {"duplicate": 1}
    assert record.split(".")[1] not in log_lines.text()  # no record body


def _race_a_certificate(client, db, headers) -> Any:
    """PostgreSQL: another transaction holds the certificate, uncommitted, while the API's insert of the same one
    waits on the unique index; when it commits, the API's insert fails with the row in its DETAIL."""
    other = Session(db.engine)
    create_officer(other, username="race.holder", password=PASSWORD, name="李四", department="education",
                   region="330106", roles=["officer"], cert_number=RACED_CERT, cert_valid_from=date.today(),
                   cert_valid_until=date.today() + timedelta(days=365), kdf=TEST_KDF,
                   now=datetime.now(UTC))
    answer: dict[str, Any] = {}

    def post() -> None:
        answer["r"] = client.post("/api/v1/officers", headers={**headers, "X-Request-Id": "race-0001"}, json={
            "username": "race.loser", "password": PASSWORD, "name": "王五", "department": "education",
            "region": "330106", "cert_number": RACED_CERT, "cert_valid_from": date.today().isoformat(),
            "cert_valid_until": (date.today() + timedelta(days=365)).isoformat()})

    thread = threading.Thread(target=post)
    thread.start()
    time.sleep(1.0)  # the request is waiting on the index by now
    other.commit()
    other.close()
    thread.join(30)
    return answer["r"]


def test_a_run_full_of_personal_data_leaves_none_of_it_in_the_log(client, officers, db, log_lines):
    admin = officers.make(roles=("officer", "admin"))
    admin_headers = officers.headers(admin)
    made = client.post("/api/v1/officers", headers=admin_headers, json={
        **OFFICER, "department": "education", "region": "330106", "roles": ["officer"],
        "cert_valid_from": date.today().isoformat(), "cert_valid_until": (date.today() + timedelta(365)).isoformat()})
    assert made.status_code == 201, made.json
    taken = client.post("/api/v1/officers", headers=admin_headers, json={
        **OFFICER, "username": "zhang.sanfeng2", "department": "education", "region": "330106",
        "cert_valid_from": date.today().isoformat(), "cert_valid_until": (date.today() + timedelta(365)).isoformat()})
    assert taken.status_code == 409  # the certificate is held: the answer names it, the log must not

    refused = client.post("/api/v1/auth/token", json={"username": OFFICER["username"], "password": WRONG_PASSWORD})
    assert refused.status_code == 401
    tokens = client.post("/api/v1/auth/token", json={"username": OFFICER["username"],
                                                     "password": OFFICER["password"]}).json
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    clue = client.post("/api/v1/clues", headers=headers, json={
        "source": "hotline", "institution": CENTRE, "complainant": COMPLAINANT,
        "description": f"家长{COMPLAINANT['name']}反映：周末在居民楼内开展培训，联系电话 {COMPLAINANT['phone']}"})
    assert clue.status_code == 201, clue.json
    client.get(f"/api/v1/public/clues/{clue.json['tracking_code']}")

    secrets = [*OFFICER.values(), WRONG_PASSWORD, *COMPLAINANT.values(), tokens["access_token"],
               tokens["refresh_token"], clue.json["tracking_code"]]
    if db.engine.dialect.name == "postgresql":
        raced = _race_a_certificate(client, db, admin_headers)
        assert raced.status_code == 409 and raced.json["message"].startswith("a concurrent request wrote")
        conflict = [line for line in log_lines() if line["msg"] == "integrity conflict with a concurrent write"]
        assert [{k: line.get(k) for k in ("request_id", "db_error", "sqlstate", "constraint", "table")}
                for line in conflict] == [{"request_id": "race-0001", "db_error": "UniqueViolation",
                                           "sqlstate": "23505", "constraint": "uq_officers_cert_number",
                                           "table": "officers"}]
        secrets += [RACED_CERT, "李四", "王五", "race.loser"]

    text = log_lines.text()
    assert all(line["ts"] and line["level"] for line in log_lines())  # every line one JSON object
    assert [secret for secret in secrets if secret in text] == []
    assert "Key (" not in text and "DETAIL" not in text and "parameters" not in text


def test_an_exception_is_one_event_its_class_and_trace_without_its_text(log_lines):
    def check(phone: str) -> None:
        raise ValueError(f"complainant phone {phone} is not valid")

    try:
        try:
            check(COMPLAINANT["phone"])
        except ValueError as exc:
            raise RuntimeError(COMPLAINANT["name"]) from exc
    except RuntimeError:
        logging.getLogger("fieldcase.test").exception("could not file the clue")
    (line,) = log_lines()
    assert (line["msg"], line["error"], line["cause"]) == ("could not file the clue", "RuntimeError", "ValueError")
    # The frames between the raise and the handler, on one field; the cause's class, not its text.
    assert re.fullmatch(r"tests/web/test_logs\.py:\d+ test_an_exception_is_one_event\w+", line["trace"])
    assert COMPLAINANT["phone"] not in log_lines.text() and COMPLAINANT["name"] not in log_lines.text()
    assert log_lines.text().count("\n") == 1


def test_a_job_that_cannot_be_queued_is_one_line(settings, db, log_lines):
    runner = RQRunner(f"redis://127.0.0.1:{free_port()}/0", f"fieldcase-test-{uuid.uuid4().hex[:8]}", ALL_JOBS)
    with db.transaction() as session:
        runner.submit(session, "verify_upload", "upl_nothing")  # queued after the commit: Redis is not there
    (line,) = log_lines()
    assert (line["level"], line["logger"], line["job"], line["job_args"]) == (
        "WARNING", "fieldcase.jobs", "verify_upload", ["upl_nothing"])
    assert line["error"].startswith("ConnectionError: Error 111 connecting to 127.0.0.1:")
    assert log_lines.text().count("\n") == 1 and "Traceback" not in log_lines.text()


class _Http:
    """The test phone's client, over real HTTP (it reads `.status_code` and `.json` as Flask's test client has)."""

    def __init__(self, base: str) -> None:
        self.base = base

    def post(self, path: str, json: Any, headers: dict[str, str]) -> SimpleNamespace:
        r = requests.post(self.base + path, json=json, headers=headers, timeout=30)
        return SimpleNamespace(status_code=r.status_code, json=r.json(), headers=r.headers)


def test_under_gunicorn_the_access_line_and_the_app_lines_carry_the_same_id(settings, officers, tmp_path):
    officer = officers.make()
    log = tmp_path / "server.log"
    with live_server(settings, log, workers=1, FIELDCASE_LOG_FORMAT="json") as base:
        http = _Http(base)
        login = http.post("/api/v1/auth/token", {"username": officer.username, "password": PASSWORD}, {})
        phone = TestPhone(http, officer, {"Authorization": f"Bearer {login.json['access_token']}"})
        _, record = phone.open_case(CENTRE)
        pushed = http.post("/api/v1/sync/push", {"records": [record]},
                           {**phone.headers, "X-Request-Id": "phone-7c1e.push"})
        assert pushed.status_code == 200 and pushed.headers["X-Request-Id"] == "phone-7c1e.push"
        refused = http.post("/api/v1/auth/token", {"username": officer.username, "password": WRONG_PASSWORD}, {})
        assert refused.status_code == 401
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.startswith("{")]
    assert len(lines) == len(log.read_text(encoding="utf-8").splitlines())  # nothing but JSON lines
    mine = [line for line in lines if line.get("request_id") == "phone-7c1e.push"]
    assert [(line["logger"], line["msg"]) for line in mine] == [("fieldcase.push", "push"),
                                                                ("gunicorn.access", "access")]
    access = mine[1]
    assert (access["method"], access["path"], access["status"]) == ("POST", "/api/v1/sync/push", 200)
    assert access["bytes"] > 0 and access["duration_ms"] >= mine[0]["duration_ms"]
    assert mine[0]["counts"] == {"applied": 1}
    failed_login = [line for line in lines if line.get("path") == "/api/v1/auth/token" and line.get("status") == 401]
    assert len(failed_login) == 1 and re.fullmatch(r"[0-9a-f]{32}", failed_login[0]["request_id"])
    assert WRONG_PASSWORD not in log.read_text(encoding="utf-8")
    assert officer.username not in log.read_text(encoding="utf-8")
