"""`fieldcase demo` must stay a working proof: it plays the field day against the real server and checks it.

The demo brings its own server, SQLite file and temporary folder, so these
tests need no fixture; they run the same on the PostgreSQL leg of the suite.
"""

from __future__ import annotations

import fcntl
import os

import pytest
import requests
from click.testing import CliRunner

import backend.demo as demo
from backend import liveserver
from backend.cli import main
from backend.demo import people, scenario


def _run_demo() -> str:
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="session")
def demo_output(tmp_path_factory) -> str:
    """One run of `fieldcase demo` (8 s) for all the tests that read its report, however pytest-xdist shares them
    out: the first worker to ask runs it, under a lock, and the others read its report from the run's folder."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return _run_demo()
    shared = tmp_path_factory.getbasetemp().parent  # this run's folder, above each worker's own
    report = shared / "demo-output.txt"
    with open(shared / "demo-output.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not report.exists():
            report.write_text(_run_demo(), encoding="utf-8")
    return report.read_text(encoding="utf-8")


def test_given_a_clean_machine_when_the_demo_runs_then_it_exits_0_and_reports_one_merged_case(demo_output):
    out = demo_output
    assert "== The merged case (one case, two phones) ==" in out
    assert "from 张敏's phone: opened it" in out and "from 王芳's phone: merged into it" in out
    assert "西湖区明日之星培训中心" in out
    assert "officers: 张敏 Zhang Min (education), 李强 Li Qiang (market)" in out
    assert "finding [unlicensed]" in out and "finding [fire_safety]" in out
    assert "no answer (connection dropped after batch 1 was sent)" in out
    assert "retry: applied 4, duplicate 3, deferred 0" in out
    assert "张敏's phone, 3 clips and a scan imported at the office: applied 4, duplicate 0" in out
    assert "head seq 11" in out
    assert "[FAILED]" not in out
    assert out.rstrip().endswith("demo finished: OK")


def test_the_demo_uploads_the_files_resumes_a_dropped_upload_flags_a_mismatch_and_finds_the_coverage_gap(
        demo_output):
    out = demo_output
    evidence = out.split("== Evidence: uploaded, verified, purged (PROTOCOL §6) ==", 1)[1].split("\n\n", 1)[0]
    lines = evidence.splitlines()
    # Three photos and three clips verified and purged; the rewritten scan a mismatch, kept on the phone.
    verified = [line for line in lines if ", verified, purge_allowed true, purged from the phone" in line]
    assert len(verified) == 6
    assert sum("photo '" in line for line in verified) == 3
    assert sum("clip DSJ-Z8-0042 #" in line for line in verified) == 3
    (scan,) = [line for line in lines if line.startswith("  scan of the signed on-site record")]
    assert scan.endswith(", mismatch, purge_allowed false, KEPT on the phone")
    assert any("the phone reports: mismatch: the server received" in line for line in lines)
    assert any("the file on the phone now hashes to" in line for line in lines)
    # The dropped upload resumed from the server's offset with only the rest of the file.
    assert ("the line dropped after 1,572,864 of 3,145,728 bytes; HEAD answered Upload-Offset 1572864; "
            "the phone resumed with Content-Range bytes 1572864-3145727/3145728 (1,572,864 bytes)") in evidence
    # Photos: EXIF time and GPS agree with the declarations.
    exif = [line for line in lines if line.startswith("    EXIF: taken ")]
    assert len(exif) == 3 and all("(0.0 s from the declaration), GPS 0.0 m from it" in line for line in exif)
    assert all(line.endswith("flags: none") for line in exif)
    assert "the phones purged 6 file(s)" in evidence
    assert "kept: scan of the signed on-site record (现场检查笔录)" in evidence
    # Coverage: the window, the ratio and the one unexplained 45 s gap.
    coverage = out.split("== Body-camera coverage of 张敏's inspection (PROTOCOL §7) ==", 1)[1]
    assert "(540 s), clips of DSJ-Z8-0042 #1-#3" in coverage
    assert "covered 495.0 s, ratio 0.9167, status gaps" in coverage
    assert ": 45.0 s, NOT explained (no recording.interruption)" in coverage
    assert "clip numbers missing: none; hash chain breaks: none; unverified clips: none" in coverage
    for claim in ("all 6 photos and clips are verified, with purge_allowed",
                  "clip #3's upload dropped after 1572864 bytes and resumed from Upload-Offset 1572864",
                  "the scan rewritten after its declaration is a mismatch, not purgeable, and the phone reports it",
                  "the phones purged exactly the 6 verified files and kept the mismatched scan",
                  "the 3 photos' EXIF time and GPS agree with their declarations: no flags",
                  "exactly one gap: the 45 s between clips #2 and #3, not explained",
                  "coverage status gaps: 495 of 540 s covered"):
        assert f"[ok] {claim}" in out
    assert "[FAILED]" not in out and out.rstrip().endswith("demo finished: OK")


def test_the_demo_fleet_is_mixed_and_its_package_is_proven_in_both_suites(demo_output):
    """王芳's phone is an SM2 phone (the national algorithms) beside 张敏's Ed25519 one; the server keeps the custody
    log in both trees, and the custodian's package is checked in both with the published keys."""
    out = demo_output
    assert "her phone signs with SM2 and chains by SM3" in out
    for claim in ("王芳's phone is an SM2 phone: her 5 records are signed SM2SM3 and chained by SM3, in the same case "
                  "as 张敏's Ed25519 records",
                  "the package is proven in both custody trees, checked with both published keys: Ed25519 over "
                  "SHA-256, and SM2 over SM3 (its SM tree head, its leaves' proofs and its SM2 seal)"):
        assert f"[ok] {claim}" in out
    assert "SM tree head checked against the SM2 key given on the command line" in out
    assert '{"ts"' not in out  # the phones' log lines are in the report, not between its lines


def test_given_the_camera_was_never_off_when_the_demo_checks_coverage_then_the_gap_check_fails(monkeypatch, capsys):
    """The coverage checks are real: with clip #3 starting where #2 ended, there is no gap to find."""
    monkeypatch.setattr(scenario, "CLIPS", (*scenario.CLIPS[:2], (3, 340, 543, scenario.CLIPS[2][3])))

    code = demo.run()

    assert code == 1
    captured = capsys.readouterr()
    assert "[FAILED] exactly one gap: the 45 s between clips #2 and #3, not explained (got: [])" in captured.out
    assert "[FAILED] coverage status gaps: 495 of 540 s covered (got: {'status': 'complete'" in captured.out
    assert "[ok] all 6 photos and clips are verified, with purge_allowed" in captured.out


def test_given_the_second_phone_belongs_to_another_department_when_the_demo_runs_then_it_fails_and_says_why(
        monkeypatch, capsys):
    """The checks are real: an afternoon officer of market regulation gets that department's case, not a merge."""
    cast = tuple(p if p.username != "wang.fang" else people.Person(**{**p.__dict__, "department": "market"})
                 for p in people.CAST)
    monkeypatch.setattr(people, "CAST", cast)

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


def test_the_demo_ends_by_exporting_the_case_package_and_verifying_it_offline(demo_output):
    section = demo_output.split("== Evidence package, checked offline (PROTOCOL §8) ==", 1)[1].split("\n\n", 1)[0]
    lines = section.splitlines()
    assert any(line.startswith("陈静 (custodian) exported case-") for line in lines)
    good, bad = section.split("one-byte-changed.zip", 1)
    assert "tree head checked against the key given on the command line" in good
    assert "7 evidence items (6 files)" in good and "custody events: OK\n" in good
    assert "PROBLEM evidence" in bad and "the file was altered" in bad and "(exit status 1)" in bad


def test_the_demo_ends_with_the_day_in_figures_from_the_statistics_endpoint(demo_output):
    section = demo_output.split("== Statistics (GET /api/v1/stats as the admin, ", 1)[1].split("\n\n", 1)[0]
    lines = section.splitlines()
    assert lines[0].endswith(") ==")
    table = {line[:40].rstrip(): line[40:] for line in lines[1:] if not line.startswith("district ")}
    assert table["clues received / converted / rate"] == "1 / 1 / 1.0"
    assert table["cases opened"] == "2 (registered 2; education 1, market 1)"
    assert table["cases by category of findings"] == "fire_safety 1, unlicensed 1; without findings 1"
    assert table["cases closed / median days to close"] == "0 / -"
    # 张敏's clips leave a 45 s gap; 王芳's inspection had no body camera at all.
    assert table["inspections ended / fully recorded"] == "2 / 0 (share 0.0; gaps 1, none 1)"
    assert table["evidence verified / delay median, p90"].startswith("6 / ")
    assert table["evidence in mismatch"] == "1"
    assert table["records rejected / invalid"] == "0 / 0"
    assert [line for line in lines if line.startswith("district ")] == [
        "district 330106 西湖区: cases 2, inspections 2 (fully recorded 0), evidence verified 6 (mismatch 1), clues 1"]
    assert ("[ok] the statistics match the story: 2 cases opened (education 1, market 1), findings fire_safety 1, "
            "unlicensed 1, 0 of 2 ended inspections fully recorded, 6 items verified, 1 in mismatch, "
            "0 records rejected, 1 clue received and converted") in demo_output


def test_the_demo_links_the_hotline_clue_and_the_reviewer_reads_the_audit(demo_output):
    clue = demo_output.split("== The hotline clue ==", 1)[1].split("\n\n", 1)[0]
    assert "routed to education" in clue and "(existing case: true)" in clue
    public = clue.split("public page GET /api/v1/public/clues/", 1)[1]
    assert '"status":"case"' in public and '"case_status":"registered"' in public
    assert "13800000000" not in public and "陈女士" not in public and "培训中心" not in public
    audit = demo_output.split("== Reviewers' audit (周慧) ==", 1)[1].split("\n\n", 1)[0]
    assert "coverage_gap: 1 unexplained gap in the recording (45 s)" in audit
    assert "no_recording:" in audit and "evidence_mismatch:" in audit
    assert "still unreviewed: evidence_mismatch, no_recording" in audit
