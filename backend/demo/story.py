"""The story the phones and the people play against the server, step by step, in the order of the day.

The hotline call, the offline morning and afternoon at the centre, the pushes back in signal, the files at
the office, the clue linked at the desk, the reviewer's audit and the custodian's package: each step acts as
the person would, over real HTTP, keeps the answers on the `FieldDay`, and hands them to its checks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from backend.core.crypto import INTL
from backend.demo import checks, scenario
from backend.demo.day import FieldDay, StoryFailed, Visit
from backend.demo.flaky_line import FlakyLine
from backend.demo.people import PASSWORD
from backend.demo.synthetic import rewrite_scan, tamper_one_photo, write_clip, write_scan
from backend.demo.wording import local_time
from sync.client import SHANGHAI


def play(day: FieldDay) -> None:
    """The hotline call, the two offline visits (and 李强's own case), then the pushes and pulls in signal."""
    token = day.http.post(day.base + "/api/v1/auth/token", timeout=15,
                          json={"username": "admin", "password": PASSWORD})
    if not token.ok:
        raise StoryFailed(f"admin login answered {token.status_code}")
    day.admin_headers = {"Authorization": "Bearer " + token.json()["access_token"]}
    zhang, wang, li = (day.cast[u] for u in ("zhang.min", "wang.fang", "li.qiang"))
    now = datetime.now(SHANGHAI).replace(microsecond=0)
    hotline(day)

    # Offline, in the morning: 张敏 (education) and 李强 (market) inspect together on 张敏's phone. The
    # inspection's times are explicit: its window (start `at` to end `at`) is what the body camera must cover.
    phone = day.enrol_phone("zhang.min", now - timedelta(hours=6))
    day.window_start = start = now.replace(second=0) - timedelta(hours=6) + timedelta(minutes=2)
    day.window_end = start + timedelta(seconds=scenario.INSPECTION_SECONDS)
    cid = phone.open_case(scenario.CENTRE,
                          summary="群众举报无证开展学科类培训 (complaint: unlicensed academic tutoring)",
                          at=start - timedelta(minutes=2))
    iid = phone.start_inspection(cid, officers=[zhang.id, li.id], location=scenario.HERE, at=start)
    classroom = day.take_photo("zhang.min", iid, "classroom, 23 pupils", (150, 60, 50), start + timedelta(seconds=90))
    phone.add_finding(iid, "unlicensed", "未取得办学许可证, 现场 23 名学生上数学课 "
                      "(no school licence; 23 pupils in a maths class)", evidence=[classroom],
                      at=start + timedelta(seconds=150))
    exit_photo = day.take_photo("zhang.min", iid, "emergency exit blocked", (60, 60, 150),
                                start + timedelta(seconds=250))
    phone.add_finding(iid, "fire_safety", "安全出口被课桌堵塞 (emergency exit blocked by desks)",
                      evidence=[exit_photo], at=start + timedelta(seconds=300))
    phone.end_inspection(iid, "violation_found", notes="责令立即停止培训 (ordered to stop teaching at once)",
                         at=day.window_end)
    day.morning = Visit(phone, cid, iid, len(phone.outbox()))
    day.tell_queued("morning", "zhang.min", "opened a case, inspected with 李强, 2 photos, 2 findings, ended")

    # 李强's phone opens market regulation's own case for the same centre.
    li_phone = day.enrol_phone("li.qiang", now - timedelta(hours=5))
    day.market_cid = li_phone.open_case(scenario.CENTRE, summary="无照经营 (operating without a business licence)")
    day.tell_queued("morning", "li.qiang", "opened market regulation's own case for the centre")

    # Offline, in the afternoon: 王芳 (education) comes back with 李强; her phone never heard of the case. Hers is
    # an SM2 phone (the national algorithms): the same case, the same package, another suite.
    phone = day.enrol_phone("wang.fang", now - timedelta(hours=2), suite="sm")
    cid = phone.open_case(scenario.CENTRE, summary="复查: 停止令执行情况 (follow-up on the stop order)")
    iid = phone.start_inspection(cid, officers=[wang.id, li.id], location=scenario.HERE)
    notice = day.take_photo("wang.fang", iid, "class still running", (50, 130, 60), phone.clock())
    phone.add_finding(iid, "unlicensed", "停止令下达后仍在上课 (still teaching after the stop order)",
                      evidence=[notice])
    phone.end_inspection(iid, "rectification_ordered", notes="限期整改 (rectify by the deadline)")
    day.afternoon = Visit(phone, cid, iid, len(phone.outbox()))
    day.tell_queued("afternoon", "wang.fang", "opened a case (no signal: she cannot know of 张敏's), "
                    "inspected with 李强, 1 photo, 1 finding, ended; her phone signs with SM2 and chains by SM3")
    day.echo("")
    day.echo("back in signal: push (张敏's first push is cut off after its first batch), then pull")

    # Back in signal. 张敏's push is cut off after its first batch reached the server; then retried.
    cut = day.push("zhang.min", f"cut off after batch 1 (batches of {scenario.CUT_BATCH})",
                   batch_size=scenario.CUT_BATCH, fail_after_batches=1)
    checks.check_cut_off(day, cut)
    day.retry = day.push("zhang.min", "retry", batch_size=scenario.CUT_BATCH)
    day.wang_push = day.push("wang.fang", "push", batch_size=scenario.CUT_BATCH)
    day.li_push = day.push("li.qiang", "push")
    for phone in day.phones.values():
        phone.pull()


def hotline(day: FieldDay) -> None:
    """A parent's call to the hotline becomes a clue, routed by category; the parent gets a tracking code."""
    r = day.http.post(day.base + "/api/v1/clues", headers=day.admin_headers, timeout=15, json={
        "source": "hotline", "institution": scenario.CENTRE, "category": "unlicensed",
        "complainant": scenario.COMPLAINANT,
        "description": "家长来电: 该中心无证开展学科类培训 (a parent reports unlicensed academic tutoring)"})
    if r.status_code != 201:
        raise StoryFailed(f"filing the hotline clue answered {r.status_code}: {r.text[:200]}")
    day.clue = r.json()
    day.echo(f"hotline, before the field day: a parent's complaint is clue {day.clue['id']}, routed to "
             f"{day.clue['department']}; the parent's tracking code is {day.clue['tracking_code']}")


def office(day: FieldDay) -> None:
    """Dock the body camera, scan the signed on-site record, upload everything, purge what the server allows."""
    phone = day.phones["zhang.min"]
    iid, start = day.morning.inspection_id, day.window_start
    at = day.window_end + timedelta(minutes=40)
    camera, clips = scenario.CAMERA, scenario.CLIPS
    dock = day.workdir / "dock" / camera
    dock.mkdir(parents=True)
    day.clips = {}
    previous: str | None = None
    for n, (index, begin, finish, size) in enumerate(clips):
        path = dock / f"CLIP{index:04d}.MP4"
        write_clip(path, size, seconds=finish - begin)
        clip: dict[str, Any] = {"camera_serial": camera, "clip_index": index,
                                "started_at": start + timedelta(seconds=begin),
                                "ended_at": start + timedelta(seconds=finish)}
        if previous is not None:
            clip["prev_sha256"] = previous  # the camera chains each clip to the one before
        eid = phone.capture_evidence(path, "video", "video/mp4", inspection_id=iid, captured_at=clip["started_at"],
                                     location=scenario.HERE, clip=clip, at=at + timedelta(seconds=5 * n))
        previous = INTL.hexdigest(path.read_bytes())
        day.clips[index] = eid
        day.items[eid] = ("zhang.min", f"clip {camera} #{index} {local_time(clip['started_at'])}-"
                                       f"{local_time(clip['ended_at'])}")
    scan_path = day.workdir / "scans" / "现场检查笔录.pdf"
    scan_path.parent.mkdir()
    write_scan(scan_path)
    scanned = at + timedelta(minutes=2)
    day.scan = phone.capture_evidence(scan_path, "document", "application/pdf", inspection_id=iid,
                                      captured_at=scanned, at=scanned)
    day.items[day.scan] = ("zhang.min", "scan of the signed on-site record (现场检查笔录)")
    rewrite_scan(scan_path)  # after it was declared
    day.office_push = day.push("zhang.min", "3 clips and a scan imported at the office")
    day.echo("")
    day.echo(f"back at the office: 张敏 docks body camera {camera} ({len(clips)} clips) and scans the signed "
             "on-site record (the scanning app rewrites it after it was declared); pushed, then both phones "
             f"upload their files (the line drops once, half way through clip #{clips[-1][0]})")

    # Upload. The line drops half way through the biggest clip; the phone resumes it in the same call.
    big_index, _, _, big_size = clips[-1]
    day.line = FlakyLine(f"/api/v1/evidence/{day.clips[big_index]}/content", big_size // 2)
    phone.session.mount(day.base, day.line)
    day.uploads = {}
    for username in ("zhang.min", "wang.fang"):
        for result in day.phones[username].upload_pending():
            day.uploads[result["evidence_id"]] = result
    day.purged = {}
    for p in day.phones.values():
        for item in p.purgeable():
            if p.purge(item["evidence_id"]):
                day.purged[item["evidence_id"]] = item
    day.kept = {f["evidence_id"]: f for p in day.phones.values() for f in p.evidence_files()
                if f["status"] != "purged"}
    day.server_items = {eid: day.get(f"/api/v1/evidence/{eid}") for eid in day.items}
    day.coverage = day.get(f"/api/v1/inspections/{iid}/coverage")
    checks.check_office(day)


def clue_to_case(day: FieldDay) -> None:
    """Back at the desk: the clue is linked to the case the phones opened; the parent looks it up."""
    if not getattr(day, "case_id", None):
        return
    r = day.http.post(day.base + f"/api/v1/clues/{day.clue['id']}/case", headers=day.admin_headers,
                      json={}, timeout=15)
    if r.status_code != 201:
        raise StoryFailed(f"turning the clue into a case answered {r.status_code}: {r.text[:200]}")
    day.linked = r.json()
    public = day.http.get(day.base + f"/api/v1/public/clues/{day.clue['tracking_code']}", timeout=15)
    day.public_clue = public.json() if public.ok else {"error": public.status_code}
    day.public_text = public.text
    checks.check_clue(day, public_ok=public.ok)


def audit(day: FieldDay) -> None:
    """周慧 reads the reviewers' audit of the day and marks the coverage gap reviewed."""
    if not getattr(day, "case_id", None):
        return
    headers = day.headers_for("zhou.hui")
    date = day.window_start.astimezone(SHANGHAI).date().isoformat()
    issues = day.http.get(day.base + "/api/v1/audit/issues", headers=headers, timeout=30,
                          params={"from": date, "page_size": 100})
    if not issues.ok:
        raise StoryFailed(f"the audit answered {issues.status_code}: {issues.text[:200]}")
    day.issues = issues.json()["items"]
    gap = next((i for i in day.issues if i["kind"] == "coverage_gap"), None)
    day.review = None
    if gap is not None:
        comment = "摄像机换电池 45 秒, 已约谈当事执法人员 (battery change; officer interviewed)"
        r = day.http.post(day.base + f"/api/v1/audit/issues/{gap['key']}/reviews", headers=headers, timeout=15,
                          json={"comment": comment})
        day.review = r.json() if r.status_code == 201 else {"error": r.status_code}
    left = day.http.get(day.base + "/api/v1/audit/issues", headers=headers, timeout=30,
                        params={"from": date, "reviewed": "false", "page_size": 100}).json()["items"]
    day.unreviewed = [i["kind"] for i in left]
    checks.check_audit(day)


def archive(day: FieldDay) -> None:
    """The custodian exports the case package; `fieldcase verify-package` checks it, and a tampered copy."""
    if not getattr(day, "case_id", None):
        return
    headers = day.headers_for("chen.jing")
    key = day.http.get(day.base + "/api/v1/custody/public-key", timeout=15).json()
    day.server_key = key["public_key"]
    sm_key = day.http.get(day.base + "/api/v1/custody/public-key", params={"suite": "sm"}, timeout=15).json()
    day.server_sm_key = sm_key["public_key"]
    folder = day.workdir / "package"
    folder.mkdir()
    day.package = folder / f"case-{day.case_id}.zip"
    with day.http.get(day.base + f"/api/v1/cases/{day.case_id}/package", headers=headers, stream=True,
                      params={"purpose": scenario.PACKAGE_PURPOSE}, timeout=60) as resp:
        if not resp.ok:
            raise StoryFailed(f"the package export answered {resp.status_code}: {resp.text[:200]}")
        with day.package.open("wb") as out:
            for chunk in resp.iter_content(64 * 1024):
                out.write(chunk)
    with zipfile.ZipFile(day.package) as zf:
        day.package_names = zf.namelist()
        day.manifest = json.loads(zf.read("manifest.json"))
    day.verdict = _verify_package(day, day.package)
    day.tampered = folder / f"case-{day.case_id}-one-byte-changed.zip"
    day.tampered_name = tamper_one_photo(day.package, day.tampered)
    day.tampered_verdict = _verify_package(day, day.tampered)
    day.exported = [e for eid in day.items for e in day.get(f"/api/v1/evidence/{eid}/custody")["events"]
                    if e["action"] == "exported"]
    checks.check_archive(day)


def _verify_package(day: FieldDay, path: Path) -> subprocess.CompletedProcess[str]:
    """Exactly what a legal reviewer runs: the CLI in a fresh process, no server, no database."""
    return subprocess.run([sys.executable, "-m", "backend", "verify-package", str(path),
                           "--public-key", day.server_key, "--sm-public-key", day.server_sm_key],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "DATABASE_URL": "", "FIELDCASE_INSTANCE_DIR": str(day.workdir)})
