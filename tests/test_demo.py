"""`fieldcase demo` must stay a working proof: it plays the field day against the real server and checks it.

The demo brings its own server, SQLite file and temporary folder, so these
tests need no fixture; they run the same on the PostgreSQL leg of the suite.
"""

from __future__ import annotations

import requests
from click.testing import CliRunner

import backend.demo as demo
from backend import liveserver
from backend.cli import main


def test_given_a_clean_machine_when_the_demo_runs_then_it_exits_0_and_reports_one_merged_case():
    result = CliRunner().invoke(main, ["demo"])

    assert result.exit_code == 0, result.output
    out = result.output
    assert "== The merged case (one case, two phones) ==" in out
    assert "from 张敏's phone: opened it" in out and "from 王芳's phone: merged into it" in out
    assert "西湖区明日之星培训中心" in out
    assert "officers: 张敏 Zhang Min (education), 李强 Li Qiang (market)" in out
    assert "finding [unlicensed]" in out and "finding [fire_safety]" in out
    assert "no answer (connection dropped after batch 1 was sent)" in out
    assert "retry: applied 4, duplicate 3, deferred 0" in out
    assert "head seq 7" in out
    assert "[FAILED]" not in out
    assert out.rstrip().endswith("demo finished: OK")


def test_given_the_second_phone_belongs_to_another_department_when_the_demo_runs_then_it_fails_and_says_why(
        monkeypatch, capsys):
    """The checks are real: an afternoon officer of market regulation gets that department's case, not a merge."""
    cast = tuple(p if p.username != "wang.fang" else demo.Person(**{**p.__dict__, "department": "market"})
                 for p in demo.CAST)
    monkeypatch.setattr(demo, "CAST", cast)

    code = demo.run()

    assert code == 1
    captured = capsys.readouterr()
    assert "[FAILED] 王芳's case.open answered refs.merged == true (got: " in captured.out
    assert "demo FAILED:" in captured.err
    assert "王芳's phone resolves its own case id to the same case" in captured.err
    assert "demo finished: OK" not in captured.out


def test_given_a_slow_first_health_answer_when_the_server_starts_then_it_keeps_waiting(monkeypatch, tmp_path):
    """A worker still loading on a busy machine answers late; that is "not ready yet", not a failed start."""
    real_get = requests.get
    probes: list[str] = []

    def slow_first_answer(url, **kwargs):
        probes.append(url)
        if len(probes) == 1:
            raise requests.ReadTimeout("read timed out (simulated busy machine)")
        return real_get(url, **kwargs)

    monkeypatch.setattr(liveserver.requests, "get", slow_first_answer)
    env = {"FIELDCASE_INSTANCE_DIR": str(tmp_path / "instance"), "DATABASE_URL": ""}

    with liveserver.running_server(env, workers=1, log_path=tmp_path / "server.log") as base:
        assert real_get(base + "/api/v1/health", timeout=10).ok
