"""A restore you can prove (issue 24, item 6): given a server whose phones pushed and uploaded for real and a tree
head saved before the database was dumped, when the dump is restored into a fresh database (pg_dump and pg_restore
on PostgreSQL, SQLite's backup API otherwise) and `fieldcase restore-check` runs, then it passes a good restore,
and fails one that lost its newest custody events (saying how many), one whose log diverges, and a store missing an
object (naming the evidence item).

Also here: the periodic tree head (FIELDCASE_HEAD_INTERVAL) that keeps the log's newest events under a signed head
between the heads of every 256 leaves.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url

from backend.bootstrap import database as script_database
from backend.casework.system_audit.jobs import REFRESH_HEAD_JOB
from backend.cli import main
from backend.core.models import CustodyEvent, Evidence, TreeHead, WitnessCosignature, utcnow
from media.custody import log as custody
from tests.casework.test_system_audit import Server, env_of
from tests.conftest import Officers, app_on
from tests.media.test_checkpoint import WITNESS, split_note

# ---------------------------------------------------------------------------------------------------- helpers


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def dump(url: str, to: Path) -> Path:
    """The nightly backup: `pg_dump -Fc` on PostgreSQL, SQLite's online backup API otherwise."""
    if url.startswith("sqlite"):
        with closing(sqlite3.connect(make_url(url).database)) as live, closing(sqlite3.connect(to)) as copy:
            live.backup(copy)
    else:
        subprocess.run(["pg_dump", "-Fc", "--no-owner", "-f", str(to), "--dbname", libpq(url)], check=True,
                       timeout=120)
    return to


def restore(dumped: Path, fresh_database_url) -> str:
    """Into a fresh, empty database: `pg_restore`, or the backup file copied into place."""
    url = fresh_database_url()
    if url.startswith("sqlite"):
        shutil.copyfile(dumped, make_url(url).database)
    else:
        subprocess.run(["pg_restore", "--no-owner", "--exit-on-error", "--dbname", libpq(url), str(dumped)],
                       check=True, timeout=120)
    return url


def restore_check(settings, url: str, *args: str, **extra: str) -> tuple[int, dict]:
    """`fieldcase restore-check --json` on the restored database, its exit code and its report."""
    result = CliRunner().invoke(main, ["restore-check", "--json", *args],
                                env={**env_of(settings), "DATABASE_URL": url, **extra})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def problems(report: dict, check: str) -> list[dict]:
    return [p for p in report["problems"] if p["check"] == check]


def log_size(db) -> int:
    with db.session() as s:
        return s.scalar(select(func.max(CustodyEvent.leaf_index))) + 1


def save_head(client, headers, to: Path) -> dict:
    """What the off-site cron job keeps: the JSON of GET /custody/tree-head."""
    r = client.get("/api/v1/custody/tree-head", headers=headers)
    assert r.status_code == 200, r.json
    to.write_text(json.dumps(r.json))
    return r.json


def save_checkpoint(client, to: Path) -> str:
    """Or the checkpoint note of GET /custody/checkpoint (public: the cron job needs no token)."""
    r = client.get("/api/v1/custody/checkpoint")
    assert r.status_code == 200
    to.write_bytes(r.data)
    return r.data.decode()


def more_events(server: Server, n: int = 2) -> None:
    """Work after the saved head or the dump: further photos declared by the phone."""
    for _ in range(n):
        server.field.declare(b"\xff\xd8 another photo " + os.urandom(8))
    server.field.push()


@pytest.fixture
def server(client, officers) -> Server:
    return Server(client, officers)


# ---------------------------------------------------------------------------------------------------- restores


def test_given_a_head_saved_before_the_dump_when_the_restore_is_checked_then_it_passes_and_says_what_it_checked(
        server, settings, db, tmp_path, fresh_database_url):
    head = save_head(server.field.client, server.field.headers, tmp_path / "head.json")
    note = save_checkpoint(server.field.client, tmp_path / "checkpoint.txt")
    more_events(server)  # the cron job saved the head an hour before the nightly dump
    size = log_size(db)
    restored = restore(dump(settings.database_url, tmp_path / "fieldcase.dump"), fresh_database_url)

    code, report = restore_check(settings, restored, "--saved-head", str(tmp_path / "head.json"))
    assert code == 0, report["problems"]
    assert report["ok"] and report["problem_total"] == 0
    assert set(report["problem_counts"]) == {"tree", "saved_head", "store"}
    assert report["compared_with"] == {"source": "saved head", "tree_size": head["tree_size"],
                                       "root_hash": head["root_hash"], "signed_by": head["key_id"],
                                       "restored_tree_size": size, "restored_newest_head": head["tree_size"],
                                       "lost_events": 0}
    assert head["tree_size"] < size
    counts = report["counts"]
    assert counts["leaves"] == size and counts["heads"] >= 1
    assert counts["evidence_verified"] == 3 and counts["objects_checked"] == 3 and counts["objects_missing"] == 0
    assert counts["bytes"] == sum(len(data) for _, data in server.clips) + len(server.photo_bytes)

    code, report = restore_check(settings, restored, "--saved-head", str(tmp_path / "checkpoint.txt"))
    assert code == 0, report["problems"]
    assert report["compared_with"]["source"] == "saved checkpoint"
    assert report["compared_with"]["tree_size"] == int(note.split("\n")[1])

    human = CliRunner().invoke(main, ["restore-check", "--saved-head", str(tmp_path / "head.json")],
                               env={**env_of(settings), "DATABASE_URL": restored})
    assert human.exit_code == 0, human.output
    assert (f"fieldcase restore-check: OK: {size} custody leaves and {counts['heads']} heads verified, saved head "
            f"of size {head['tree_size']} compared, 3 of 3 objects checked") in human.output


def test_given_an_older_dump_that_lost_the_newest_events_when_the_restore_is_checked_then_it_fails_saying_how_many(
        server, settings, db, tmp_path, fresh_database_url):
    dumped = dump(settings.database_url, tmp_path / "fieldcase.dump")  # last night's dump
    kept = log_size(db)
    more_events(server, 3)
    head = save_head(server.field.client, server.field.headers, tmp_path / "head.json")  # this morning's head
    lost = head["tree_size"] - kept
    assert lost >= 3
    restored = restore(dumped, fresh_database_url)

    # What the issue found: the restored log is whole, only shorter, and `custody verify` cannot tell.
    verified = CliRunner().invoke(main, ["custody", "verify"], env={**env_of(settings), "DATABASE_URL": restored})
    assert verified.exit_code == 0, verified.output

    code, report = restore_check(settings, restored, "--saved-head", str(tmp_path / "head.json"))
    assert code == 1
    (problem,) = report["problems"]
    assert (problem["check"], problem["kind"], problem["object"]) == ("saved_head", "tree_head", str(head["tree_size"]))
    assert problem["message"].startswith(f"the restore lost {lost} events after tree size {kept}: ")
    assert report["compared_with"]["lost_events"] == lost and report["compared_with"]["restored_tree_size"] == kept
    assert report["problem_counts"] == {"tree": 0, "saved_head": 1, "store": 0}


def test_given_a_restored_log_that_took_other_events_since_when_the_restore_is_checked_then_it_diverges(
        server, settings, db, tmp_path, fresh_database_url):
    dumped = dump(settings.database_url, tmp_path / "fieldcase.dump")
    more_events(server)
    head = save_head(server.field.client, server.field.headers, tmp_path / "head.json")
    restored = restore(dumped, fresh_database_url)
    # The restored server ran before anyone checked it: its log grew past the saved size with other events.
    grown = script_database(replace(settings, database_url=restored), signing=True)
    with grown.transaction() as session:
        for i in range(head["tree_size"]):
            custody.record(session, "read", None, "custodian", at=utcnow(), purpose=f"after the restore {i}")
    grown.dispose()

    code, report = restore_check(settings, restored, "--saved-head", str(tmp_path / "head.json"))
    assert code == 1
    (problem,) = problems(report, "saved_head")
    assert problem["object"] == str(head["tree_size"])
    assert problem["message"].startswith("the restored log diverges from the saved head")
    assert report["compared_with"]["lost_events"] == 0 and problems(report, "tree") == []


def test_given_a_saved_head_edited_after_it_was_saved_when_the_restore_is_checked_then_it_is_refused(
        server, settings, tmp_path, fresh_database_url):
    head = save_head(server.field.client, server.field.headers, tmp_path / "head.json")
    note = save_checkpoint(server.field.client, tmp_path / "checkpoint.txt")
    restored = restore(dump(settings.database_url, tmp_path / "fieldcase.dump"), fresh_database_url)
    # A smaller size would hide lost events: the head's signature no longer covers it.
    (tmp_path / "edited.json").write_text(json.dumps({**head, "tree_size": head["tree_size"] - 1}))
    lines = note.split("\n")
    (tmp_path / "edited.txt").write_text("\n".join([lines[0], str(int(lines[1]) - 1), *lines[2:]]))
    for edited in ("edited.json", "edited.txt"):
        code, report = restore_check(settings, restored, "--saved-head", str(tmp_path / edited))
        assert code == 1
        (problem,) = report["problems"]
        assert (problem["check"], problem["kind"]) == ("saved_head", "file"), problem
        assert "edited after it was saved" in problem["message"]
        assert report["compared_with"] is None


# ---------------------------------------------------------------------------------------------------- the store


@pytest.fixture
def media_server(media_app) -> Server:
    client = media_app.test_client()
    return Server(client, Officers(media_app.extensions["fieldcase"].db, client))


def test_given_a_store_missing_an_object_when_the_restore_is_checked_then_it_fails_naming_the_evidence(
        media_server, media_app, store_kind, tmp_path, fresh_database_url):
    state = media_app.extensions["fieldcase"]
    settings = state.settings
    head = save_head(media_server.field.client, media_server.field.headers, tmp_path / "head.json")
    restored = restore(dump(settings.database_url, tmp_path / "fieldcase.dump"), fresh_database_url)
    lost, _ = media_server.clips[1]
    with state.db.session() as s:
        key = s.get(Evidence, lost).object_key
    if store_kind == "s3":  # the bucket copy lacks it
        state.store.client.delete_object(Bucket=settings.s3_bucket, Key=key)
        bucket = {"FIELDCASE_S3_BUCKET": settings.s3_bucket, "FIELDCASE_S3_ENDPOINT_URL": settings.s3_endpoint_url}
    else:
        (settings.instance_dir / "evidence" / key).unlink()
        bucket = {}

    code, report = restore_check(settings, restored, "--saved-head", str(tmp_path / "head.json"), **bucket)
    assert code == 1
    assert report["problems"] == [{"check": "store", "kind": "evidence", "object": lost,
                                   "message": "its verified object is missing from the store"}]
    assert report["counts"]["objects_checked"] == 3 and report["counts"]["objects_missing"] == 1
    assert report["compared_with"]["tree_size"] == head["tree_size"]


def test_given_sample_n_when_the_restore_is_checked_then_only_n_objects_are_checked(
        server, settings, tmp_path, fresh_database_url):
    save_head(server.field.client, server.field.headers, tmp_path / "head.json")
    restored = restore(dump(settings.database_url, tmp_path / "fieldcase.dump"), fresh_database_url)
    saved = ("--saved-head", str(tmp_path / "head.json"))

    code, report = restore_check(settings, restored, *saved, "--sample", "1", "--seed", "7")
    assert code == 0, report["problems"]
    assert (report["sample"], report["seed"]) == (1, 7)
    assert report["counts"]["evidence_verified"] == 3 and report["counts"]["objects_checked"] == 1

    code, report = restore_check(settings, restored, *saved, "--sample", "5")
    assert code == 0 and report["counts"]["objects_checked"] == 3  # more than there are: each one once
    assert isinstance(report["seed"], int)  # drawn afresh, and given so the draw can be repeated


# ---------------------------------------------------------------------------------------------------- witnesses


@pytest.fixture
def witnessed_app(settings):
    with app_on(replace(settings, witness_keys=(WITNESS.vkey,))) as application:
        yield application


def test_given_no_saved_head_when_a_witness_cosigned_a_checkpoint_then_the_restore_is_checked_against_it(
        witnessed_app, settings, tmp_path, fresh_database_url):
    client = witnessed_app.test_client()
    officers = Officers(witnessed_app.extensions["fieldcase"].db, client)
    server = Server(client, officers)
    note = client.get("/api/v1/custody/checkpoint").data.decode()
    text, _ = split_note(note)
    custodian = officers.headers(officers.make(roles=("custodian",)))
    r = client.post("/api/v1/custody/checkpoint/cosignatures", data=note + WITNESS.cosign(text),
                    headers=custodian, content_type="text/plain; charset=utf-8")
    assert r.status_code == 200, r.json
    more_events(server)
    restored = restore(dump(settings.database_url, tmp_path / "fieldcase.dump"), fresh_database_url)
    witness = {"FIELDCASE_WITNESS_KEYS": WITNESS.vkey}

    code, report = restore_check(settings, restored, **witness)
    assert code == 0, report["problems"]
    assert report["compared_with"]["source"] == "witnessed checkpoint"
    assert report["compared_with"]["signed_by"] == WITNESS.name
    assert report["compared_with"]["tree_size"] == int(text.split("\n")[1])

    code, report = restore_check(settings, restored)  # the witness not configured: nothing to compare with
    assert code == 1
    (problem,) = report["problems"]
    assert problem["check"] == "saved_head" and problem["message"].startswith("nothing outside the restored database")

    restored_db = script_database(replace(settings, database_url=restored))
    with restored_db.transaction() as session:  # the cosignature altered in the restored database
        session.execute(update(WitnessCosignature).values(signature=bytes(64)))
    restored_db.dispose()
    code, report = restore_check(settings, restored, **witness)
    assert code == 1
    assert any("does not verify" in p["message"] for p in problems(report, "saved_head")), report["problems"]


# ---------------------------------------------------------------------------------------------------- timed heads


def test_given_unsigned_leaves_when_the_periodic_head_job_runs_then_a_signed_head_covers_them(server, db, app):
    size = log_size(db)
    with db.session() as s:
        assert s.get(TreeHead, size) is None  # far fewer than 256 leaves: no periodic head yet
    runner = app.extensions["fieldcase"].runner
    with db.transaction() as session:
        runner.submit(session, REFRESH_HEAD_JOB, 0)  # what the worker runs every quarter of FIELDCASE_HEAD_INTERVAL
    with db.session() as s:
        assert s.get(TreeHead, size) is not None
        heads = s.scalar(select(func.count()).select_from(TreeHead))
    with db.transaction() as session:
        runner.submit(session, REFRESH_HEAD_JOB, 0)  # nothing new: no new head
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(TreeHead)) == heads


def test_given_job_workers_when_the_periodic_head_job_runs_then_it_signs_and_schedules_the_next(
        server, db, settings, redis_url, job_queue, tmp_path):
    from backend.bootstrap import rq_runner
    from tests.media.test_jobs import run_worker_burst

    rq = replace(settings, jobs="rq", redis_url=redis_url, job_queue=job_queue)
    runner = rq_runner(rq)
    every = 900  # FIELDCASE_HEAD_INTERVAL 3600: a head is asked for every quarter of it
    runner.enqueue_now(REFRESH_HEAD_JOB, [every])
    run_worker_burst(rq, tmp_path)
    with db.session() as s:
        assert s.get(TreeHead, log_size(db)) is not None
    slot = int(utcnow().timestamp()) // every + 1
    assert f"{job_queue}-{REFRESH_HEAD_JOB}-{every}-{slot}" in runner.queue.scheduled_job_registry.get_job_ids()
