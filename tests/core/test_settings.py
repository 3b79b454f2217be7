"""Settings are checked before anything starts: each wrong value is one line naming its variable, an unknown
FIELDCASE_* name is reported, `fieldcase config check` shows the settings with secrets masked, and secret files
are made only where one host may make them (SQLite) or by `fieldcase init-secrets`."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from backend.bootstrap import create_app
from backend.cli import main
from backend.core.config import Settings
from backend.core.secret_files import init_secrets, missing_secrets
from backend.core.variables import VARIABLES, SettingsError
from backend.liveserver import free_port
from backend.settings_cli import EX_CONFIG
from media.retention import MIN_RETENTION_DAYS

ROOT = Path(__file__).resolve().parents[2]
# A shared database on another host: nothing needs to answer there, the checks come before any connection.
SHARED_DB = f"postgresql://fieldcase:pg-Secret-42@127.0.0.1:{free_port()}/fieldcase"


def _problems(**env: str) -> list[str]:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"FIELDCASE_INSTANCE_DIR": "/tmp/fieldcase-settings-test", **env})
    return refused.value.problems


@pytest.mark.parametrize(("name", "value", "line"), [
    ("FIELDCASE_DB_POOL_SIZE", "abc", "FIELDCASE_DB_POOL_SIZE=abc: not an integer"),
    ("FIELDCASE_DB_POOL_SIZE", "0", "FIELDCASE_DB_POOL_SIZE=0: must be ≥ 1"),
    ("FIELDCASE_ACCESS_TOKEN_TTL", "-60", "FIELDCASE_ACCESS_TOKEN_TTL=-60: must be ≥ 1"),
    ("FIELDCASE_REFRESH_TOKEN_TTL", "-1", "FIELDCASE_REFRESH_TOKEN_TTL=-1: must be ≥ 1"),
    ("FIELDCASE_RETENTION_DAYS", str(MIN_RETENTION_DAYS - 1),
     f"FIELDCASE_RETENTION_DAYS={MIN_RETENTION_DAYS - 1}: must be ≥ {MIN_RETENTION_DAYS} "
     "(the legal minimum for keeping evidence)"),
    ("FIELDCASE_DB_POOL_TIMEOUT", "soon", "FIELDCASE_DB_POOL_TIMEOUT=soon: not a number"),
    ("FIELDCASE_ADMISSION_WAIT", "nan", "FIELDCASE_ADMISSION_WAIT=nan: not a finite number"),
    ("FIELDCASE_TRUST_PROXY", "maybe", "FIELDCASE_TRUST_PROXY=maybe: not a boolean (1 or 0, true or false, yes or no)"),
    ("FIELDCASE_LOG_LEVEL", "loud", "FIELDCASE_LOG_LEVEL=loud: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ("FIELDCASE_LOG_FORMAT", "xml", "FIELDCASE_LOG_FORMAT=xml: must be one of auto, json, text"),
    ("FIELDCASE_JOBS", "celery", "FIELDCASE_JOBS=celery: must be one of inline, rq"),
    ("FIELDCASE_MULTIPART_PART_SIZE", "1048576",
     "FIELDCASE_MULTIPART_PART_SIZE=1048576: must be ≥ 5242880 (S3's part sizes: 5 MiB to 5 GiB)"),
    ("FIELDCASE_METRICS_PORT", "70000", "FIELDCASE_METRICS_PORT=70000: must be ≤ 65535"),
    ("FIELDCASE_S3_BUCKET", "My_Bucket",
     "FIELDCASE_S3_BUCKET=My_Bucket: not an S3 bucket name (3 to 63 lower-case letters, digits, dots and hyphens)"),
    ("FIELDCASE_REDIS_URL", "localhost:6379", "FIELDCASE_REDIS_URL=localhost:6379: not a URL of redis://, rediss://, "
     "unix://"),
    ("FIELDCASE_PASSWORD_KDF", "md5",
     "FIELDCASE_PASSWORD_KDF=md5: must be scrypt:N:r:p (N a power of two) or pbkdf2:sha256:ITERATIONS"),
    ("DATABASE_URL", "mysql://fieldcase:my-Secret-9@db/fc",
     "DATABASE_URL=mysql://fieldcase:***@db/fc: mysql is not supported: PostgreSQL or SQLite"),
])
def test_each_wrong_value_is_one_line_naming_its_variable(name, value, line):
    assert _problems(**{name: value}) == [line]


def test_every_wrong_value_is_reported_at_once_and_the_rules_between_settings_after():
    assert _problems(FIELDCASE_DB_POOL_SIZE="abc", FIELDCASE_DB_MAX_OVERFLOW="-1") == [
        "FIELDCASE_DB_POOL_SIZE=abc: not an integer", "FIELDCASE_DB_MAX_OVERFLOW=-1: must be ≥ 0"]
    assert _problems(FIELDCASE_ACCESS_TOKEN_TTL="3600", FIELDCASE_REFRESH_TOKEN_TTL="600") == [
        "FIELDCASE_REFRESH_TOKEN_TTL=600: must be longer than FIELDCASE_ACCESS_TOKEN_TTL (3600), or phones could "
        "not renew their access"]
    assert _problems(FIELDCASE_JOBS="rq") == [
        "FIELDCASE_JOBS=rq: needs FIELDCASE_REDIS_URL (e.g. redis://127.0.0.1:6379/0)"]


def test_good_values_are_typed_and_an_empty_variable_is_unset(tmp_path):
    s = Settings.from_env({"FIELDCASE_INSTANCE_DIR": str(tmp_path), "FIELDCASE_DB_POOL_SIZE": " 4 ",
                           "FIELDCASE_TRUST_PROXY": "yes", "FIELDCASE_LOG_LEVEL": "debug",
                           "FIELDCASE_RETENTION_DAYS": str(MIN_RETENTION_DAYS), "FIELDCASE_WITNESS_KEYS": "a, b,",
                           "FIELDCASE_S3_BUCKET": "", "FIELDCASE_REDIS_URL": "redis://127.0.0.1:6379/0"})
    assert (s.db_pool_size, s.trust_proxy, s.log_level, s.retention_days) == (4, True, "DEBUG", MIN_RETENTION_DAYS)
    assert s.witness_keys == ("a", "b") and s.s3_bucket == "" and s.jobs == "rq"  # a Redis URL means workers


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real command, in a process of its own, with only the environment given (and PATH)."""
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False, env={"PATH": os.environ.get("PATH", ""), **env})


def test_a_wrong_value_stops_the_command_before_it_starts_with_one_line_and_exit_78(tmp_path):
    done = _cli("db", "upgrade", FIELDCASE_INSTANCE_DIR=str(tmp_path / "inst"), FIELDCASE_DB_POOL_SIZE="abc",
                FIELDCASE_RETENTION_DAYS="90")
    assert done.returncode == EX_CONFIG == 78
    assert done.stderr.splitlines() == [
        "error: FIELDCASE_RETENTION_DAYS=90: must be ≥ 180 (the legal minimum for keeping evidence)",
        "error: FIELDCASE_DB_POOL_SIZE=abc: not an integer"]
    assert done.stdout == "" and not (tmp_path / "inst").exists()  # nothing started: no database was made


def test_an_unknown_name_is_a_warning_at_start_and_fails_config_check(tmp_path):
    env = {"FIELDCASE_INSTANCE_DIR": str(tmp_path / "inst"), "FIELDCASE_DB_POOLSIZE": "4",
           "FIELDCASE_TEST_DATABASE_URL": "tooling, not a setting", "FIELDCASE_LOG_FORMAT": "json"}
    started = _cli("db", "upgrade", **env)
    assert started.returncode == 0, started.stderr
    warning = json.loads(started.stderr.splitlines()[0])
    assert (warning["level"], warning["logger"]) == ("WARNING", "fieldcase.settings")
    assert warning["msg"] == ("FIELDCASE_DB_POOLSIZE is not a fieldcase setting (did you mean "
                              "FIELDCASE_DB_POOL_SIZE?); it is ignored")
    assert "FIELDCASE_TEST_DATABASE_URL" not in started.stderr

    checked = CliRunner().invoke(main, ["config", "check"], env=env)
    assert checked.exit_code == 1
    assert "warning: FIELDCASE_DB_POOLSIZE is not a fieldcase setting" in checked.output
    assert checked.output.rstrip().endswith("settings: 1 problem(s)")


def test_config_check_prints_every_setting_with_its_source_and_masks_secrets(tmp_path):
    env = {"FIELDCASE_INSTANCE_DIR": str(tmp_path / "inst"), "DATABASE_URL": SHARED_DB,
           "FIELDCASE_REDIS_URL": "redis://:redis-Secret-7@127.0.0.1:6379/0", "FIELDCASE_DB_POOL_SIZE": "4"}
    init_secrets(Settings.from_env(env))
    checked = CliRunner().invoke(main, ["config", "check", "--json"], env=env)
    assert checked.exit_code == 0, checked.output
    assert "pg-Secret-42" not in checked.output and "redis-Secret-7" not in checked.output
    report = json.loads(checked.output)
    rows = {row["variable"]: row for row in report["settings"]}
    assert set(rows) == {v.name for v in VARIABLES}
    assert rows["DATABASE_URL"]["value"].startswith("postgresql+psycopg://fieldcase:***@127.0.0.1:")
    assert rows["FIELDCASE_REDIS_URL"]["value"] == "redis://:***@127.0.0.1:6379/0"
    assert (rows["FIELDCASE_DB_POOL_SIZE"]["value"], rows["FIELDCASE_DB_POOL_SIZE"]["source"]) == ("4", "env")
    assert (rows["FIELDCASE_DB_MAX_OVERFLOW"]["value"], rows["FIELDCASE_DB_MAX_OVERFLOW"]["source"]) == ("10",
                                                                                                       "default")
    assert rows["FIELDCASE_JOBS"] == {"variable": "FIELDCASE_JOBS", "value": "rq", "type": "inline|rq",
                                      "source": "default (FIELDCASE_REDIS_URL is set)"}
    assert [(f["name"], f["state"]) for f in report["secret_files"]] == [
        ("jwt", "present (0600)"), ("custody", "present (0600)"), ("console", "present (0600)"),
        ("kek", "present (0600)")]

    text = CliRunner().invoke(main, ["config", "check"], env={**env, "FIELDCASE_DB_POOL_SIZE": "lots"})
    assert text.exit_code == 1 and "pg-Secret-42" not in text.output
    assert re.search(r"^FIELDCASE_DB_POOL_SIZE +lots +\[env\] +INVALID$", text.output, re.M)
    assert "error: FIELDCASE_DB_POOL_SIZE=lots: not an integer" in text.output


def test_a_shared_database_with_a_missing_secret_file_refuses_to_start_until_init_secrets(tmp_path):
    env = {"FIELDCASE_INSTANCE_DIR": str(tmp_path / "inst"), "DATABASE_URL": SHARED_DB,
           "FIELDCASE_JWT_SECRET_FILE": str(tmp_path / "shared" / "jwt.key")}
    settings = Settings.from_env(env)
    with pytest.raises(SettingsError) as refused:
        create_app(settings)
    assert [line.split(":")[0] for line in refused.value.problems] == [
        "FIELDCASE_JWT_SECRET_FILE", "FIELDCASE_CUSTODY_KEY_FILE", "FIELDCASE_INSTANCE_DIR", "FIELDCASE_KEK_FILE"]
    assert f"the secret file {tmp_path / 'shared' / 'jwt.key'} (signs access tokens) does not exist" \
        in refused.value.problems[0]
    assert not (tmp_path / "shared").exists() and not (tmp_path / "inst").exists()  # nothing made on the way

    served = _cli("serve", "--port", str(free_port()), "--workers", "1", **env)
    assert served.returncode == EX_CONFIG, served.stderr
    assert [line.split(":")[0] for line in served.stderr.splitlines()] == [
        "error", "error", "error", "error"]
    assert "error: FIELDCASE_JWT_SECRET_FILE: the secret file" in served.stderr
    assert "run `fieldcase init-secrets` once and copy the files to every host" in served.stderr

    made = CliRunner().invoke(main, ["init-secrets"], env=env)
    assert made.exit_code == 0, made.output
    assert made.output.count("made ") == 4 and "copy these files to every API and worker host" in made.output
    assert missing_secrets(settings) == []
    key = tmp_path / "shared" / "jwt.key"
    first = key.read_bytes()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(first) == 64
    again = CliRunner().invoke(main, ["init-secrets"], env=env)
    assert again.output.count("kept ") == 4 and key.read_bytes() == first  # never replaced


def test_the_embedded_sqlite_default_still_makes_its_keys_on_first_use(tmp_path):
    settings = Settings.from_env({"FIELDCASE_INSTANCE_DIR": str(tmp_path / "inst")})
    assert settings.database_url.startswith("sqlite:///") and missing_secrets(settings) == []
    app = create_app(settings)
    try:
        for name in ("jwt-secret.key", "custody-signing.key", "console-session.key", "data-kek.key"):
            assert stat.S_IMODE((tmp_path / "inst" / name).stat().st_mode) == 0o600, name
    finally:
        app.extensions["fieldcase"].db.dispose()


def test_the_readme_lists_every_variable_with_its_type():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = {m[1]: m[2] for m in re.finditer(r"^\| `([A-Z0-9_]+)` \| ([^|]+) \|", readme, re.M)}
    missing = [v.name for v in VARIABLES if v.name not in rows]
    assert missing == []
