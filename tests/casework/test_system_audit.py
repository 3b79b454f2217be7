"""The whole-system audit: given a server whose phones pushed and uploaded for real, when `fieldcase verify` runs,
then it passes; and when an insider edits the database or the store behind the server's back, then it names what
was touched, by check and object id, and exits 1.

Every record comes from a real phone (Ed25519 key, hash chain) pushing through the API, every file from a real
upload to the store; the tampering is done as someone with database or bucket access would do it: SQL on the
tables, bytes written into the store.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import timedelta

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import delete, func, select, update

from backend.casework.system_audit.jobs import AUDIT_JOB, REFRESH_HEAD_JOB
from backend.cli import main
from backend.core.models import (
    AuditRun,
    Case,
    CustodyEvent,
    Device,
    Evidence,
    Finding,
    Inspection,
    LedgerRecord,
    MerkleNode,
    TreeHead,
    utcnow,
)
from media.custody.log import HEAD_EVERY
from tests.casework.test_audit import Field
from tests.conftest import Officers
from tests.phones import TestPhone, jws_hash


def env_of(settings, **extra) -> dict[str, str]:
    return {"DATABASE_URL": settings.database_url, "FIELDCASE_INSTANCE_DIR": str(settings.instance_dir), **extra}


def verify(settings, *args: str, clock=None, **extra) -> tuple[int, dict]:
    """`fieldcase verify --json`, its exit code and its report."""
    result = CliRunner().invoke(main, ["verify", "--json", *args], env=env_of(settings, **extra), obj=clock)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def named(report: dict, check: str, kind: str, ident: str) -> list[dict]:
    return [p for p in report["problems"] if (p["check"], p["kind"], p["object"]) == (check, kind, ident)]


class Server:
    """A Xihu inspection by a phone: a case opened, two clips and a photo uploaded and verified, a finding, the
    inspection ended; all pushed through the API."""

    def __init__(self, client, officers) -> None:
        self.field = f = Field(client, officers)
        self.iid = f.start()
        self.clips = [f.clip(self.iid, "CAM-7", 1, 0, 200), f.clip(self.iid, "CAM-7", 2, 200, 400)]
        self.photo_bytes = b"\xff\xd8 a photo of the classroom " + os.urandom(16)
        self.photo = f.declare(self.photo_bytes)
        f.records.append(f.phone.finding(self.iid))
        f.end(self.iid, 600)
        results = f.push()
        self.finding = next(r["refs"]["finding_id"] for r in results if "finding_id" in (r.get("refs") or {}))
        for eid, data in (*self.clips, (self.photo, self.photo_bytes)):
            assert self.upload(eid, data)["status"] == "verified"
        self.device = f.phone.device_id

    def upload(self, eid: str, data: bytes) -> dict:
        """As the phone does: to the local store through the API, or to S3 by the presigned URL of the plan."""
        f = self.field
        plan = f.client.post(f"/api/v1/evidence/{eid}/uploads", headers=f.headers).json
        if "/api/v1/" in plan["url"]:
            return f.upload(eid, data)
        assert requests.put(plan["url"], data=data, headers=plan["headers"], timeout=30).status_code == 200
        done = f.client.post(f"/api/v1/evidence/{eid}/complete", json={}, headers=f.headers)
        assert done.status_code == 200, done.json
        return done.json


@pytest.fixture
def server(client, officers) -> Server:
    return Server(client, officers)


# ---------------------------------------------------------------------------------------------------- healthy


def test_given_a_healthy_server_when_verify_runs_then_it_exits_0_and_counts_what_it_checked(server, settings):
    code, report = verify(settings)
    assert code == 0, report["problems"]
    assert report["ok"] is True and report["problems"] == [] and report["problem_total"] == 0
    counts = report["counts"]
    assert counts["records"] == 7 and counts["devices"] == 1
    assert counts["evidence"] == 3 and counts["files"] == 3 and counts["bytes"] > 0
    assert counts["inspections"] == 1 and counts["findings"] == 1 and counts["cases"] == 1
    assert counts["leaves"] > 0
    assert set(report["problem_counts"]) == {"tree", "heads", "ledger", "evidence", "derived"}

    human = CliRunner().invoke(main, ["verify"], env=env_of(settings))
    assert human.exit_code == 0, human.output
    assert "fieldcase verify: OK" in human.output and "7 records of 1 devices" in human.output


def test_given_merges_conflicts_a_released_gap_and_invalid_records_when_verify_runs_then_all_is_consistent(
        client, officers, settings):
    """The protocol's harder paths leave nothing the audit could mistake for tampering."""
    wang = officers.make(region="330105", department="education")
    chen = officers.make(region="330105", department="education")
    centre = {"name": "拱墅区启明培训中心", "region": "330105", "address": "湖墅南路 8 号"}
    first = TestPhone(client, wang, officers.headers(wang))
    cid, opened = first.open_case(centre)
    assert first.push([opened])["results"][0]["status"] == "applied"
    second = TestPhone(client, chen, officers.headers(chen))
    other, merged = second.open_case(centre)  # merged into wang's open case
    update = second.record("case.update", {"case": {"client_case_id": other}, "base_version": 1,
                                           "fields": {"summary": "家长投诉"}})
    bad = second.end(str(uuid.uuid4()))  # no such inspection: invalid
    assert [r["status"] for r in second.push([merged, update, bad])["results"]] == ["applied", "applied", "invalid"]
    late = first.record("case.update", {"case": {"client_case_id": cid}, "base_version": 1,
                                        "fields": {"summary": "无证办学"}})
    assert first.push([late])["results"][0]["status"] == "conflict"
    first.seq += 1  # a record lost with the phone: the next one waits behind the gap until a reviewer releases it
    first.prev = "cd" * 32
    iid, started = first.start(cid, [wang.id, chen.id])
    assert first.push([started])["results"][0]["status"] == "deferred"
    reviewer = officers.make(region="330105", roles=("officer", "reviewer"))
    released = client.post(f"/api/v1/devices/{first.device_id}/gaps/release", json={"reason": "phone wiped"},
                           headers=officers.headers(reviewer))
    assert released.status_code == 200, released.json
    code, report = verify(settings)
    assert code == 0, report["problems"]
    assert report["counts"]["records"] == 6 and report["counts"]["devices"] == 2


def test_custody_verify_stays_as_it_was(server, settings):
    result = CliRunner().invoke(main, ["custody", "verify"], env=env_of(settings))
    assert result.exit_code == 0 and "OK" in result.output


# ---------------------------------------------------------------------------------------------------- ledger


def _ledger_row(db, device: str, rtype: str) -> LedgerRecord:
    with db.session() as s:
        return s.scalars(select(LedgerRecord).where(LedgerRecord.device_id == device, LedgerRecord.type == rtype)
                         .order_by(LedgerRecord.seq)).first()


def test_given_an_edited_ledger_jws_when_verify_runs_then_the_record_is_named(server, settings, db):
    row = _ledger_row(db, server.device, "inspection.finding")
    header, payload, signature = row.jws.split(".")
    forged = f"{header}.{payload[:-4]}{'AAAA' if payload[-4:] != 'AAAA' else 'BBBB'}.{signature}"
    with db.engine.begin() as conn:  # the JWS and its hash column, as a careful insider would
        conn.execute(update(LedgerRecord).where(LedgerRecord.id == row.id)
                     .values(jws=forged, hash=jws_hash(forged)))
    code, report = verify(settings)
    assert code == 1
    where = f"{server.device}#{row.seq}"
    assert named(report, "ledger", "record", where), report["problems"]
    assert any("signature" in p["message"] or "not a record" in p["message"]
               for p in named(report, "ledger", "record", where))


def test_given_an_edited_ledger_status_when_verify_runs_then_the_record_is_named(server, settings, db):
    row = _ledger_row(db, server.device, "inspection.finding")
    with db.engine.begin() as conn:
        conn.execute(update(LedgerRecord).where(LedgerRecord.id == row.id).values(status="invalid", code="bad_body"))
    code, report = verify(settings)
    assert code == 1
    problems = named(report, "ledger", "record", f"{server.device}#{row.seq}")
    assert any("signed content is valid" in p["message"] for p in problems), report["problems"]


def test_given_a_deleted_devices_last_ledger_rows_when_verify_runs_then_the_device_head_leaf_names_the_cut(
        server, settings, db):
    with db.session() as s:
        last = s.scalar(select(func.max(LedgerRecord.seq)).where(LedgerRecord.device_id == server.device))
        keep = s.scalars(select(LedgerRecord).where(LedgerRecord.device_id == server.device,
                                                    LedgerRecord.seq == last - 2)).one()
    with db.engine.begin() as conn:  # the last two rows gone, the head moved back: the chain itself is whole
        conn.execute(delete(LedgerRecord).where(LedgerRecord.device_id == server.device, LedgerRecord.seq > last - 2))
        conn.execute(update(Device).where(Device.id == server.device).values(head_seq=keep.seq, head_hash=keep.hash))
    code, report = verify(settings)
    assert code == 1
    problems = named(report, "ledger", "device", server.device)
    assert any("witnessed its chain to seq" in p["message"] for p in problems), report["problems"]


# ---------------------------------------------------------------------------------------------------- evidence


def test_given_an_edited_evidence_hash_when_verify_runs_then_the_item_is_named(server, settings, db):
    with db.engine.begin() as conn:
        conn.execute(update(Evidence).where(Evidence.id == server.photo).values(sha256="ab" * 32))
    code, report = verify(settings)
    assert code == 1
    messages = [p["message"] for p in named(report, "evidence", "evidence", server.photo)]
    assert any("sha256 differs from what its signed evidence.capture" in m for m in messages), report["problems"]
    assert any("declared custody event" in m for m in messages)


def test_given_a_flipped_byte_in_a_stored_file_when_verify_runs_then_the_item_is_named(server, settings, db, app):
    store = app.extensions["fieldcase"].store
    with db.session() as s:
        key = s.get(Evidence, server.photo).object_key
    path = store.root / key
    os.chmod(path, 0o640)
    data = bytearray(path.read_bytes())
    data[5] ^= 0x01
    path.write_bytes(bytes(data))
    code, report = verify(settings)
    assert code == 1
    assert any("bytes were altered" in p["message"] for p in named(report, "evidence", "evidence", server.photo))


@pytest.mark.parametrize("store_kind", ["s3"])
def test_given_a_flipped_byte_in_an_s3_object_when_verify_runs_then_the_item_is_named(media_app, s3_server,
                                                                                        settings):
    state = media_app.extensions["fieldcase"]
    client = media_app.test_client()
    here = Server(client, Officers(state.db, client))
    bucket = state.settings.s3_bucket
    env = {"FIELDCASE_S3_BUCKET": bucket, "FIELDCASE_S3_ENDPOINT_URL": s3_server}
    assert verify(settings, **env)[0] == 0
    with state.db.session() as s:
        key = s.get(Evidence, here.photo).object_key
    s3 = state.store.client
    data = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[0] ^= 0x80
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(data))
    code, report = verify(settings, **env)
    assert code == 1
    assert any("bytes were altered" in p["message"] for p in named(report, "evidence", "evidence", here.photo))


def test_given_sample_n_when_verify_runs_then_n_files_are_rehashed_and_the_draw_is_repeatable(server, settings):
    code, first = verify(settings, "--sample", "1", "--seed", "7")
    assert code == 0 and first["counts"]["files"] == 1 and first["sample"] == 1 and first["seed"] == 7
    assert first["counts"]["evidence"] == 3  # every item is still checked against its declaration and custody
    code, again = verify(settings, "--sample", "2")
    assert code == 0 and again["counts"]["files"] == 2 and isinstance(again["seed"], int)


# ---------------------------------------------------------------------------------------------------- custody log


def test_given_custody_events_deleted_after_the_last_head_when_verify_runs_then_they_are_missed(server, settings,
                                                                                              db, client):
    # A head now; then the phone's newest upload is read back: its custody events come after the head.
    field = server.field
    assert client.get("/api/v1/custody/tree-head", headers=field.headers).status_code == 200
    with db.session() as s:
        head = s.scalar(select(func.max(TreeHead.tree_size)))
    extra = field.phone.evidence(server.iid, data=b"one more photo")
    field.phone.push([extra[1]])
    assert server.upload(extra[0], b"one more photo")["status"] == "verified"
    assert verify(settings)[0] == 0
    with db.engine.begin() as conn:  # every event after the head, and its Merkle nodes: the tree stays whole
        conn.execute(delete(CustodyEvent).where(CustodyEvent.leaf_index >= head))
        conn.execute(delete(MerkleNode).where(MerkleNode.index * func.pow(2, MerkleNode.level) + func.pow(
            2, MerkleNode.level) > head))
    code, report = verify(settings)
    assert code == 1
    assert report["problem_counts"]["tree"] == 0  # what is left is a consistent, signed tree
    assert any("no declared event" in p["message"] for p in named(report, "evidence", "evidence", extra[0]))
    assert named(report, "ledger", "device", server.device)


def test_given_custody_events_deleted_but_their_nodes_kept_when_verify_runs_then_the_tree_check_names_them(
        server, settings, db):
    with db.session() as s:
        size = s.scalar(select(func.max(CustodyEvent.leaf_index))) + 1
    with db.engine.begin() as conn:
        conn.execute(delete(CustodyEvent).where(CustodyEvent.leaf_index >= size - 2))
    code, report = verify(settings)
    assert code == 1
    assert named(report, "tree", "leaf", str(size - 2)), report["problems"]


def test_given_a_deleted_newest_tree_head_when_verify_runs_then_it_is_named(client, officers, settings, db):
    field = Field(client, officers)
    for _ in range(HEAD_EVERY):  # every declaration is a leaf: the log passes its first periodic head
        field.declare(os.urandom(8))
    field.push()
    with db.session() as s:
        assert s.get(TreeHead, HEAD_EVERY) is not None
        assert s.scalar(select(func.max(TreeHead.tree_size))) == HEAD_EVERY
    assert verify(settings)[0] == 0
    with db.engine.begin() as conn:
        conn.execute(delete(TreeHead).where(TreeHead.tree_size == HEAD_EVERY))
    code, report = verify(settings)
    assert code == 1
    assert named(report, "heads", "tree_head", str(HEAD_EVERY)), report["problems"]


def test_given_leaves_left_unsigned_past_the_head_interval_when_verify_runs_then_they_are_named_until_a_head_is_due(
        server, settings, app):
    later = utcnow() + timedelta(hours=2)
    code, report = verify(settings, clock=lambda: later)
    assert code == 1
    assert [p["kind"] for p in report["problems"]] == ["leaf"] and report["problem_counts"]["heads"] == 1
    # The periodic job signs the log as it stands; then nothing waits.
    refreshed = CliRunner().invoke(main, ["custody", "refresh-head"], env=env_of(settings), obj=lambda: later)
    assert refreshed.exit_code == 0, refreshed.output
    assert verify(settings, clock=lambda: later + timedelta(minutes=1))[0] == 0
    assert verify(settings, "--sample", "1", FIELDCASE_HEAD_INTERVAL="60",
                  clock=lambda: later + timedelta(minutes=1))[0] == 0


def test_given_a_tsa_when_a_head_has_no_timestamp_token_past_the_head_interval_then_it_is_named(server, settings,
                                                                                                client):
    head = client.get("/api/v1/custody/tree-head", headers=server.field.headers).json  # this app asks no TSA
    later = utcnow() + timedelta(hours=2)
    tsa = {"FIELDCASE_TSA_URL": "http://127.0.0.1:9/tsa"}
    assert verify(settings, clock=lambda: later)[0] == 0  # no TSA configured: a head needs no token
    code, report = verify(settings, clock=lambda: later, **tsa)
    assert code == 1
    assert any("RFC 3161" in p["message"] for p in named(report, "heads", "tree_head", str(head["tree_size"])))
    assert verify(settings, **tsa)[0] == 0  # a head younger than the interval may still be waiting for its token


# ---------------------------------------------------------------------------------------------------- derived


def test_given_an_edited_finding_description_when_verify_runs_then_the_finding_is_named(server, settings, db):
    with db.engine.begin() as conn:
        conn.execute(update(Finding).where(Finding.id == server.finding).values(description="现场未发现问题"))
    code, report = verify(settings)
    assert code == 1
    problems = named(report, "derived", "finding", server.finding)
    assert [p["message"].split(" differs")[0] for p in problems] == ["its description"], report["problems"]
    assert "现场" not in json.dumps(report, ensure_ascii=False)  # ids and field names, never the values


def test_given_an_edited_inspection_outcome_when_verify_runs_then_the_inspection_is_named(server, settings, db):
    with db.engine.begin() as conn:
        conn.execute(update(Inspection).where(Inspection.id == server.iid).values(outcome="no_violation"))
    code, report = verify(settings)
    assert code == 1
    assert any(p["message"].startswith("its outcome differs")
               for p in named(report, "derived", "inspection", server.iid)), report["problems"]


def test_given_edited_procedure_flags_when_verify_runs_then_the_inspection_is_named(server, settings, db):
    with db.session() as s:
        assert s.get(Inspection, server.iid).flags == []  # two certified officers, the owner among them, on time
    with db.engine.begin() as conn:
        conn.execute(update(Inspection).where(Inspection.id == server.iid).values(flags=["owner_not_present"]))
    code, report = verify(settings)
    assert code == 1
    assert any("procedure flags" in p["message"] for p in named(report, "derived", "inspection", server.iid))


def test_given_an_edited_case_status_when_verify_runs_then_the_case_is_named(server, settings, db):
    case_id = server.field.case_id
    with db.engine.begin() as conn:  # closed at the desk without a step: no history, no custody leaf
        conn.execute(update(Case).where(Case.id == case_id).values(status="not_penalised"))
    code, report = verify(settings)
    assert code == 1
    messages = [p["message"] for p in named(report, "derived", "case", case_id)]
    assert any("history recorded no change" in m for m in messages), report["problems"]
    assert any("custody log bound" in m for m in messages)


def test_given_a_finding_no_phone_signed_when_verify_runs_then_it_is_named(server, settings, db):
    with db.session() as s:
        original = s.get(Finding, server.finding)
        forged = {c.key: getattr(original, c.key) for c in Finding.__table__.columns}
    forged.update(id="00000000-0000-4000-8000-000000000001", op="00000000-0000-4000-8000-000000000002")
    with db.engine.begin() as conn:
        conn.execute(Finding.__table__.insert().values(**forged))
    code, report = verify(settings)
    assert code == 1
    assert named(report, "derived", "finding", forged["id"]), report["problems"]


# ---------------------------------------------------------------------------------------------------- recorded runs


def test_given_verify_record_when_it_runs_then_the_verdict_is_stored(server, settings, db):
    result = CliRunner().invoke(main, ["verify", "--record", "--sample", "1"], env=env_of(settings))
    assert result.exit_code == 0, result.output
    with db.session() as s:
        run = s.scalars(select(AuditRun)).one()
        assert run.ok and run.trigger == "command" and run.sample == 1 and run.problem_total == 0
        assert run.counts["records"] == 7


def test_the_audit_jobs_are_in_the_runners_table(app):
    assert {AUDIT_JOB, REFRESH_HEAD_JOB} <= set(app.extensions["fieldcase"].runner.table)


# ---------------------------------------------------------------------------------------------------- on workers


def test_given_job_workers_when_the_audit_job_runs_then_it_stores_its_verdict_and_schedules_the_next(
        client, officers, settings, redis_url, job_queue, tmp_path, db):
    from dataclasses import replace

    from backend.bootstrap import rq_runner
    from backend.casework.system_audit.jobs import schedule_periodic
    from tests.media.test_jobs import run_worker_burst

    Server(client, officers)
    rq = replace(settings, jobs="rq", redis_url=redis_url, job_queue=job_queue)
    runner = rq_runner(rq)
    now = utcnow()
    schedule_periodic(runner, rq, now)
    schedule_periodic(runner, rq, now)  # a second worker starting: still one run of each scheduled
    scheduled = runner.queue.scheduled_job_registry.get_job_ids()
    assert len(scheduled) == 2 and all(job_queue in job_id for job_id in scheduled)

    every = 3600
    runner.enqueue_now(AUDIT_JOB, [1, 3600, every])  # what the scheduler queues when the slot comes
    run_worker_burst(rq, tmp_path)
    with db.session() as s:
        run = s.scalars(select(AuditRun)).one()
        assert run.ok and run.trigger == "job" and run.sample == 1 and run.counts["files"] == 1
    slot = int(utcnow().timestamp()) // every + 1
    assert f"{job_queue}-{AUDIT_JOB}-{every}-{slot}" in runner.queue.scheduled_job_registry.get_job_ids()
