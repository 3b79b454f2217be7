"""Access tokens under the `sm` suite (issue 23, item 6): HMAC-SM3 (`HSM3`), registered with PyJWT on the issuer's own
codec, and decoding accepts that algorithm alone. The `intl` default (HS256) is unchanged."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import replace

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, hmac

from backend.core.config import Settings
from backend.core.variables import SettingsError
from tests.conftest import Officers, app_on


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _hmac_sm3(key: bytes, message: bytes) -> bytes:
    """HMAC-SM3 straight from `cryptography`, not through fieldcase's code: the reference the token is held to."""
    mac = hmac.HMAC(key, hashes.SM3())
    mac.update(message)
    return mac.finalize()


def _signed(header: dict, claims: dict, key: bytes) -> str:
    head = _b64(json.dumps(header, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{head}.{body}.{_b64(_hmac_sm3(key, f'{head}.{body}'.encode()))}"


@pytest.fixture
def sm_app(settings):
    with app_on(replace(settings, token_suite="sm")) as application:
        yield application


@pytest.fixture
def sm(sm_app):
    client = sm_app.test_client()
    return client, Officers(sm_app.extensions["fieldcase"].db, client), sm_app.extensions["fieldcase"].issuer.secret


def _me(client, token: str):
    return client.get("/api/v1/me", headers={"Authorization": "Bearer " + token})


def _claims(officer, **changes) -> dict:
    now = int(time.time())
    return {"iss": "fieldcase", "sub": officer.id, "roles": list(officer.roles), "iat": now, "exp": now + 600,
            "jti": "j1", **changes}


def test_given_the_sm_suite_when_an_officer_logs_in_then_the_token_is_hmac_sm3_and_verifies(sm):
    client, officers, secret = sm
    officer = officers.make()
    token = officers.login(officer)["access_token"]
    head, body, signature = token.split(".")
    assert json.loads(_unb64(head)) == {"alg": "HSM3", "typ": "JWT"}
    # The MAC is HMAC-SM3 of header.payload under the token key, as `cryptography` computes it.
    assert _unb64(signature) == _hmac_sm3(secret, f"{head}.{body}".encode())
    assert _me(client, token).status_code == 200
    # A token made outside the server, by the same rule, verifies too: the format is the documented one.
    assert _me(client, _signed({"alg": "HSM3", "typ": "JWT"}, _claims(officer), secret)).status_code == 200


def test_given_the_sm_suite_when_a_token_is_relabelled_or_signed_with_hs256_then_it_is_refused(sm):
    client, officers, secret = sm
    officer = officers.make()
    token = officers.login(officer)["access_token"]
    _, body, signature = token.split(".")
    for alg in ("HS256", "HS512", "none", "hsm3", "SM3", "HMAC-SM3"):
        relabelled = f"{_b64(json.dumps({'alg': alg, 'typ': 'JWT'}).encode())}.{body}.{signature}"
        assert _me(client, relabelled).status_code == 401, alg
    hs256 = jwt.encode(_claims(officer), secret, algorithm="HS256")  # the right key, the intl algorithm
    assert _me(client, hs256).status_code == 401
    unsigned = f"{_b64(json.dumps({'alg': 'none'}).encode())}.{body}."
    assert _me(client, unsigned).status_code == 401


def test_given_the_sm_suite_when_a_token_is_tampered_with_then_it_is_refused(sm):
    client, officers, secret = sm
    officer = officers.make()
    token = officers.login(officer)["access_token"]
    head, body, signature = token.split(".")
    raised = _b64(json.dumps(_claims(officer, roles=["admin"]), separators=(",", ":")).encode())
    assert _me(client, f"{head}.{raised}.{signature}").status_code == 401  # claims changed, MAC kept
    flipped = bytearray(_unb64(signature))
    flipped[0] ^= 1
    assert _me(client, f"{head}.{body}.{_b64(bytes(flipped))}").status_code == 401
    other_key = _signed({"alg": "HSM3", "typ": "JWT"}, _claims(officer), b"k" * 64)
    assert _me(client, other_key).status_code == 401
    assert _me(client, token).status_code == 200  # the untouched token still passes


def test_given_the_intl_default_then_tokens_stay_hs256_and_refuse_hmac_sm3(app, client, officers):
    officer = officers.make()
    token = officers.login(officer)["access_token"]
    assert json.loads(_unb64(token.split(".")[0]))["alg"] == "HS256"
    assert _me(client, token).status_code == 200
    secret = app.extensions["fieldcase"].issuer.secret
    assert _me(client, _signed({"alg": "HSM3", "typ": "JWT"}, _claims(officer), secret)).status_code == 401


def test_hmac_sm3_is_registered_on_the_issuers_codec_not_on_pyjwts_global_one(sm):
    client, officers, secret = sm
    token = officers.login(officers.make())["access_token"]
    with pytest.raises(jwt.InvalidAlgorithmError):
        jwt.decode(token, secret, algorithms=["HSM3"])


def test_the_token_suite_is_read_from_the_environment_and_a_wrong_one_refused(tmp_path):
    env = {"FIELDCASE_INSTANCE_DIR": str(tmp_path / "inst")}
    assert Settings.from_env(env).token_suite == "intl"
    assert Settings.from_env({**env, "FIELDCASE_TOKEN_SUITE": "SM"}).token_suite == "sm"
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({**env, "FIELDCASE_TOKEN_SUITE": "gm"})
    assert refused.value.problems == ["FIELDCASE_TOKEN_SUITE=gm: must be one of intl, sm"]
