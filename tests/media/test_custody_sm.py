"""The custody log in the national algorithms too (issue 23, item 4): with FIELDCASE_CUSTODY_SUITES=intl,sm every leaf
is also a leaf of an RFC 6962-shaped tree in SM3 whose heads are SM2-signed, beside the SHA-256 tree with Ed25519
heads, which stays exactly as it was.

The SM3 trees here are judged against a reference written from the RFC's recursion, over GmSSL's SM3 (not the
`cryptography` SM3 the server hashes with), and the SM2 signatures are checked with the published key. Tampering is
done as an insider would: SQL on the tables, edits inside a package.
"""

from __future__ import annotations

import base64
import io
import json
import stat
import zipfile
from dataclasses import replace

import gmssl_pyx
import pytest
import rfc8785
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select, update

from backend.bootstrap import create_app
from backend.cli import main
from backend.core.config import Settings
from backend.core.crypto import SM
from backend.core.models import CustodyEvent, SmMerkleNode, SmTreeHead, TreeHead, utcnow
from backend.core.secret_files import generates_secrets, init_secrets, secret_files
from backend.core.variables import SettingsError
from media.custody import heads, sm_tree, trees
from media.custody import keys as custody_keys
from media.custody import log as custody
from media.custody.merkle import SM3_TREE
from media.custody.proofs import check_consistency, check_inclusion
from media.custody.verify import verify_log
from media.package_verify import verify_package
from tests import rfc6962
from tests.conftest import Officers, app_on
from tests.media.test_package import build, rewrite
from tests.phones import TestPhone

SM_ENV = {"FIELDCASE_CUSTODY_SUITES": "intl,sm"}


# --- an independent SM3 tree: RFC 6962 §2.1 literally, SHA-256 replaced by GmSSL's SM3 ----------------------------

def _sm3(data: bytes) -> bytes:
    return bytes(gmssl_pyx.sm3_hash(data))


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def sm3_mth(entries: list[bytes]) -> bytes:
    if not entries:
        return _sm3(b"")
    if len(entries) == 1:
        return _sm3(b"\x00" + entries[0])
    k = _k(len(entries))
    return _sm3(b"\x01" + sm3_mth(entries[:k]) + sm3_mth(entries[k:]))


def sm3_path(m: int, entries: list[bytes]) -> list[bytes]:
    if len(entries) == 1:
        return []
    k = _k(len(entries))
    if m < k:
        return sm3_path(m, entries[:k]) + [sm3_mth(entries[k:])]
    return sm3_path(m - k, entries[k:]) + [sm3_mth(entries[:k])]


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def signed_bytes(head: dict) -> bytes:
    return rfc8785.dumps({k: head[k] for k in ("tree_size", "root_hash", "timestamp")})


def env_of(settings: Settings, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": settings.database_url, "FIELDCASE_INSTANCE_DIR": str(settings.instance_dir), **extra}


def leaves_of(db) -> list[bytes]:
    with db.session() as s:
        return [t.encode() for t in s.scalars(select(CustodyEvent.leaf).order_by(CustodyEvent.leaf_index))]


def log_reads(db, signer, n: int, tag: str) -> None:
    with db.transaction() as s:
        for i in range(n):
            custody.record(s, "read", None, "officer-sm", at=utcnow(), purpose=f"{tag} {i}")


# --- a server that keeps both trees ---------------------------------------------------------------------------------

def with_sm(settings: Settings) -> Settings:
    sm = replace(settings, custody_suites=("intl", "sm"))
    if not generates_secrets(sm):  # on PostgreSQL, as a deployment does: `fieldcase init-secrets` first
        init_secrets(sm)
    return sm


@pytest.fixture
def sm_settings(settings) -> Settings:
    return with_sm(settings)


@pytest.fixture
def sm_app(sm_settings):
    with app_on(sm_settings) as application:
        yield application


@pytest.fixture
def sm_client(sm_app):
    return sm_app.test_client()


@pytest.fixture
def sm_officers(sm_app, sm_client) -> Officers:
    return Officers(sm_app.extensions["fieldcase"].db, sm_client)


@pytest.fixture
def sm_phone(sm_client, sm_officers) -> TestPhone:
    officer = sm_officers.make()
    return TestPhone(sm_client, officer, sm_officers.headers(officer))


def declare(phone: TestPhone, data: bytes) -> str:
    eid, record = phone.evidence(None, data)
    assert phone.push([record])["results"][0]["status"] == "applied"
    return eid


def test_given_custody_suites_intl_sm_when_events_are_logged_then_both_trees_have_the_same_leaves_and_both_heads_verify(
        sm_app, sm_client, sm_phone):
    h = sm_phone.headers
    for n in range(3):
        declare(sm_phone, f"photo {n}".encode())
        if n == 0:  # a head asked for after the first push: both trees get one at that size
            assert sm_client.get("/api/v1/custody/tree-head", headers=h).json["tree_size"] == 2
    intl = sm_client.get("/api/v1/custody/tree-head", headers=h).json
    sm = sm_client.get("/api/v1/custody/tree-head", query_string={"suite": "sm"}, headers=h).json
    entries = leaves_of(sm_app.extensions["fieldcase"].db)

    # one set of leaves, two trees: the SHA-256 tree as RFC 6962 has it, the SM tree the same over SM3
    assert intl["tree_size"] == sm["tree_size"] == len(entries) == 6  # three declarations and three device heads
    assert intl["root_hash"] == rfc6962.mth(entries).hex()
    assert sm["root_hash"] == sm3_mth(entries).hex() != intl["root_hash"]
    assert "timestamp_token" not in sm and set(sm) == {"tree_size", "root_hash", "timestamp", "signature", "key_id"}

    # both heads verify with their published keys, each over the same canonical JSON
    ed = sm_client.get("/api/v1/custody/public-key").json
    sm_key = sm_client.get("/api/v1/custody/public-key", query_string={"suite": "sm"}).json
    assert ed["algorithm"] == "Ed25519" and sm_key["algorithm"] == "SM2"
    Ed25519PublicKey.from_public_bytes(b64d(ed["public_key"])).verify(b64d(intl["signature"]), signed_bytes(intl))
    point = b64d(sm_key["public_key"])
    assert len(point) == 65 and point[0] == 4 and sm_key["key_id"] == sm["key_id"] == _sm3(point).hex()[:16]
    assert SM.verify(point, signed_bytes(sm), b64d(sm["signature"]))
    assert not SM.verify(point, signed_bytes({**sm, "root_hash": intl["root_hash"]}), b64d(sm["signature"]))
    keyring = sm_client.get("/api/v1/custody/public-keys", query_string={"suite": "sm"}).json
    assert keyring == {"keys": [{"key_id": sm_key["key_id"], "public_key": sm_key["public_key"], "algorithm": "SM2"}],
                       "current": sm_key["key_id"]}

    # every leaf's SM proof is the RFC's audit path over SM3, and holds
    root = bytes.fromhex(sm["root_hash"])
    for index in range(len(entries)):
        proof = sm_client.get("/api/v1/custody/proofs/inclusion", headers=h, query_string={
            "leaf_index": index, "tree_size": sm["tree_size"], "suite": "sm"}).json["proof"]
        assert [bytes.fromhex(p) for p in proof] == sm3_path(index, entries)
        leaf = _sm3(b"\x00" + entries[index])
        assert check_inclusion(leaf, index, len(entries), [bytes.fromhex(p) for p in proof], root,
                               tree=SM3_TREE) is None
    first = sm_client.get("/api/v1/custody/tree-head", query_string={"suite": "sm", "tree_size": 2}, headers=h)
    assert first.status_code == 200 and first.json["root_hash"] == sm3_mth(entries[:2]).hex()
    proof = sm_client.get("/api/v1/custody/proofs/consistency", headers=h,
                          query_string={"first": 2, "second": 6, "suite": "sm"}).json["proof"]
    assert check_consistency(2, 6, sm3_mth(entries[:2]), root, [bytes.fromhex(p) for p in proof],
                             tree=SM3_TREE) is None
    # the SHA-256 proofs are what they always were
    intl_proof = sm_client.get("/api/v1/custody/proofs/inclusion", headers=h,
                               query_string={"leaf_index": 1, "tree_size": 6}).json["proof"]
    assert [bytes.fromhex(p) for p in intl_proof] == rfc6962.path(1, entries)

    # and the whole log checks, both trees
    signer = sm_app.extensions["fieldcase"].signer
    with sm_app.extensions["fieldcase"].db.session() as s:
        report = verify_log(s, signer.verification_keys(), sm_keys=signer.sm.verification_keys())
    assert report.ok, report.problems
    assert (report.leaves, report.sm_leaves, report.heads, report.sm_heads) == (6, 6, 2, 2)


def test_given_intl_only_then_no_sm_tree_is_kept_and_asking_for_one_answers_404(app, client, officers):
    officer = officers.make()
    phone = TestPhone(client, officer, officers.headers(officer))
    declare(phone, b"one photo")
    head = client.get("/api/v1/custody/tree-head", headers=phone.headers).json
    assert head["tree_size"] == 2
    with app.extensions["fieldcase"].db.session() as s:
        assert s.scalars(select(SmMerkleNode)).first() is None and s.scalars(select(SmTreeHead)).first() is None
    assert app.extensions["fieldcase"].signer.sm is None
    for path, args in (("tree-head", {}), ("public-key", {}), ("public-keys", {}), ("checkpoint", {}),
                       ("checkpoint/verifier-key", {}), ("proofs/inclusion", {"leaf_index": 0, "tree_size": 1}),
                       ("proofs/consistency", {"first": 1, "second": 2})):
        r = client.get(f"/api/v1/custody/{path}", query_string={"suite": "sm", **args}, headers=phone.headers)
        assert r.status_code == 404, (path, r.status_code)
        assert "FIELDCASE_CUSTODY_SUITES" in r.json["message"]
    assert client.get("/api/v1/custody/tree-head", query_string={"suite": "sha1"},
                      headers=phone.headers).status_code == 422


def test_given_a_server_that_ran_intl_only_when_sm_is_turned_on_then_the_sm_tree_covers_the_old_leaves_and_old_intl_heads_still_verify(  # noqa: E501
        app, settings):
    state = app.extensions["fieldcase"]
    log_reads(state.db, state.signer, 300, "before sm")  # a periodic head at 256 is signed on the way
    with state.db.transaction() as s:
        heads.latest_head(s, state.signer, now=utcnow())
    with state.db.session() as s:
        old_heads = [(h.tree_size, h.root_hash, h.timestamp, h.signature, h.key_id)
                     for h in s.scalars(select(TreeHead).order_by(TreeHead.tree_size))]
    assert [h[0] for h in old_heads] == [256, 300]

    sm_settings = with_sm(settings)
    sm_app = create_app(sm_settings)
    sm_state = sm_app.extensions["fieldcase"]
    try:
        # turned on over 300 leaves: commits do not rebuild the tree on the push path, they leave it to the command
        log_reads(sm_state.db, sm_state.signer, 2, "after sm")
        with sm_state.db.session() as s:
            assert trees.sm_size(s) == 0
        lagging = sm_app.test_client().get("/api/v1/custody/public-key", query_string={"suite": "sm"})
        assert lagging.status_code == 200  # the key is there; the tree is not yet
        with sm_state.db.session() as s:
            report = verify_log(s, sm_state.signer.verification_keys(), sm_keys=sm_state.signer.sm.verification_keys())
        assert report.problems == ["SM tree: it holds 0 of the log's 302 leaves: run `fieldcase custody build-sm-tree` "
                                   "to build it over the rest"]

        built = CliRunner().invoke(main, ["custody", "build-sm-tree"], env=env_of(sm_settings, **SM_ENV))
        assert built.exit_code == 0, built.output
        assert "SM tree built: 302 leaves added, 2 SM heads signed for earlier tree heads" in built.output

        entries = leaves_of(sm_state.db)
        with sm_state.db.session() as s:
            assert trees.sm_size(s) == 302
            sm_heads = {h.tree_size: h for h in s.scalars(select(SmTreeHead))}
            intl_heads = [(h.tree_size, h.root_hash, h.timestamp, h.signature, h.key_id)
                          for h in s.scalars(select(TreeHead).order_by(TreeHead.tree_size))]
        # an SM head at the size of every intl head issued before, and at the log's size now
        assert sorted(sm_heads) == [256, 300, 302]
        for size, head in sm_heads.items():
            assert head.root_hash == sm3_mth(entries[:size]).hex()
            assert SM.verify(sm_state.signer.sm.public_raw, signed_bytes(sm_tree.sm_head_dict(head)),
                             b64d(head.signature))
        # the old intl heads are untouched, and still verify with the Ed25519 key
        assert intl_heads[:2] == old_heads and [h[0] for h in intl_heads] == [256, 300, 302]
        with sm_state.db.session() as s:
            report = verify_log(s, sm_state.signer.verification_keys(), sm_keys=sm_state.signer.sm.verification_keys())
        assert report.ok, report.problems
        assert (report.leaves, report.sm_leaves, report.heads, report.sm_heads) == (302, 302, 3, 3)
        verified = CliRunner().invoke(main, ["custody", "verify"], env=env_of(sm_settings, **SM_ENV))
        assert verified.exit_code == 0, verified.output
        assert "SM tree (SM3, SM2 heads): 302 leaves, 3 signed SM tree heads" in verified.output

        # from now on it stays in step; a few leaves appended where no SM key was loaded are caught up by the next
        # commit that has one
        log_reads(state.db, state.signer, 3, "a script without sm")
        log_reads(sm_state.db, sm_state.signer, 1, "back with sm")
        last = leaves_of(sm_state.db)[305]
        with sm_state.db.session() as s:
            assert trees.sm_size(s) == 306
            assert s.get(SmMerkleNode, (0, 305)).hash == _sm3(b"\x00" + last)
        again = CliRunner().invoke(main, ["custody", "build-sm-tree"], env=env_of(sm_settings, **SM_ENV))
        assert again.exit_code == 0 and "0 leaves added" in again.output, again.output
        refused = CliRunner().invoke(main, ["custody", "build-sm-tree"], env=env_of(settings))
        assert refused.exit_code == 1 and "does not include sm" in refused.output
    finally:
        sm_state.db.dispose()


# --- tampering with the SM tree is named ----------------------------------------------------------------------------

@pytest.fixture
def logged(sm_app, sm_phone):
    """Three declarations and their device heads (6 leaves), with heads at 2, 4 and 6."""
    for n in range(3):
        declare(sm_phone, f"clip {n}".encode())
        sm_phone.client.get("/api/v1/custody/tree-head", headers=sm_phone.headers)
    return sm_app.extensions["fieldcase"]


def custody_verify(settings: Settings) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["custody", "verify"], env=env_of(settings, **SM_ENV))
    return result.exit_code, result.output


def system_verify(settings: Settings) -> tuple[int, dict]:
    result = CliRunner().invoke(main, ["verify", "--json"], env=env_of(settings, **SM_ENV))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def named(report: dict, kind: str, ident: str) -> list[str]:
    return [p["message"] for p in report["problems"] if (p["check"], p["kind"], p["object"]) == ("tree", kind, ident)]


def test_given_a_healthy_sm_tree_then_custody_verify_and_fieldcase_verify_pass(logged, sm_settings):
    code, output = custody_verify(sm_settings)
    assert code == 0 and "6 leaves, 3 signed SM tree heads" in output, output
    code, report = system_verify(sm_settings)
    assert code == 0, report["problems"]
    assert report["counts"]["sm_heads"] == 3


def test_given_a_tampered_sm_head_then_custody_verify_and_fieldcase_verify_name_it(logged, sm_settings):
    with logged.db.transaction() as s:
        s.execute(update(SmTreeHead).where(SmTreeHead.tree_size == 4).values(root_hash="ab" * 32))
    code, output = custody_verify(sm_settings)
    assert code == 1
    assert "PROBLEM SM tree head 4: bad SM2 signature" in output
    assert "PROBLEM SM tree head 4: the events do not give its root" in output
    assert "PROBLEM tree head" not in output  # the intl tree is untouched and says so
    code, report = system_verify(sm_settings)
    assert code == 1
    # and neither of its neighbours is consistent with it ("SM tree heads 2 and 4", "SM tree heads 4 and 6")
    assert named(report, "sm_tree_head", "4") == ["bad SM2 signature", "the events do not give its root",
                                                  "not consistent"]
    assert named(report, "sm_tree_head", "6") == ["not consistent"] and named(report, "sm_tree_head", "2") == []
    assert not [p for p in report["problems"] if p["kind"] in ("tree_head", "leaf")]


def test_given_a_tampered_sm_node_then_custody_verify_and_fieldcase_verify_name_its_leaf(logged, sm_settings):
    with logged.db.transaction() as s:
        s.execute(update(SmMerkleNode).where(SmMerkleNode.level == 0, SmMerkleNode.index == 2)
                  .values(hash=b"\x07" * 32))
    code, output = custody_verify(sm_settings)
    assert code == 1
    assert "PROBLEM leaf 2: its SM3 hash does not match the SM tree (altered or moved)" in output
    code, report = system_verify(sm_settings)
    assert code == 1
    assert named(report, "leaf", "2") == ["its SM3 hash does not match the SM tree (altered or moved)"]


def test_given_a_deleted_sm_head_then_it_is_named_as_missing(logged, sm_settings):
    with logged.db.transaction() as s:
        s.execute(SmTreeHead.__table__.delete().where(SmTreeHead.tree_size == 2))
    code, output = custody_verify(sm_settings)
    assert code == 1 and "PROBLEM SM tree head 2: missing: the tree head at this size has no SM head" in output


def test_given_the_sm_key_rotated_then_old_sm_heads_stay_verifiable(logged, sm_settings):
    old = logged.signer.sm
    rotated = CliRunner().invoke(main, ["custody", "rotate-key", "--suite", "sm", "--yes"],
                                 env=env_of(sm_settings, **SM_ENV))
    assert rotated.exit_code == 0 and f"{old.key_id} -> " in rotated.output, rotated.output
    new = custody_keys.signer_for(sm_settings)
    assert new.sm.key_id != old.key_id and dict(new.sm.retired) == {old.key_id: old.public_key}
    assert new.key_id == logged.signer.key_id  # the Ed25519 key is not touched
    log_reads(logged.db, new, 1, "after rotation")
    with logged.db.transaction() as s:
        head = sm_tree.latest_sm_head(s, new, now=utcnow())
    assert head["key_id"] == new.sm.key_id
    with logged.db.session() as s:
        assert verify_log(s, new.verification_keys(), sm_keys=new.sm.verification_keys()).ok
        only_new = verify_log(s, new.verification_keys(), sm_keys={new.sm.key_id: new.sm.public_raw}).problems
    assert only_new == [f"SM tree head {n}: signed with SM2 key {old.key_id}, not in the keyring" for n in (2, 4, 6)]


# --- the SM tree's checkpoint ---------------------------------------------------------------------------------------

def test_the_sm_checkpoint_is_a_signed_note_of_its_own_origin_with_an_sm2_signature(logged, sm_client, sm_officers):
    intl_note = sm_client.get("/api/v1/custody/checkpoint").data.decode()
    note = sm_client.get("/api/v1/custody/checkpoint", query_string={"suite": "sm"})
    assert note.status_code == 200 and note.mimetype == "text/plain"
    text, _, signatures = note.data.decode().partition("\n\n")
    origin, size, root = text.split("\n")
    assert origin == intl_note.split("\n")[0] + "/sm" and size == "6"
    point = logged.signer.sm.public_raw
    with logged.db.session() as s:
        stored = s.get(SmTreeHead, 6)
    assert base64.b64decode(root) == bytes.fromhex(stored.root_hash)
    lines = signatures.strip("\n").split("\n")
    assert len(lines) == 1  # the log's own line; no witness cosigns an SM2 checkpoint
    dash, name, b64 = lines[0].split(" ")
    raw = base64.b64decode(b64)
    assert dash == "\u2014" and name == origin and len(raw) == 4 + 64
    assert raw[:4] == _sm3(origin.encode() + b"\n\xffsm2-sm3/v1" + point)[:4]
    assert SM.verify(point, (text + "\n").encode(), raw[4:])
    vkey = sm_client.get("/api/v1/custody/checkpoint/verifier-key", query_string={"suite": "sm"}).data.decode()
    typed_key = base64.b64encode(b"\xffsm2-sm3/v1" + point).decode()
    assert vkey == f"{origin}+{raw[:4].hex()}+{typed_key}\n"
    older = sm_client.get("/api/v1/custody/checkpoint", query_string={"suite": "sm", "tree_size": 4}).data.decode()
    assert older.split("\n")[1] == "4"
    # a witness posting it back as a cosigned intl checkpoint is refused: it is another log
    custodian = sm_officers.make(roles=("custodian",))
    posted = sm_client.post("/api/v1/custody/checkpoint/cosignatures", data=note.data,
                            headers={**sm_officers.headers(custodian), "Content-Type": "text/plain"})
    assert posted.status_code == 422 and "not a checkpoint of this log" in posted.json["message"]


# --- packages -------------------------------------------------------------------------------------------------------

@pytest.fixture
def sm_built(sm_app, sm_client, sm_officers):
    return build(sm_app, sm_client, sm_officers)


def sm_key_of(built) -> str:
    return built.client.get("/api/v1/custody/public-key", query_string={"suite": "sm"}).json["public_key"]


def manifest_of(data: bytes) -> dict:
    return json.loads(zipfile.ZipFile(io.BytesIO(data)).read("manifest.json"))


def test_a_package_of_an_sm_server_carries_the_sm_head_and_a_proof_of_every_leaf_and_verifies(sm_built, tmp_path):
    m = manifest_of(sm_built.zip)
    sm, intl = m["custody"]["sm"], m["custody"]["tree_head"]
    assert sm["tree_head"]["tree_size"] == intl["tree_size"] and sm["algorithm"] == "SM2"
    assert sm["public_key"] == sm_key_of(sm_built) and sm["user_id"] == "1234567812345678"
    proven = {e["leaf_index"] for item in m["evidence"] for e in item["custody_events"]}
    proven |= {e["leaf_index"] for e in m["case"]["custody_events"]}
    proven |= {d["head"]["leaf_index"] for d in m["devices"].values() if d["head"]}
    assert set(map(int, sm["proofs"])) == proven
    entries = leaves_of(sm_built.client.application.extensions["fieldcase"].db)[:intl["tree_size"]]
    assert sm["tree_head"]["root_hash"] == sm3_mth(entries).hex()
    for index, proof in sm["proofs"].items():
        assert [bytes.fromhex(p) for p in proof] == sm3_path(int(index), entries)

    report = verify_package(io.BytesIO(sm_built.zip), sm_built.key, sm_public_key=sm_key_of(sm_built))
    assert report.ok, report.problems
    assert any(n.startswith("SM tree head (SM3, SM2) at size") for n in report.notes)
    path = tmp_path / "p.zip"
    path.write_bytes(sm_built.zip)
    result = CliRunner().invoke(main, ["verify-package", str(path), "--public-key", sm_built.key,
                                       "--sm-public-key", sm_key_of(sm_built)])
    assert result.exit_code == 0 and "SM2 key given on the command line" in result.output, result.output


def problems_of(data: bytes, built) -> list[str]:
    return verify_package(io.BytesIO(data), built.key, sm_public_key=sm_key_of(built)).problems


def test_a_tampered_sm_root_in_a_package_is_named(sm_built):
    def edit(m):
        m["custody"]["sm"]["tree_head"]["root_hash"] = "00" * 32
    problems = problems_of(rewrite(sm_built.zip, edit, reseal=sm_built.signer), sm_built)
    size = manifest_of(sm_built.zip)["custody"]["tree_head"]["tree_size"]
    assert f"SM tree head (size {size}): its SM2 signature does not verify with the given SM2 key (forged or " \
           "altered SM head or root, or another server's key)" in problems
    assert any("its SM3 inclusion proof does not hold against the SM tree head" in p for p in problems)
    assert not any(p.startswith("tree head") for p in problems)  # the SHA-256 tree still holds


def test_a_re_signed_sm_head_over_another_root_is_named_by_its_proofs(sm_built):
    """What only the SM2 key's holder could do: sign a head over another root. The proofs still do not lead there."""
    sm = sm_built.signer.sm

    def edit(m):
        head = m["custody"]["sm"]["tree_head"]
        head["root_hash"] = "11" * 32
        head["signature"] = sm.sign(signed_bytes(head))
    problems = problems_of(rewrite(sm_built.zip, edit, reseal=sm_built.signer), sm_built)
    assert problems and all("its SM3 inclusion proof does not hold against the SM tree head" in p for p in problems)


def test_a_tampered_sm_proof_in_a_package_is_named_with_its_event(sm_built):
    m = manifest_of(sm_built.zip)
    item = next(i for i in m["evidence"] if i["id"] == sm_built.e1)
    declared = item["custody_events"][0]
    index = str(declared["leaf_index"])

    def edit(m):
        proof = m["custody"]["sm"]["proofs"][index]
        proof[0] = "ff" * 32
    problems = problems_of(rewrite(sm_built.zip, edit, reseal=sm_built.signer), sm_built)
    assert len(problems) == 1
    assert problems[0].startswith(f"evidence {item['item']} ({sm_built.e1}): custody event at leaf {index} (declared): "
                                  "its SM3 inclusion proof does not hold against the SM tree head")

    def drop(m):
        del m["custody"]["sm"]["proofs"][index]
    assert problems_of(rewrite(sm_built.zip, drop, reseal=sm_built.signer), sm_built) == [
        f"evidence {item['item']} ({sm_built.e1}): custody event at leaf {index} (declared): the package carries no "
        "SM3 inclusion proof for it in the SM tree"]


def test_an_sm_head_of_another_size_or_key_is_named(sm_built):
    def resize(m):
        m["custody"]["sm"]["tree_head"]["tree_size"] -= 1
    problems = problems_of(rewrite(sm_built.zip, resize, reseal=sm_built.signer), sm_built)
    assert len(problems) == 1 and problems[0].startswith("SM tree head: its tree_size")
    other = custody_keys.b64url(SM.generate()[1])
    report = verify_package(io.BytesIO(sm_built.zip), sm_built.key, sm_public_key=other)
    size = manifest_of(sm_built.zip)["custody"]["tree_head"]["tree_size"]
    assert report.problems == [f"SM tree head (size {size}): its SM2 signature does not verify with the given SM2 key "
                               "(forged or altered SM head or root, or another server's key)",
                               "package-index.json: its SM2 signature does not verify with the given SM2 key (the "
                               "index was altered, or made by another key)"]  # the SM2 seal is that key's to check too
    bare = verify_package(io.BytesIO(sm_built.zip), sm_built.key)
    assert bare.ok and any(n.startswith("WARNING: SM tree head checked against the SM2 key inside") for n in bare.notes)


def test_a_package_of_an_intl_only_server_is_as_it_was(built):
    m = manifest_of(built.zip)
    assert set(m["custody"]) == {"tree_head", "public_key", "key_id", "algorithm", "leaf_hash", "node_hash"}
    index = json.loads(zipfile.ZipFile(io.BytesIO(built.zip)).read("package-index.json"))
    assert set(index) == {"format", "version", "package", "case_id", "tree_head", "members", "algorithm", "key_id",
                          "signature"}
    report = verify_package(io.BytesIO(built.zip), built.key, sm_public_key=custody_keys.b64url(SM.generate()[1]))
    assert report.ok and "the package carries no SM tree (custody.sm), so --sm-public-key checked nothing" in \
        report.notes


@pytest.fixture
def built(app, client, officers):
    return build(app, client, officers)


# --- keys and settings ----------------------------------------------------------------------------------------------

def test_init_secrets_makes_the_sm2_key_0600_only_where_sm_is_on(settings, tmp_path):
    intl = replace(settings, instance_dir=tmp_path / "intl")
    assert "custody_sm" not in {f.name for f in secret_files(intl)}
    sm = replace(intl, custody_suites=("intl", "sm"), custody_sm_key_file=str(tmp_path / "keys" / "sm2.key"))
    made = dict((entry.name, fresh) for entry, fresh in init_secrets(sm))
    assert made["custody_sm"] is True
    path = tmp_path / "keys" / "sm2.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(path.read_bytes()) == 97
    signer = custody_keys.load_sm_signer(path, create=False)
    assert signer.public_raw == path.read_bytes()[32:] and SM.verify(signer.public_raw, b"m", b64d(signer.sign(b"m")))
    assert dict((entry.name, fresh) for entry, fresh in init_secrets(sm))["custody_sm"] is False  # never replaced
    broken = tmp_path / "keys" / "broken.key"
    broken.write_bytes(path.read_bytes()[:32] + SM.generate()[1])
    with pytest.raises(RuntimeError, match="do not match"):
        custody_keys.load_sm_signer(broken, create=False)


def test_custody_suites_must_include_intl():
    assert Settings.from_env({}).custody_suites == ("intl",)
    assert Settings.from_env({"FIELDCASE_CUSTODY_SUITES": " SM, intl "}).custody_suites == ("intl", "sm")
    for bad, why in (("sm", "must include intl"), ("intl,rsa", "unknown suite 'rsa'")):
        with pytest.raises(SettingsError, match=why):
            Settings.from_env({"FIELDCASE_CUSTODY_SUITES": bad})
    with pytest.raises(SettingsError, match="must include intl"):
        Settings(custody_suites=("sm",)).resolved()
