"""The custody signing key: one shared key file for every process, and rotation with a keyring of retired keys."""

from __future__ import annotations

from dataclasses import replace

from click.testing import CliRunner

from backend.bootstrap import create_app
from backend.cli import main
from backend.core.config import Settings
from backend.core.models import utcnow
from backend.core.secret_files import init_secrets
from media.custody import heads
from media.custody import keys as custody_keys
from media.custody import log as custody
from media.custody.verify import verify_log
from tests.conftest import _empty_tables


def _env(s: Settings) -> dict[str, str]:
    return {"DATABASE_URL": s.database_url, "FIELDCASE_INSTANCE_DIR": str(s.instance_dir),
            "FIELDCASE_CUSTODY_KEY_FILE": s.custody_key_file, "FIELDCASE_CUSTODY_KEYRING": s.custody_keyring_file}


def _events(db, n: int, signer: custody_keys.Signer) -> dict:
    with db.transaction() as s:
        for i in range(n):
            custody.record(s, "read", None, "officer-k", at=utcnow(), purpose=f"key test {i}")
    with db.transaction() as s:
        return heads.latest_head(s, signer, now=utcnow())


def test_rotation_keeps_old_heads_verifiable(settings, tmp_path):
    secrets_dir = tmp_path / "shared-secrets"  # e.g. a secret store mounted on every host
    s = replace(settings, custody_key_file=str(secrets_dir / "custody.key"),
                custody_keyring_file=str(secrets_dir / "custody-keyring.json"))
    init_secrets(s)  # made once, where the setting points (on PostgreSQL nothing is made on first use)
    app = create_app(s)
    db = app.extensions["fieldcase"].db
    try:
        old = app.extensions["fieldcase"].signer
        assert old.key_id == custody_keys.load_signer(key_file=secrets_dir / "custody.key", create=False).key_id
        first = _events(db, 3, old)
        assert first["key_id"] == old.key_id

        rotated = CliRunner().invoke(main, ["custody", "rotate-key", "--yes"], env=_env(s))
        assert rotated.exit_code == 0, rotated.output
        assert f"{old.key_id} -> " in rotated.output
        new = custody_keys.signer_for(s)
        assert new.key_id != old.key_id and dict(new.retired) == {old.key_id: old.public_key}
        second = _events(db, 2, new)
        assert second["key_id"] == new.key_id

        with db.session() as session:
            assert verify_log(session, new.verification_keys()).ok
            misfiled = verify_log(session, {old.key_id: new.public_raw, new.key_id: new.public_raw}).problems
            assert misfiled == [f"tree head {first['tree_size']}: bad signature"]
            unknown = verify_log(session, {new.key_id: new.public_raw}).problems
            assert unknown == [f"tree head {first['tree_size']}: signed with key {old.key_id}, not in the keyring"]

        verified = CliRunner().invoke(main, ["custody", "verify"], env=_env(s))
        assert verified.exit_code == 0 and "2 signed tree heads: OK" in verified.output, verified.output
        only_old = CliRunner().invoke(main, ["custody", "verify", "--public-key", old.public_key],
                                      env=_env(s))
        assert only_old.exit_code == 1 and "not in the keyring" in only_old.output
        assert "bad signature" not in only_old.output  # the head the old key signed holds under it
        both = CliRunner().invoke(main, ["custody", "verify", "--public-key", old.public_key,
                                         "--public-key", new.public_key], env=_env(s))
        assert both.exit_code == 0 and "2 signed tree heads: OK" in both.output, both.output

        # A process started after the rotation signs with the new key and publishes both.
        fresh = create_app(s)
        keys = fresh.test_client().get("/api/v1/custody/public-keys").json
        assert keys["current"] == new.key_id
        assert [k["key_id"] for k in keys["keys"]] == [old.key_id, new.key_id]
        assert fresh.test_client().get("/api/v1/custody/public-key").json["key_id"] == new.key_id
        fresh.extensions["fieldcase"].db.dispose()
    finally:
        _empty_tables(db)
        db.dispose()


def test_a_tampered_keyring_is_refused(settings, tmp_path):
    ring = tmp_path / "ring.json"
    ring.write_text('{"keys": [{"key_id": "0000000000000000", "public_key": "' + "A" * 43 + '"}]}')
    try:
        custody_keys.load_signer(settings.instance_dir, keyring_file=ring)
    except RuntimeError as exc:
        assert "does not match its key" in str(exc)
    else:
        raise AssertionError("a keyring entry whose id is not its key's was accepted")
