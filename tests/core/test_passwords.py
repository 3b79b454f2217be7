"""Passwords: stored with a slow KDF from an explicit list, at the cost the deployment chose."""

from __future__ import annotations

import pytest

from backend.core.config import Settings
from backend.core.crypto.passwords import PASSWORD_KDF, check_kdf, hash_password, verify_password
from backend.core.models import Officer
from tests.conftest import TEST_KDF


def test_the_deployment_default_is_scrypt_at_werkzeugs_cost():
    assert Settings.from_env({}).password_kdf == PASSWORD_KDF == "scrypt:32768:8:1"
    stored = hash_password("a long enough password")
    assert stored.startswith("scrypt:32768:8:1$")
    assert verify_password(Officer(password_hash=stored), "a long enough password")
    assert not verify_password(Officer(password_hash=stored), "a long enough passwore")


@pytest.mark.parametrize("method", ["scrypt:16384:8:1", "scrypt:1024:8:1", "pbkdf2:sha256:600000"])
def test_an_allowed_kdf_is_taken_as_spelled(method):
    assert check_kdf(method) == method
    assert hash_password("x" * 12, method).startswith(method + "$")


@pytest.mark.parametrize("method", ["md5", "plain", "scrypt", "scrypt:1000:8:1", "scrypt:1024:0:1",
                                    "scrypt:1024:8:0", "pbkdf2:sha1:600000", "pbkdf2:sha256:0", "scrypt:1:8:1",
                                    " scrypt:1024:8:1"])
def test_anything_else_stops_the_settings_naming_the_variable(method):
    with pytest.raises(ValueError, match="FIELDCASE_PASSWORD_KDF"):
        Settings.from_env({"FIELDCASE_PASSWORD_KDF": method})


def test_a_hash_keeps_its_own_cost_when_the_deployment_changes_its_kdf():
    """Stored hashes name their algorithm and parameters: a new cost applies to new and changed passwords only."""
    old = hash_password("correct horse battery", TEST_KDF)
    assert verify_password(Officer(password_hash=old), "correct horse battery", PASSWORD_KDF)


def test_an_officer_created_and_updated_through_the_api_is_hashed_at_the_deployments_cost(client, officers, db,
                                                                                          settings):
    admin = officers.make(roles=("officer", "admin"))
    headers = officers.headers(admin)
    r = client.post("/api/v1/officers", headers=headers, json={
        "username": "kdf-officer", "password": "a long enough password", "name": "钱七",
        "department": "education", "region": "330106"})
    assert r.status_code == 201, r.json
    with db.session() as s:
        assert s.get(Officer, r.json["id"]).password_hash.startswith(settings.password_kdf + "$")
    changed = client.patch(f"/api/v1/officers/{r.json['id']}", headers=headers,
                           json={"password": "another long password"})
    assert changed.status_code == 200, changed.json
    with db.session() as s:
        assert s.get(Officer, r.json["id"]).password_hash.startswith(settings.password_kdf + "$")
    token = client.post("/api/v1/auth/token", json={"username": "kdf-officer", "password": "another long password"})
    assert token.status_code == 200


def test_given_the_deployment_switches_its_kdf_when_an_officer_signs_in_then_their_password_is_hashed_anew(settings):
    """Hashes made before the switch (here the tests' scrypt) are remade at their officer's next successful login,
    with the password just checked: a move to PBKDF2 with HMAC-SM3 reaches everyone who signs in."""
    from dataclasses import replace

    from tests.conftest import PASSWORD, Officers, app_on

    with app_on(replace(settings, password_kdf="pbkdf2:sm3:2000")) as application:
        db, client = application.extensions["fieldcase"].db, application.test_client()
        officer = Officers(db, client, kdf=TEST_KDF).make()

        def stored() -> str:
            with db.session() as s:
                return s.get(Officer, officer.id).password_hash

        before = stored()
        assert before.startswith(TEST_KDF + "$")
        wrong = client.post("/api/v1/auth/token", json={"username": officer.username, "password": PASSWORD + "x"})
        assert wrong.status_code == 401 and stored() == before  # only a checked password is hashed anew

        assert client.post("/api/v1/auth/token", json={"username": officer.username, "password": PASSWORD}
                           ).status_code == 200
        after = stored()
        assert after.startswith("pbkdf2:sm3:2000$")
        assert verify_password(Officer(password_hash=after), PASSWORD)
        assert client.post("/api/v1/auth/token", json={"username": officer.username, "password": PASSWORD}
                           ).status_code == 200
        assert stored() == after  # already the deployment's: left as it is


def test_given_pbkdf2_with_hmac_sm3_then_a_password_checks_and_the_hash_is_the_standard_construction():
    """For a 密评: PBKDF2 (RFC 8018) over HMAC-SM3, recomputed here with cryptography's PBKDF2HMAC over SM3."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    stored = hash_password("correct horse battery", "pbkdf2:sm3:2000")
    method, salt, derived = stored.split("$")
    expected = PBKDF2HMAC(algorithm=hashes.SM3(), length=32, salt=salt.encode(), iterations=2000).derive(
        b"correct horse battery")
    assert (method, derived) == ("pbkdf2:sm3:2000", expected.hex())
    assert verify_password(Officer(password_hash=stored), "correct horse battery")
    assert not verify_password(Officer(password_hash=stored), "correct horse batterz")
    assert check_kdf("pbkdf2:sm3:600000") == "pbkdf2:sm3:600000"
