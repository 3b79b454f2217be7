"""The package seal in the national algorithms too (issue 23: every proof in SM2 and SM3; PROTOCOL "Evidence packages,
as built").

Given a server that keeps the SM custody tree (FIELDCASE_CUSTODY_SUITES=intl,sm), when a custodian exports a case,
then `package-index.json` lists every member's SM3 beside its SHA-256, and carries an SM2 signature by the SM custody
key over the index without its two signatures, under the Ed25519 signature that now covers the SM fields too; the
SM2 seal verifies with the published key in our code and in OpenSSL 3, and `verify-package` says OK. When an SM3 in
the index, a bit of the SM2 seal or the key that made it is changed, `verify-package` fails and names it. A server of
the `intl` suite alone seals its packages byte for byte as the code before the SM seal did.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from collections.abc import Callable

import gmssl_pyx
import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import update

from backend.core.crypto import SM
from backend.core.models import Evidence
from media.custody.keys import Signer, SmSigner, b64url
from media.package_index import INDEX_NAME, seal, sign, signed_part
from media.package_verify import verify_package
from tests.conftest import Officers, app_on
from tests.core.test_crypto_vectors import openssl_verifies
from tests.media.test_custody_sm import build, sm_app, sm_client, sm_key_of, sm_officers, sm_settings, with_sm
from tests.media.test_custody_sm import sm_built as sm_served
from tests.media.test_package import Built, built, cli, rewrite

__all__ = ["built", "sm_app", "sm_client", "sm_officers", "sm_served", "sm_settings"]  # the fixtures

SM_FIELDS = {"sm_algorithm", "sm_key_id", "sm_signature"}
INTL_FIELDS = {"format", "version", "package", "case_id", "tree_head", "members", "algorithm", "key_id", "signature"}


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def index_of(data: bytes) -> dict:
    return json.loads(zipfile.ZipFile(io.BytesIO(data)).read(INDEX_NAME))


def entries_of(data: bytes) -> dict[str, bytes]:
    archive = zipfile.ZipFile(io.BytesIO(data))
    return {n: archive.read(n) for n in archive.namelist() if n != INDEX_NAME}


def sm_signed(index: dict) -> bytes:
    """What the SM2 seal covers, written here from the protocol's words: RFC 8785 of the index without `signature`
    and `sm_signature`."""
    return rfc8785.dumps({k: v for k, v in index.items() if k not in ("signature", "sm_signature")})


def with_index(data: bytes, change: Callable[[dict], None], *, signer: Signer | None = None,
               sm: SmSigner | None = None) -> bytes:
    """The package with its index changed; then signed again with the custody key `signer` alone (an insider who
    holds the Ed25519 key), or in SM2 by `sm` and then by `signer` (one who holds both), or not at all."""
    def edit(entries: dict[str, bytes]) -> None:
        index = json.loads(entries[INDEX_NAME])
        change(index)
        if sm is not None:
            assert signer is not None
            index = sign(signer, index, sm)
        elif signer is not None:
            index["signature"] = signer.sign(signed_part(index))
        entries[INDEX_NAME] = json.dumps(index).encode()
    return rewrite(data, files=edit)


def problems(data: bytes, built: Built) -> list[str]:
    return verify_package(io.BytesIO(data), built.key, sm_public_key=built.sm_key).problems


def a_file(index: dict) -> dict:
    return next(m for m in index["members"] if m["name"].startswith("files/"))


def stranger() -> SmSigner:
    private, public = SM.generate()
    return SmSigner(private_key=private, public_raw=public)


@pytest.fixture(scope="module")
def sm_built(module_settings) -> Built:
    """A package of an SM server, built once for the tests that only take it apart offline (its server is gone), with
    the SM2 key the server published."""
    with app_on(with_sm(module_settings)) as app:
        client = app.test_client()
        package = build(app, client, Officers(app.extensions["fieldcase"].db, client))
        package.sm_published = client.get("/api/v1/custody/public-key", query_string={"suite": "sm"}).json
    package.client = package.officers = None
    package.sm_key = package.sm_published["public_key"]
    return package


# --- sealed in SM2 ------------------------------------------------------------------------------------------------


def test_given_an_sm_server_when_it_exports_then_every_member_has_its_sm3_and_the_index_is_sealed_in_sm2(
        sm_built, tmp_path):
    index, entries = index_of(sm_built.zip), entries_of(sm_built.zip)
    published = sm_built.sm_published
    assert set(index) == INTL_FIELDS | SM_FIELDS
    assert (index["sm_algorithm"], index["sm_key_id"]) == ("SM2", published["key_id"])
    assert {m["name"] for m in index["members"]} == set(entries)
    for member in index["members"]:  # SM3 by GmSSL, not by the `cryptography` SM3 the server hashes with
        data = entries[member["name"]]
        assert member == {"name": member["name"], "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                          "sm3": bytes(gmssl_pyx.sm3_hash(data)).hex()}

    key, signature = b64d(published["public_key"]), b64d(index["sm_signature"])
    assert SM.verify(key, sm_signed(index), signature)
    # the Ed25519 signature covers the SM fields: a verifier that knows only it checks it as before
    ed_key = Ed25519PublicKey.from_public_bytes(b64d(sm_built.key))
    ed_key.verify(b64d(index["signature"]), rfc8785.dumps({k: v for k, v in index.items() if k != "signature"}))

    result = cli(tmp_path, sm_built.zip, "--public-key", sm_built.key, "--sm-public-key", sm_built.sm_key)
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith(": OK")
    assert "not sealed in SM2" not in result.output and "no SM3 for" not in result.output


def test_given_an_sm_sealed_index_when_openssl_checks_its_sm2_signature_then_it_verifies(sm_built, tmp_path):
    """A second implementation, the one an assessor has at hand: `openssl pkeyutl -verify -rawin -digest sm3
    -pkeyopt distid:1234567812345678` over the bytes PROTOCOL names."""
    index = index_of(sm_built.zip)
    key, signature = b64d(sm_built.sm_key), b64d(index["sm_signature"])
    assert openssl_verifies(tmp_path, key, sm_signed(index), signature)
    flipped = bytearray(signature)
    flipped[40] ^= 0x01
    assert not openssl_verifies(tmp_path, key, sm_signed(index), bytes(flipped))
    altered = {**index, "members": [{**m, "sm3": "00" * 32} if m is a_file(index) else m for m in index["members"]]}
    assert not openssl_verifies(tmp_path, key, sm_signed(altered), signature)


# --- tampered -----------------------------------------------------------------------------------------------------


def _sm3_of_a_file(value: str) -> Callable[[dict], None]:
    return lambda index: a_file(index).update(sm3=value)


def _flip_sm_seal(index: dict) -> None:
    raw = bytearray(b64d(index["sm_signature"]))
    raw[7] ^= 0x01
    index["sm_signature"] = b64url(bytes(raw))


SEAL = (f"{INDEX_NAME}: its signature does not verify with the custody key (the index was altered, or made by "
        "another key)")
SM_SEAL = (f"{INDEX_NAME}: its SM2 signature does not verify with the given SM2 key (the index was altered, or made by "
           "another key)")


def test_given_an_sm3_altered_in_the_index_then_both_seals_and_the_member_name_it(sm_built):
    name, sm3 = a_file(index_of(sm_built.zip))["name"], a_file(index_of(sm_built.zip))["sm3"]
    found = problems(with_index(sm_built.zip, _sm3_of_a_file("ab" * 32)), sm_built)
    assert found == [SEAL, SM_SEAL, f"member {name}: not the member the index sealed (SM3 {sm3}; sealed {'ab' * 32}): "
                                    "it was edited"]


def test_given_an_sm3_altered_by_one_holding_both_keys_then_the_member_still_names_it(sm_built):
    name, sm3 = a_file(index_of(sm_built.zip))["name"], a_file(index_of(sm_built.zip))["sm3"]
    data = with_index(sm_built.zip, _sm3_of_a_file("cd" * 32), signer=sm_built.signer, sm=sm_built.signer.sm)
    assert problems(data, sm_built) == [
        f"member {name}: not the member the index sealed (SM3 {sm3}; sealed {'cd' * 32}): it was edited"]


def test_given_a_bit_of_the_sm2_seal_flipped_then_it_is_named_and_the_ed25519_seal_over_it_fails_too(sm_built):
    assert problems(with_index(sm_built.zip, _flip_sm_seal), sm_built) == [SEAL, SM_SEAL]
    # re-signed in Ed25519 by one who holds only that key: the SM2 seal alone answers
    assert problems(with_index(sm_built.zip, _flip_sm_seal, signer=sm_built.signer), sm_built) == [SM_SEAL]


def test_given_an_sm2_seal_by_another_sm2_key_then_it_is_named(sm_built, tmp_path):
    data = with_index(sm_built.zip, lambda index: None, signer=sm_built.signer, sm=stranger())
    assert problems(data, sm_built) == [SM_SEAL]
    bare = verify_package(io.BytesIO(data), sm_built.key)  # checked with the package's own SM2 key: still not it
    assert bare.problems == [SM_SEAL.replace("given SM2 key", "package SM2 key")]
    result = cli(tmp_path, data, "--public-key", sm_built.key, "--sm-public-key", sm_built.sm_key)
    assert result.exit_code == 1 and f"PROBLEM {SM_SEAL}" in result.output


def test_given_an_sm2_seal_spelled_otherwise_then_it_is_refused(sm_built):
    data = with_index(sm_built.zip, lambda index: index.update(sm_signature=index["sm_signature"][:-2]),
                      signer=sm_built.signer)
    assert problems(data, sm_built) == [f"{INDEX_NAME}: refused, its SM2 signature is 63 bytes, not the 64 of SM2's "
                                        "r ‖ s, so nothing it lists is vouched for in SM2"]
    data = with_index(sm_built.zip, _sm3_of_a_file("AB" * 32), signer=sm_built.signer, sm=sm_built.signer.sm)
    name = a_file(index_of(sm_built.zip))["name"]
    assert problems(data, sm_built) == [f"{INDEX_NAME}: member {name} refused, its sealed sm3 is not lower-case hex"]


def test_given_a_file_edited_then_its_sha256_and_its_sm3_both_name_it(sm_built):
    name = a_file(index_of(sm_built.zip))["name"]

    def flip(entries: dict[str, bytes]) -> None:
        data = bytearray(entries[name])
        data[3] ^= 0x01
        entries[name] = bytes(data)
    found = [p for p in problems(rewrite(sm_built.zip, files=flip), sm_built) if p.startswith(f"member {name}:")]
    assert [p.split("(", 1)[1].split(" ", 1)[0] for p in found] == ["SHA-256", "SM3"], found


def test_given_the_sm2_seal_stripped_by_one_holding_the_ed25519_key_then_it_verifies_as_an_older_package(sm_built):
    """What a package of an SM server made before the SM seal looks like: still sealed by Ed25519, and said to be
    sealed by it alone. (A verifier trusting SM2 alone must read that note as "not proven in SM2".)"""
    def strip(index: dict) -> None:
        for field in SM_FIELDS:
            del index[field]
        for member in index["members"]:
            del member["sm3"]
    report = verify_package(io.BytesIO(with_index(sm_built.zip, strip, signer=sm_built.signer)), sm_built.key,
                            sm_public_key=sm_built.sm_key)
    assert report.ok, report.problems
    assert (f"{INDEX_NAME} is not sealed in SM2 (a package made before the seal was): its members are sealed by "
            "Ed25519 over SHA-256 alone") in report.notes


def test_given_an_sm2_seal_but_no_sm_tree_in_the_manifest_then_it_cannot_be_checked_and_is_named(sm_built):
    def drop_tree(m: dict) -> None:
        del m["custody"]["sm"]
    data = rewrite(sm_built.zip, drop_tree, reseal=sm_built.signer)
    assert problems(data, sm_built) == [f"{INDEX_NAME}: it is sealed in SM2, but the package carries no SM tree "
                                        "(custody.sm) whose SM2 key could check the seal"]


def test_given_an_item_verified_before_the_server_computed_sm3_then_its_file_is_sealed_by_sha256_and_a_note_says_so(
        sm_served):
    db = sm_served.client.application.extensions["fieldcase"].db
    with db.transaction() as s:
        s.execute(update(Evidence).where(Evidence.id == sm_served.e1).values(sm3=None))
    r = sm_served.client.get(f"/api/v1/cases/{sm_served.case_id}/package", query_string={"purpose": "复核"},
                            headers=sm_served.hc)
    assert r.status_code == 200, r.data[:300]
    index = index_of(r.data)
    (name,) = [m["name"] for m in index["members"] if "sm3" not in m]
    key = sm_key_of(sm_served)
    assert sm_served.e1 in name and SM.verify(b64d(key), sm_signed(index), b64d(index["sm_signature"]))
    report = verify_package(io.BytesIO(r.data), sm_served.key, sm_public_key=key)
    assert report.ok, report.problems
    assert (f"{INDEX_NAME}: no SM3 for {name} (files of items verified before the server computed SM3, not "
            "backfilled since): the SM2 seal covers their SHA-256 alone") in report.notes


# --- a server of the intl suite alone -----------------------------------------------------------------------------


def committed_seal(signer: Signer, *, package_id: str, case_id: str, head: dict, documents: list[tuple[str, bytes]],
                   files: list[tuple[str, str, int]]) -> bytes:
    """media/package_index.py `seal` as it was committed before the SM seal (ab24a9e), frozen here."""
    members = [{"name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
               for name, data in documents]
    members += [{"name": name, "sha256": sha256, "size": size} for name, sha256, size in files]
    index = {
        "format": "fieldcase-package-index", "version": 1, "package": package_id, "case_id": case_id,
        "tree_head": {k: head[k] for k in ("tree_size", "root_hash", "timestamp", "key_id")},
        "members": sorted(members, key=lambda m: m["name"]),
        "algorithm": "Ed25519", "key_id": signer.key_id,
    }
    index["signature"] = signer.sign(rfc8785.dumps({k: v for k, v in index.items() if k != "signature"}))
    return json.dumps(index, ensure_ascii=False, indent=1).encode("utf-8")


def test_given_an_intl_only_server_then_its_index_is_byte_for_byte_what_the_committed_seal_wrote(built):
    entries = entries_of(built.zip)
    manifest = json.loads(entries["manifest.json"])
    documents = [(n, b) for n, b in entries.items() if not n.startswith("files/")]
    files = [(n, hashlib.sha256(b).hexdigest(), len(b)) for n, b in entries.items() if n.startswith("files/")]
    stored = zipfile.ZipFile(io.BytesIO(built.zip)).read(INDEX_NAME)
    assert stored == committed_seal(built.signer, package_id=built.package_id, case_id=built.case_id,
                                    head=manifest["custody"]["tree_head"], documents=documents, files=files)
    index = json.loads(stored)
    assert set(index) == INTL_FIELDS and all(set(m) == {"name", "sha256", "size"} for m in index["members"])
    report = verify_package(io.BytesIO(built.zip), built.key)
    assert report.ok and not any("SM2" in n or "SM3" in n for n in report.notes), report.notes


@pytest.mark.parametrize("sm3", [None, "ab" * 32])
def test_given_no_sm_key_then_seal_ignores_what_it_knows_of_sm3(built, sm3):
    """An SM3 the store knows of an item does not leak into the index of a package without the SM tree."""
    entries = entries_of(built.zip)
    manifest = json.loads(entries["manifest.json"])
    documents = [(n, b) for n, b in entries.items() if not n.startswith("files/")]
    files = [(n, hashlib.sha256(b).hexdigest(), len(b)) for n, b in entries.items() if n.startswith("files/")]
    head = manifest["custody"]["tree_head"]
    assert seal(built.signer, package_id=built.package_id, case_id=built.case_id, head=head, documents=documents,
                files=[(*f, sm3) for f in files]) == zipfile.ZipFile(io.BytesIO(built.zip)).read(INDEX_NAME)
