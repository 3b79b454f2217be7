"""RFC 3161 timestamps of the SM tree's heads (issue 23, item 4), against OpenSSL's own TSA (tests/tsa.py).

With FIELDCASE_CUSTODY_SUITES=intl,sm every SM2-signed head of the SM3 tree gets a token of its own from the same job
as the intl head at its size: its message imprint is SM3 (OID 1.2.156.10197.1.401) of exactly the bytes the SM2
signature covers. The SM3 here is GmSSL's, not the `cryptography` SM3 the server hashes with, and `openssl ts -verify`
is the second checker. Tampering is done as an insider would: SQL on the token table, edits inside a package.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import subprocess
import zipfile
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import gmssl_pyx
import pytest
from asn1crypto import cms, tsp
from click.testing import CliRunner
from sqlalchemy import select

from backend.bootstrap import create_app
from backend.casework.system_audit.heads import check_timestamps
from backend.cli import main
from backend.core.config import Settings
from backend.core.models import HeadTimestamp, SmHeadTimestamp, SmTreeHead, TreeHead, utcnow
from media import verify_html
from media.custody import head_stamps
from media.custody import log as custody
from media.custody.timestamps import SM3_IMPRINT, check_head_token, decode_token, load_trust, request_for
from media.jobs import TIMESTAMP_HEAD, unfinished
from media.package_verify import verify_package
from tests.conftest import Officers, _empty_tables, app_on
from tests.media.test_custody_sm import (
    SM_ENV,
    signed_bytes,
    sm_app,
    sm_client,
    sm_officers,
    with_sm,
)
from tests.media.test_package import build, cli, rewrite
from tests.media.verify_page import driver, in_python, open_and_pick  # noqa: F401 - driver: the fixture
from tests.tsa import TestTSA, make_ca

__all__ = ["sm_app", "sm_client", "sm_officers"]  # test_custody_sm's fixtures, over this module's sm_settings

SM3_OID = "1.2.156.10197.1.401"
TSA_NAME = "CN=Test TSA,O=fieldcase tests"


@pytest.fixture
def trust(tsa):
    return load_trust(tsa.ca.read_bytes())


@pytest.fixture
def sm_tsa_settings(settings, tsa) -> Settings:
    return replace(with_sm(settings), tsa_url=tsa.url, tsa_cert_file=str(tsa.ca))


@pytest.fixture
def sm_settings(sm_tsa_settings) -> Settings:
    """test_custody_sm's SM app, client and officers, on a server that also has a TSA."""
    return sm_tsa_settings


def env_of(settings: Settings, tsa: TestTSA) -> dict[str, str]:
    return {"DATABASE_URL": settings.database_url, "FIELDCASE_INSTANCE_DIR": str(settings.instance_dir),
            "FIELDCASE_TSA_URL": tsa.url, "FIELDCASE_TSA_CERT": str(tsa.ca), **SM_ENV}


def grow(db, n: int) -> None:
    with db.transaction() as session:
        for i in range(n):
            custody.record(session, "read", None, "officer-sm", at=utcnow(), purpose=f"sm timestamp test {i}")


def head_now(client, officers) -> int:
    """The heads (intl and SM) of the log as it is, issued by the API; their size."""
    r = client.get("/api/v1/custody/tree-head", headers=officers.headers(officers.make()))
    assert r.status_code == 200, r.json
    return r.json["tree_size"]


def sm_head(db, size: int) -> dict:
    with db.session() as s:
        head = s.get(SmTreeHead, size)
        return {"tree_size": head.tree_size, "root_hash": head.root_hash, "timestamp": head.timestamp}


def tokens(db, model) -> dict[int, bytes]:
    with db.session() as s:
        return {row.tree_size: bytes(row.token) for row in s.scalars(select(model))}


def imprint_of(token: bytes) -> tuple[str, bytes]:
    """The token's message imprint (algorithm OID, hash), read straight from its TSTInfo."""
    tst = cms.ContentInfo.load(token)["content"]["encap_content_info"]["content"].parsed
    imprint = tst["message_imprint"]
    return imprint["hash_algorithm"]["algorithm"].dotted, imprint["hashed_message"].native


def imprint_of_request(query: bytes) -> tuple[str, bool]:
    """A request's imprint algorithm (OID) and whether its parameters are NULL, as OpenSSL writes them."""
    algorithm = tsp.TimeStampReq.load(query)["message_imprint"]["hash_algorithm"]
    return algorithm["algorithm"].dotted, algorithm["parameters"].dump() == b"\x05\x00"


def openssl_verifies(tsa: TestTSA, message: bytes, token: bytes, folder: Path) -> str:
    """What `openssl ts -verify -data` says: OpenSSL hashes `message` itself, with the algorithm the token names."""
    (folder / "message.bin").write_bytes(message)
    (folder / "token.der").write_bytes(token)
    done = subprocess.run(["openssl", "ts", "-verify", "-data", "message.bin", "-in", "token.der", "-token_in",
                           "-CAfile", str(tsa.ca)], cwd=folder, capture_output=True, timeout=60)
    return (done.stdout + done.stderr).decode(errors="replace")


@pytest.fixture
def stamped(sm_app, sm_client, sm_officers):
    """Heads at 2 and 3 in both trees, each stamped by its job just after its commit."""
    db = sm_app.extensions["fieldcase"].db
    grow(db, 2)
    head_now(sm_client, sm_officers)
    grow(db, 1)
    head_now(sm_client, sm_officers)
    return sm_app.extensions["fieldcase"]


# --- the job gives every SM head its token -------------------------------------------------------------------------

def test_given_an_sm_server_with_a_tsa_when_heads_are_issued_then_each_sm_head_gets_a_token_over_sm3_of_its_bytes(
        stamped, tsa, trust, tmp_path):
    sm_tokens, intl_tokens = tokens(stamped.db, SmHeadTimestamp), tokens(stamped.db, HeadTimestamp)
    assert set(sm_tokens) == set(intl_tokens) == {2, 3}
    for size, token in sm_tokens.items():
        head = sm_head(stamped.db, size)
        signed = signed_bytes(head)
        assert imprint_of(token) == (SM3_OID, bytes(gmssl_pyx.sm3_hash(signed)))  # GmSSL's SM3, not ours
        facts = check_head_token(token, head, trust, SM3_IMPRINT)
        assert facts.anchored and facts.tsa == TSA_NAME
        assert "Verification: OK" in openssl_verifies(tsa, signed, token, tmp_path)
        assert "Verification: OK" not in openssl_verifies(tsa, signed + b" ", token, tmp_path)
        assert imprint_of(intl_tokens[size])[0] == "2.16.840.1.101.3.4.2.1"  # the intl head's is SHA-256, as before
    with stamped.db.session() as s:
        assert head_stamps.heads_without_token(s, suite="sm") == [] and head_stamps.sizes_without_token(s) == []


def test_given_stamped_sm_heads_when_a_client_asks_the_api_for_them_then_each_comes_with_its_own_sm3_token(
        stamped, sm_client, sm_officers, trust, tmp_path, tsa):
    h = sm_officers.headers(sm_officers.make())
    latest = sm_client.get("/api/v1/custody/tree-head", query_string={"suite": "sm"}, headers=h).json
    older = sm_client.get("/api/v1/custody/tree-head", query_string={"suite": "sm", "tree_size": 2}, headers=h).json
    intl = sm_client.get("/api/v1/custody/tree-head", query_string={"tree_size": 2}, headers=h).json
    assert latest["tree_size"] == 3 and older["tree_size"] == 2
    for served in (latest, older):
        token = decode_token(served["timestamp_token"])
        assert token == tokens(stamped.db, SmHeadTimestamp)[served["tree_size"]]
        assert check_head_token(token, served, trust, SM3_IMPRINT).anchored
        assert "Verification: OK" in openssl_verifies(tsa, signed_bytes(served), token, tmp_path)
    # each suite's route serves its own head's token: the intl one imprints SHA-256 of the intl head
    assert imprint_of(decode_token(intl["timestamp_token"]))[0] == "2.16.840.1.101.3.4.2.1"
    assert intl["timestamp_token"] != older["timestamp_token"]


def test_given_an_intl_only_server_then_its_heads_are_stamped_as_before_and_no_sm_token_is_asked_for(settings, tsa):
    with app_on(replace(settings, tsa_url=tsa.url, tsa_cert_file=str(tsa.ca))) as application:
        client = application.test_client()
        officers = Officers(application.extensions["fieldcase"].db, client)
        db = application.extensions["fieldcase"].db
        grow(db, 2)
        before = tsa.requests
        size = head_now(client, officers)
        assert tsa.requests == before + 1  # one token, the intl head's
        assert set(tokens(db, HeadTimestamp)) == {size} and tokens(db, SmHeadTimestamp) == {}
    message = b"the same head payload"
    query, _nonce = request_for(message)
    assert imprint_of_request(query) == ("2.16.840.1.101.3.4.2.1", True)


def test_given_a_tsa_down_when_heads_are_issued_then_the_sm_head_waits_and_the_next_heads_job_stamps_it(
        sm_app, sm_client, sm_officers, tsa):
    db = sm_app.extensions["fieldcase"].db
    grow(db, 2)
    tsa.available = False
    try:
        assert head_now(sm_client, sm_officers) == 2
    finally:
        tsa.available = True
    with db.session() as s:
        assert head_stamps.heads_without_token(s) == [2] and head_stamps.heads_without_token(s, suite="sm") == [2]
        assert unfinished(s, tsa=True)[TIMESTAMP_HEAD] == [[2]]  # what the sweep would queue: one job for both
    grow(db, 1)
    assert head_now(sm_client, sm_officers) == 3  # its job stamps its own heads, then the ones left behind
    assert set(tokens(db, SmHeadTimestamp)) == {2, 3} and set(tokens(db, HeadTimestamp)) == {2, 3}


def test_given_a_tsa_that_takes_no_sm3_imprints_then_the_sm_heads_are_left_without_and_reported_as_intl_ones_are(
        settings, tmp_path, caplog):
    refusing = TestTSA(tmp_path / "sha2-only", digests="sha256, sha384, sha512").start()
    try:
        configured = replace(with_sm(settings), tsa_url=refusing.url, tsa_cert_file=str(refusing.ca))
        with app_on(configured) as application, caplog.at_level(logging.WARNING, "fieldcase.custody.timestamps"):
            db = application.extensions["fieldcase"].db
            client = application.test_client()
            grow(db, 2)
            assert head_now(client, Officers(db, client)) == 2
            assert set(tokens(db, HeadTimestamp)) == {2} and tokens(db, SmHeadTimestamp) == {}
            assert "tree head 2 is not timestamped yet (its SM tree head: the TSA refused: rejection" in caplog.text
            assert "bad_alg" in caplog.text

            result = CliRunner().invoke(main, ["custody", "timestamp"], env=env_of(configured, refusing))
            assert result.exit_code == 1 and "timestamped 0 tree head(s); 1 still without" in result.output
            assert "SM tree head 2 is still not timestamped: the TSA refused" in caplog.text

            with db.transaction() as s:  # and an intl head without one, to compare with
                s.execute(HeadTimestamp.__table__.delete())
            with db.session() as s:
                later = utcnow() + timedelta(hours=2)
                problems = list(check_timestamps(s, True, timedelta(hours=1), later))
            assert [(p.check, p.kind, p.object) for p in problems] == [("heads", "tree_head", "2"),
                                                                      ("heads", "sm_tree_head", "2")]
            assert problems[0].message == problems[1].message == (
                "it has no RFC 3161 timestamp token, though a TSA is configured (FIELDCASE_TSA_URL): "
                "`fieldcase custody timestamp` asks for the missing ones")
    finally:
        refusing.stop()


def test_given_sm_heads_signed_by_build_sm_tree_then_custody_timestamp_stamps_them(settings, tsa):
    intl = replace(settings, tsa_url=tsa.url, tsa_cert_file=str(tsa.ca))
    application = create_app(intl)
    db = application.extensions["fieldcase"].db
    try:
        client = application.test_client()
        officers = Officers(db, client)
        for n in (2, 1):
            grow(db, n)
            head_now(client, officers)
        sm = replace(with_sm(settings), tsa_url=tsa.url, tsa_cert_file=str(tsa.ca))
        built = CliRunner().invoke(main, ["custody", "build-sm-tree"], env=env_of(sm, tsa))
        assert built.exit_code == 0, built.output
        with db.session() as s:
            # signed for the old intl heads in batches, without waiting on the TSA
            assert head_stamps.heads_without_token(s, suite="sm") == [2, 3]
        result = CliRunner().invoke(main, ["custody", "timestamp"], env=env_of(sm, tsa))
        assert result.exit_code == 0 and "timestamped 2 tree head(s); 0 still without" in result.output
        assert set(tokens(db, SmHeadTimestamp)) == {2, 3}
    finally:
        _empty_tables(db)
        db.dispose()


# --- custody verify and fieldcase verify ---------------------------------------------------------------------------

def custody_verify(settings: Settings, tsa: TestTSA) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["custody", "verify"], env=env_of(settings, tsa))
    return result.exit_code, result.output


def system_verify(settings: Settings, tsa: TestTSA) -> tuple[int, dict]:
    result = CliRunner().invoke(main, ["verify", "--json"], env=env_of(settings, tsa))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def named(report: dict, kind: str, ident: str) -> list[str]:
    return [p["message"] for p in report["problems"] if (p["kind"], p["object"]) == (kind, ident)]


def test_given_stamped_sm_heads_then_custody_verify_and_fieldcase_verify_pass(stamped, sm_tsa_settings, tsa):
    code, output = custody_verify(sm_tsa_settings, tsa)
    assert code == 0, output
    assert "RFC 3161 timestamps: 2 of 2 tree heads hold, chained to FIELDCASE_TSA_CERT" in output
    assert "2 signed SM tree heads; RFC 3161 timestamps (SM3 imprint): 2 of 2 hold" in output
    code, report = system_verify(sm_tsa_settings, tsa)
    assert code == 0, report["problems"]


def _set_sm_token(db, size: int, token: bytes) -> None:
    with db.transaction() as s:
        s.get(SmHeadTimestamp, size).token = token


def test_given_an_sm_heads_token_swapped_altered_or_the_intl_ones_then_both_verifies_name_that_sm_head(
        stamped, sm_tsa_settings, tsa):
    db = stamped.db
    sm_tokens, intl_tokens = tokens(db, SmHeadTimestamp), tokens(db, HeadTimestamp)
    says = "PROBLEM SM tree head 2: its RFC 3161 timestamp token does not check: "

    _set_sm_token(db, 2, sm_tokens[3])  # the token of another SM head
    code, output = custody_verify(sm_tsa_settings, tsa)
    assert code == 1
    assert says + "the token imprints another message, not this tree head (a token of another head?)" in output
    assert "PROBLEM tree head" not in output and "(SM3 imprint): 1 of 2 hold" in output
    code, report = system_verify(sm_tsa_settings, tsa)
    assert code == 1 and named(report, "sm_tree_head", "2") == [
        "its RFC 3161 timestamp token does not check: the token imprints another message, not this tree head (a "
        "token of another head?)"]
    assert not [p for p in report["problems"] if p["kind"] == "tree_head"]

    token = sm_tokens[2]
    _set_sm_token(db, 2, token[:-5] + bytes([token[-5] ^ 1]) + token[-4:])  # a flipped bit of its signature
    code, output = custody_verify(sm_tsa_settings, tsa)
    assert code == 1 and says + "the token's signature does not verify with its certificate (forged or altered)" \
        in output

    _set_sm_token(db, 2, intl_tokens[2])  # the intl head's token at the same size: SHA-256 of the same bytes
    code, output = custody_verify(sm_tsa_settings, tsa)
    assert code == 1 and says + "the token imprints sha256, not SM3" in output

    _set_sm_token(db, 2, token)
    assert custody_verify(sm_tsa_settings, tsa)[0] == 0


def test_given_another_tsa_anchor_then_custody_verify_names_every_sm_heads_token(stamped, sm_tsa_settings, tsa,
                                                                                 tmp_path):
    other, _key = make_ca(tmp_path / "other", "Another CA")
    env = {**env_of(sm_tsa_settings, tsa), "FIELDCASE_TSA_CERT": str(other)}
    result = CliRunner().invoke(main, ["custody", "verify"], env=env)
    assert result.exit_code == 1
    for size in (2, 3):
        assert f"PROBLEM SM tree head {size}: its RFC 3161 timestamp token does not check: the token's certificate " \
               f"({TSA_NAME}) does not chain to the given TSA trust anchor" in result.output


# --- packages ------------------------------------------------------------------------------------------------------

@pytest.fixture
def sm_built(sm_app, sm_client, sm_officers):
    return build(sm_app, sm_client, sm_officers)


def manifest_of(data: bytes) -> dict:
    return json.loads(zipfile.ZipFile(io.BytesIO(data)).read("manifest.json"))


def sm_key_of(built) -> str:
    return built.client.get("/api/v1/custody/public-key", query_string={"suite": "sm"}).json["public_key"]


def checked(data: bytes, built, trust=()) -> object:
    return verify_package(io.BytesIO(data), built.key, tsa_trust=trust, sm_public_key=sm_key_of(built))


def test_given_an_sm_package_then_its_sm_head_carries_its_token_and_verify_package_checks_it(sm_built, tsa, trust,
                                                                                             tmp_path):
    custody_part = manifest_of(sm_built.zip)["custody"]
    head = custody_part["sm"]["tree_head"]
    token = decode_token(head["timestamp_token"])
    assert imprint_of(token) == (SM3_OID, bytes(gmssl_pyx.sm3_hash(signed_bytes(head))))
    assert token != decode_token(custody_part["tree_head"]["timestamp_token"])
    facts = check_head_token(token, head, trust, SM3_IMPRINT)
    report = checked(sm_built.zip, sm_built, trust)
    assert report.ok, report.problems
    when = facts.gen_time.isoformat().replace("+00:00", "Z")
    assert (f"SM tree head timestamped by the TSA {TSA_NAME} at {when} (RFC 3161, SM3 imprint, serial {facts.serial}, "
            "chained to the given --tsa-cert)") in report.notes

    result = cli(tmp_path, sm_built.zip, "--public-key", sm_built.key, "--sm-public-key", sm_key_of(sm_built),
                 "--tsa-cert", str(tsa.ca))
    assert result.exit_code == 0 and "SM tree head timestamped by the TSA" in result.output, result.output
    bare = checked(sm_built.zip, sm_built)
    assert bare.ok and any(n.startswith("WARNING: the SM tree head's timestamp was checked only") for n in bare.notes)


def _sm_token_change(change):
    def edit(m: dict) -> None:
        head = m["custody"]["sm"]["tree_head"]
        head["timestamp_token"] = change(head["timestamp_token"], m)
    return edit


def _flip(token: str, _m: dict) -> str:
    raw = bytearray(decode_token(token))
    raw[-5] ^= 1
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(("change", "says"), [
    (_flip, "the token's signature does not verify with its certificate (forged or altered)"),
    (lambda _t, m: m["custody"]["tree_head"]["timestamp_token"], "the token imprints sha256, not SM3"),
    (lambda t, _m: t.rstrip("=") if t.endswith("=") else t[:-1], "timestamp_token is not standard base64"),
])
def test_given_a_packaged_sm_token_altered_or_the_intl_heads_then_verify_package_names_the_sm_head(
        sm_built, trust, change, says):
    size = manifest_of(sm_built.zip)["custody"]["tree_head"]["tree_size"]
    altered = rewrite(sm_built.zip, _sm_token_change(change), reseal=sm_built.signer)
    report = checked(altered, sm_built, trust)
    assert report.problems == [f"SM tree head (size {size}): its RFC 3161 timestamp does not check: {says}"]


def test_given_the_token_of_another_sm_head_then_verify_package_fails(sm_built, sm_app, sm_client, sm_officers,
                                                                      trust):
    db = sm_app.extensions["fieldcase"].db
    grow(db, 1)
    newer = head_now(sm_client, sm_officers)
    other = base64.b64encode(tokens(db, SmHeadTimestamp)[newer]).decode()
    swapped = rewrite(sm_built.zip, _sm_token_change(lambda _t, _m: other), reseal=sm_built.signer)
    report = checked(swapped, sm_built, trust)
    assert len(report.problems) == 1 and report.problems[0].endswith(
        "the token imprints another message, not this tree head (a token of another head?)"), report.problems


def test_given_an_sm_package_without_the_sm_token_then_it_is_noted_as_an_intl_head_without_one_is(sm_built, trust):
    def drop(m: dict) -> None:
        del m["custody"]["sm"]["tree_head"]["timestamp_token"]
        del m["custody"]["tree_head"]["timestamp_token"]

    report = checked(rewrite(sm_built.zip, drop, reseal=sm_built.signer), sm_built, trust)
    assert report.ok, report.problems
    assert "tree head not timestamped: the package carries no RFC 3161 token for it (so --tsa-cert checked nothing)" \
        in report.notes
    assert "SM tree head not timestamped: the package carries no RFC 3161 token for it (so --tsa-cert checked " \
           "nothing for it)" in report.notes


# --- with RQ workers -----------------------------------------------------------------------------------------------

def test_given_rq_workers_when_heads_are_issued_then_a_worker_stamps_the_sm_head_too(
        settings, redis_url, job_queue, tsa, tmp_path, monkeypatch):
    from backend.bootstrap import rq_runner
    from tests.media.test_jobs import run_worker_burst

    rq_settings = replace(with_sm(settings), jobs="rq", redis_url=redis_url, job_queue=job_queue, tsa_url=tsa.url,
                          tsa_cert_file=str(tsa.ca))
    application = create_app(rq_settings)
    db = application.extensions["fieldcase"].db
    try:
        client = application.test_client()
        grow(db, 2)
        before = tsa.requests
        size = head_now(client, Officers(db, client))
        assert tsa.requests == before and rq_runner(rq_settings).queue.count == 1  # one job for both heads
        for name, value in {"FIELDCASE_TSA_URL": tsa.url, "FIELDCASE_TSA_CERT": str(tsa.ca), **SM_ENV}.items():
            monkeypatch.setenv(name, value)
        run_worker_burst(rq_settings, tmp_path)
        assert tsa.requests == before + 2
        sm_tokens = tokens(db, SmHeadTimestamp)
        assert set(sm_tokens) == {size} and set(tokens(db, HeadTimestamp)) == {size}
        assert check_head_token(sm_tokens[size], sm_head(db, size), load_trust(tsa.ca.read_bytes()),
                                SM3_IMPRINT).anchored
        with db.session() as s:
            assert s.get(TreeHead, size) is not None
    finally:
        _empty_tables(db)
        db.dispose()


# --- in the browser -------------------------------------------------------------------------------------------------

def test_given_an_sm_package_when_a_clerk_picks_it_in_verify_html_then_both_tokens_bind_as_verify_package_says(
        sm_built, driver, tmp_path):  # noqa: F811 - the fixture
    """verify.html checks each head's token binding (not the TSA's signature, which it cannot judge): the SM head's
    imprint is SM3 of its signed bytes, and a token that is not is named with verify-package's own line."""
    page = tmp_path / verify_html.NAME
    page.write_bytes(zipfile.ZipFile(io.BytesIO(sm_built.zip)).read(verify_html.NAME))
    where = SimpleNamespace(page=page, folder=tmp_path)
    sm_key = sm_key_of(sm_built)
    seen = open_and_pick(driver, where, sm_built.zip, key=sm_built.key, sm_key=sm_key)
    assert seen.verdict == "ok", seen.problems
    assert [n for n in seen.notes if n.startswith("SM tree head timestamped at ")
            and "the token's message imprint is the SM3 of the signed head" in n], seen.notes
    assert [n for n in seen.notes if n.startswith("tree head timestamped at ")
            and "the token's message imprint is the SHA-256 of the signed head" in n], seen.notes

    size = manifest_of(sm_built.zip)["custody"]["tree_head"]["tree_size"]
    swapped = rewrite(sm_built.zip, _sm_token_change(lambda _t, m: m["custody"]["tree_head"]["timestamp_token"]),
                      reseal=sm_built.signer)
    seen = open_and_pick(driver, where, swapped, key=sm_built.key, sm_key=sm_key, name="swapped.zip")
    assert seen.problems == in_python(swapped, sm_built.key, sm_key) == [
        f"SM tree head (size {size}): its RFC 3161 timestamp does not check: the token imprints sha256, not SM3"]

    def drop(m: dict) -> None:
        del m["custody"]["sm"]["tree_head"]["timestamp_token"]

    bare = rewrite(sm_built.zip, drop, reseal=sm_built.signer)
    seen = open_and_pick(driver, where, bare, key=sm_built.key, sm_key=sm_key, name="bare.zip")
    assert seen.verdict == "ok", seen.problems
    assert "SM tree head not timestamped: the package carries no RFC 3161 token for it" in seen.notes
