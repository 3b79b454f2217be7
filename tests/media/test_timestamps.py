"""RFC 3161 timestamps of signed tree heads (PROTOCOL "Timestamps (RFC 3161)"), against OpenSSL's own TSA.

The app is configured with the test TSA (tests/tsa.py: `openssl ts -reply` behind HTTP). A head is asked for its
token only once the transaction that issued it has committed; the token travels with the head (`timestamp_token`)
and in the package, and both verifiers check it. OpenSSL's `ts -verify` is the second implementation.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sqlite3
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from backend.bootstrap import create_app
from backend.cli import main
from backend.core.errors import TimestampFailed
from backend.core.models import HeadTimestamp, TreeHead, utcnow
from media.custody import head_stamps, heads
from media.custody import log as custody
from media.custody.timestamps import (
    TimestampAuthority,
    check_head_token,
    decode_token,
    head_message,
    load_trust,
    request_for,
    token_from_reply,
)
from media.custody.trees import CUSTODY_LOCK_KEY
from media.custody.verify import verify_log
from media.package_verify import verify_package
from tests.conftest import _empty_tables, app_on
from tests.media.test_package import cli, rewrite
from tests.media.test_package import served as built  # the package on this module's app: with its TSA
from tests.tsa import make_ca, misspelt

__all__ = ["built"]


@pytest.fixture
def app(settings, tsa):
    """The app with the test TSA named in its configuration, and its CA as the trust anchor."""
    with app_on(replace(settings, tsa_url=tsa.url, tsa_cert_file=str(tsa.ca))) as application:
        yield application


@pytest.fixture
def trust(tsa):
    return load_trust(tsa.ca.read_bytes())


@pytest.fixture
def other_ca(tmp_path):
    cert, _key = make_ca(tmp_path / "other", "Another CA")
    return cert


def grow(db, n: int) -> None:
    with db.transaction() as session:
        for i in range(n):
            custody.record(session, "read", None, "tester", at=utcnow(), purpose=f"timestamp test {i}")


def tree_head(client, officers, **query) -> dict:
    r = client.get("/api/v1/custody/tree-head", query_string=query, headers=officers.headers(officers.make()))
    assert r.status_code == 200, r.json
    return r.json


def stored(db, size: int) -> HeadTimestamp | None:
    with db.session() as s:
        return s.get(HeadTimestamp, size)


def test_given_a_tsa_when_a_head_is_issued_then_it_gets_a_token_bound_to_it_after_its_commit(app, client, officers,
                                                                                          tsa, trust, settings):
    db = app.extensions["fieldcase"].db
    grow(db, 3)
    tsa.observer = lambda: _free_while_waiting(settings.database_url, 3)
    try:
        head = tree_head(client, officers)
    finally:
        tsa.observer = None
    assert head["tree_size"] == 3 and "timestamp_token" not in head  # asked for once the request had committed
    assert tsa.observed == [(True, True)]  # the head was committed, and no lock was held, while the TSA worked

    served = tree_head(client, officers, tree_size=3)
    facts = check_head_token(decode_token(served["timestamp_token"]), served, trust)
    assert facts.tsa == "CN=Test TSA,O=fieldcase tests" and facts.anchored
    row = stored(db, 3)
    assert row is not None and row.gen_time == facts.gen_time and row.tsa_url == tsa.url
    assert {k: served[k] for k in head} == head  # the signed fields are the head's, unchanged
    with db.session() as s:
        report = verify_log(s, app.extensions["fieldcase"].signer.verification_keys(), tsa_trust=trust)
    assert report.ok and report.timestamped == 1, report.problems


def _free_while_waiting(url: str, size: int) -> tuple[bool, bool]:
    """(the head is committed, no custody lock nor write lock is held), seen from a connection of our own."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        conn = sqlite3.connect(parsed.database, timeout=1, isolation_level=None)
        try:
            committed = conn.execute("SELECT count(*) FROM tree_heads WHERE tree_size = ?", (size,)).fetchone()[0]
            conn.execute("BEGIN IMMEDIATE")  # fails after 1 s if anyone holds the write lock
            conn.execute("ROLLBACK")
            return committed == 1, True
        except sqlite3.OperationalError:
            return True, False
        finally:
            conn.close()
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            committed = conn.execute(text("SELECT count(*) FROM tree_heads WHERE tree_size = :s"), {"s": size}).scalar()
            free = conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": CUSTODY_LOCK_KEY}).scalar()
        return committed == 1, bool(free)
    finally:
        engine.dispose()


def test_given_a_tsa_when_the_periodic_head_is_signed_in_the_commit_hook_then_it_is_timestamped_after(app, tsa):
    db = app.extensions["fieldcase"].db
    before = tsa.requests
    grow(db, custody.HEAD_EVERY + 1)  # the append signs the head at 256 under the custody lock
    row = stored(db, custody.HEAD_EVERY)
    assert row is not None and tsa.requests == before + 1
    with db.session() as s:
        head = heads.head_dict(s.get(TreeHead, custody.HEAD_EVERY))
    assert check_head_token(bytes(row.token), head).tsa == "CN=Test TSA,O=fieldcase tests"


def test_given_a_script_that_signs_a_head_then_it_is_timestamped_once_committed(app, settings, tsa):
    from backend.bootstrap import database as script_database
    from media.custody.keys import signer_for

    configured = replace(settings, tsa_url=tsa.url, tsa_cert_file=str(tsa.ca))
    script = script_database(configured, signing=True)
    try:
        grow(script, 1)
        with script.transaction() as session:
            head = heads.latest_head(session, signer_for(configured), now=utcnow())
            assert session.get(HeadTimestamp, head["tree_size"]) is None  # not while the head's transaction is open
        row = stored(script, head["tree_size"])
        assert row is not None and check_head_token(bytes(row.token), head).serial == int(row.serial)
    finally:
        script.dispose()


def test_given_a_stored_token_then_openssl_ts_verify_accepts_it_for_the_heads_signed_bytes(app, client, officers,
                                                                                          tsa):
    db = app.extensions["fieldcase"].db
    grow(db, 2)
    head = tree_head(client, officers)
    token = stored(db, head["tree_size"]).token
    digest = hashlib.sha256(head_message(head)).digest()
    assert "Verification: OK" in tsa.verify(digest=digest, token=bytes(token))
    other = hashlib.sha256(head_message({**head, "tree_size": head["tree_size"] + 1})).digest()
    assert "Verification: OK" not in tsa.verify(digest=other, token=bytes(token))


def test_given_a_tsa_that_is_down_when_a_head_is_issued_then_the_request_succeeds_and_a_later_run_stamps_it(
        app, client, officers, tsa, settings):
    db = app.extensions["fieldcase"].db
    grow(db, 2)
    tsa.available = False
    try:
        head = tree_head(client, officers)
    finally:
        tsa.available = True
    assert head["tree_size"] == 2 and "timestamp_token" not in head
    with db.session() as s:
        assert s.get(TreeHead, 2) is not None  # the head stays
        assert head_stamps.heads_without_token(s) == [2]

    grow(db, 1)  # the next head's job stamps the one left behind as well
    assert tree_head(client, officers)["tree_size"] == 3
    with db.session() as s:
        assert head_stamps.heads_without_token(s) == []
    assert "timestamp_token" in tree_head(client, officers, tree_size=2)


def test_given_heads_left_without_a_token_when_the_pending_step_runs_then_each_gets_one(app, client, officers, tsa,
                                                                                       settings):
    db = app.extensions["fieldcase"].db
    tsa.available = False
    try:
        for _ in range(3):
            grow(db, 1)
            tree_head(client, officers)
        authority = TimestampAuthority(url=tsa.url, timeout=5)
        assert head_stamps.timestamp_pending(db, authority) == (0, 3)  # still down: stops at the first failure
    finally:
        tsa.available = True
    env = {"DATABASE_URL": settings.database_url, "FIELDCASE_INSTANCE_DIR": str(settings.instance_dir),
           "FIELDCASE_TSA_URL": tsa.url, "FIELDCASE_TSA_CERT": str(tsa.ca)}
    result = CliRunner().invoke(main, ["custody", "timestamp"], env=env)
    assert result.exit_code == 0 and "timestamped 3 tree head(s); 0 still without" in result.output, result.output
    verified = CliRunner().invoke(main, ["custody", "verify"], env=env)
    assert verified.exit_code == 0, verified.output
    assert "RFC 3161 timestamps: 3 of 3 tree heads hold, chained to FIELDCASE_TSA_CERT" in verified.output


def test_given_no_tsa_configured_then_heads_carry_no_token_and_nothing_fails(settings, tsa, officers_for):
    application = create_app(settings)
    try:
        client = application.test_client()
        officers = officers_for(application)
        before = tsa.requests
        grow(application.extensions["fieldcase"].db, 2)
        head = tree_head(client, officers)
        assert "timestamp_token" not in head and "timestamp_token" not in tree_head(client, officers, tree_size=2)
        assert tsa.requests == before
        with application.extensions["fieldcase"].db.session() as s:
            assert verify_log(s, application.extensions["fieldcase"].signer.verification_keys()).ok
    finally:
        _empty_tables(application.extensions["fieldcase"].db)
        application.extensions["fieldcase"].db.dispose()


@pytest.fixture
def officers_for():
    from tests.conftest import Officers

    return lambda application: Officers(application.extensions["fieldcase"].db, application.test_client())


def test_given_a_tampered_stored_token_then_custody_verify_names_the_head(app, client, officers, tsa, trust,
                                                                         other_ca):
    db = app.extensions["fieldcase"].db
    grow(db, 2)
    tree_head(client, officers)
    grow(db, 1)
    tree_head(client, officers)
    keys = app.extensions["fieldcase"].signer.verification_keys()
    tokens = {size: bytes(stored(db, size).token) for size in (2, 3)}

    with db.transaction() as s:  # a flipped byte in the signature at the token's end
        s.get(HeadTimestamp, 2).token = tokens[2][:-5] + bytes([tokens[2][-5] ^ 1]) + tokens[2][-4:]
    with db.session() as s:
        problems = verify_log(s, keys).problems
    assert problems == ["tree head 2: its RFC 3161 timestamp token does not check: the token's signature does not "
                        "verify with its certificate (forged or altered)"]

    with db.transaction() as s:  # each head given the other's token
        s.get(HeadTimestamp, 2).token, s.get(HeadTimestamp, 3).token = tokens[3], tokens[2]
    with db.session() as s:
        problems = verify_log(s, keys).problems
    assert [p.split(":")[0] for p in problems] == ["tree head 2", "tree head 3"]
    assert all("imprints another message" in p for p in problems)

    with db.transaction() as s:
        s.get(HeadTimestamp, 2).token, s.get(HeadTimestamp, 3).token = tokens[2], tokens[3]
    with db.session() as s:
        assert verify_log(s, keys, tsa_trust=trust).ok
        problems = verify_log(s, keys, tsa_trust=load_trust(other_ca.read_bytes())).problems
    assert len(problems) == 2 and all("does not chain to the given TSA trust anchor" in p for p in problems)


# -- packages -----------------------------------------------------------------------------------------------------

def _manifest(data: bytes) -> dict:
    return json.loads(zipfile.ZipFile(io.BytesIO(data)).read("manifest.json"))


def test_given_a_timestamped_head_then_the_package_carries_it_and_verify_package_names_the_tsa_time(built, tsa,
                                                                                                   trust, tmp_path):
    head = _manifest(built.zip)["custody"]["tree_head"]
    facts = check_head_token(decode_token(head["timestamp_token"]), head, trust)
    report = verify_package(io.BytesIO(built.zip), built.key, tsa_trust=trust)
    assert report.ok, report.problems
    assert report.tsa_name == "CN=Test TSA,O=fieldcase tests"
    assert report.tsa_time == facts.gen_time.isoformat().replace("+00:00", "Z")

    result = cli(tmp_path, built.zip, "--public-key", built.key, "--tsa-cert", str(tsa.ca))
    assert result.exit_code == 0, result.output
    assert (f"tree head timestamped by the TSA CN=Test TSA,O=fieldcase tests at {report.tsa_time}"
            in result.output) and "chained to the given --tsa-cert" in result.output
    bare = cli(tmp_path, built.zip, "--public-key", built.key)
    assert bare.exit_code == 0 and "checked only with the certificate inside its token" in bare.output


def _token_change(change) -> object:
    def edit(m: dict) -> None:
        head = m["custody"]["tree_head"]
        head["timestamp_token"] = change(head["timestamp_token"])
    return edit


def _flip(token: str) -> str:
    raw = bytearray(decode_token(token))
    raw[-5] ^= 1
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(("change", "says"), [
    (_flip, "the token's signature does not verify with its certificate"),
    (misspelt, "timestamp_token is not standard base64"),
    (lambda token: 42, "timestamp_token is not a base64 string"),
])
def test_given_a_packaged_token_that_was_altered_then_verify_package_names_the_problem(built, trust, change, says):
    altered = rewrite(built.zip, _token_change(change), reseal=built.signer)
    report = verify_package(io.BytesIO(altered), built.key, tsa_trust=trust)
    assert [p for p in report.problems if "timestamp" in p] and says in " ".join(report.problems), report.problems
    assert len(report.problems) == 1, report.problems


def test_given_the_token_of_another_head_or_another_tsa_anchor_then_verify_package_fails(built, app, client,
                                                                                        officers, trust, other_ca):
    db = app.extensions["fieldcase"].db
    grow(db, 1)
    newer = tree_head(client, officers)
    newer_token = tree_head(client, officers, tree_size=newer["tree_size"])["timestamp_token"]
    swapped = rewrite(built.zip, _token_change(lambda _token: newer_token), reseal=built.signer)
    report = verify_package(io.BytesIO(swapped), built.key)
    assert len(report.problems) == 1 and "imprints another message" in report.problems[0], report.problems

    wrong = verify_package(io.BytesIO(built.zip), built.key, tsa_trust=load_trust(other_ca.read_bytes()))
    assert len(wrong.problems) == 1 and "does not chain to the given TSA trust anchor" in wrong.problems[0]


def test_given_a_package_without_a_token_then_the_report_notes_it_and_passes(built, trust):
    def drop(m: dict) -> None:
        del m["custody"]["tree_head"]["timestamp_token"]

    report = verify_package(io.BytesIO(rewrite(built.zip, drop, reseal=built.signer)), built.key, tsa_trust=trust)
    assert report.ok, report.problems
    assert any(n.startswith("tree head not timestamped") for n in report.notes) and report.tsa_time is None


# -- the client's checks at receipt -------------------------------------------------------------------------------

def test_given_a_reply_to_another_request_then_it_is_refused_at_receipt(tsa, trust):
    message = head_message({"tree_size": 1, "root_hash": "00" * 32, "timestamp": "2026-01-01T00:00:00.000Z"})
    query, nonce = request_for(message)
    reply = tsa.reply(query)
    token, facts = token_from_reply(reply, nonce, message, trust)
    head = {"tree_size": 1, "root_hash": "00" * 32, "timestamp": "2026-01-01T00:00:00.000Z"}
    assert facts.anchored and check_head_token(token, head, trust) == facts
    with pytest.raises(TimestampFailed, match="nonce"):
        token_from_reply(reply, nonce + 1, message, trust)
    with pytest.raises(TimestampFailed, match="imprints another message"):
        token_from_reply(reply, nonce, message + b" ", trust)
    with pytest.raises(TimestampFailed, match="not a TimeStampResp"):
        token_from_reply(b"<html>proxy error</html>", nonce, message, trust)


def test_given_an_unreachable_tsa_then_stamping_fails_with_a_named_reason(tmp_path: Path):
    authority = TimestampAuthority(url="http://127.0.0.1:9/tsa", timeout=2)
    with pytest.raises(TimestampFailed, match="did not answer"):
        authority.stamp(b"anything")


# -- with RQ workers ----------------------------------------------------------------------------------------------

def test_given_rq_workers_when_a_head_is_issued_then_a_worker_timestamps_it(settings, redis_url, job_queue, tsa,
                                                                           officers_for, tmp_path, monkeypatch):
    from backend.bootstrap import rq_runner
    from tests.media.test_jobs import run_worker_burst

    rq_settings = replace(settings, jobs="rq", redis_url=redis_url, job_queue=job_queue, tsa_url=tsa.url,
                          tsa_cert_file=str(tsa.ca))
    application = create_app(rq_settings)
    try:
        db = application.extensions["fieldcase"].db
        grow(db, 2)
        before = tsa.requests
        head = tree_head(application.test_client(), officers_for(application))
        assert "timestamp_token" not in head and tsa.requests == before  # the request only queued the job
        assert rq_runner(rq_settings).queue.count == 1
        monkeypatch.setenv("FIELDCASE_TSA_URL", tsa.url)  # the worker's environment names the same TSA
        monkeypatch.setenv("FIELDCASE_TSA_CERT", str(tsa.ca))
        run_worker_burst(rq_settings, tmp_path)
        row = stored(db, head["tree_size"])
        assert row is not None and check_head_token(bytes(row.token), head).tsa == "CN=Test TSA,O=fieldcase tests"
    finally:
        _empty_tables(application.extensions["fieldcase"].db)
        application.extensions["fieldcase"].db.dispose()
