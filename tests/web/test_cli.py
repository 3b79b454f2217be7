"""The `fieldcase` command: creating officers, importing institutions, and serving for real."""

from __future__ import annotations

import json

import requests
from click.testing import CliRunner

from backend.cli import main
from backend.liveserver import running_server
from tests.casework.test_institutions import CSV


def _env(settings) -> dict[str, str]:
    return {"DATABASE_URL": settings.database_url, "FIELDCASE_INSTANCE_DIR": str(settings.instance_dir)}


def _create(settings, *extra: str):
    args = ["create-officer", "--username", "chief", "--password", "a long enough password", "--name", "陈队",
            "--region", "330100", "--department", "education", "--roles", "officer,admin",
            "--cert-number", "ZJ-CLI-1", "--cert-valid-until", "2030-12-31", *extra]
    return CliRunner().invoke(main, args, env=_env(settings))


def test_create_officer_from_flags_then_log_in(app, settings, client):
    result = _create(settings)
    assert result.exit_code == 0, result.output
    made = json.loads(result.output)
    assert made["roles"] == ["officer", "admin"]
    r = client.post("/api/v1/auth/token", json={"username": "chief", "password": "a long enough password"})
    assert r.status_code == 200


def test_create_officer_without_a_terminal_needs_every_flag(app, settings):
    result = CliRunner().invoke(main, ["create-officer", "--username", "x"], env=_env(settings))
    assert result.exit_code == 1
    assert "--password is required" in result.output


def test_create_officer_reports_domain_errors(app, settings):
    assert _create(settings).exit_code == 0
    again = _create(settings)
    assert again.exit_code == 1 and "taken" in again.output


def test_import_institutions_command_lists_bad_rows(app, settings, tmp_path, client):
    assert _create(settings).exit_code == 0
    path = tmp_path / "institutions.csv"
    path.write_text(CSV, encoding="utf-8")
    result = CliRunner().invoke(main, ["import-institutions", str(path), "--as", "chief"], env=_env(settings))
    assert result.exit_code == 2
    assert "line 3:" in result.output and "line 4:" in result.output and "line 5:" in result.output
    assert "created 2, updated 0, rejected 3" in result.output


def test_seed_reference_is_idempotent(app, settings):
    result = CliRunner().invoke(main, ["seed-reference"], env=_env(settings))
    assert result.exit_code == 0
    assert "regions 0, departments 0, agencies 0, categories 0" in result.output


def test_serve_runs_the_api_under_gunicorn(app, settings, tmp_path):
    assert _create(settings).exit_code == 0
    with running_server(_env(settings), workers=2, log_path=tmp_path / "server.log") as base:
        token = requests.post(base + "/api/v1/auth/token",
                              json={"username": "chief", "password": "a long enough password"}, timeout=10)
        assert token.status_code == 200
        me = requests.get(base + "/api/v1/me", headers={"Authorization": "Bearer " + token.json()["access_token"]},
                          timeout=10)
        assert me.json()["username"] == "chief"
        assert requests.get(base + "/api/v1/openapi.json", timeout=10).status_code == 200
    assert "Booting worker" in (tmp_path / "server.log").read_text()


def test_serve_with_migrate_upgrades_an_empty_database_first(fresh_database_url, tmp_path):
    env = {"DATABASE_URL": fresh_database_url(), "FIELDCASE_INSTANCE_DIR": str(tmp_path / "inst")}
    assert CliRunner().invoke(main, ["init-secrets"], env=env).exit_code == 0  # on PostgreSQL: made explicitly
    with running_server(env, workers=1, log_path=tmp_path / "server.log", args=("--migrate",)) as base:
        assert requests.get(base + "/api/v1/health", timeout=10).json()["status"] == "ready"
    assert "upgrading database schema from empty" in (tmp_path / "server.log").read_text()
