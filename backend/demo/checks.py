"""What the story promises, checked against the server's answers and its database.

A demo that only printed would hide a broken merge, a record applied twice or a lost file behind a cheerful
report. Each function here turns one step's answers into claims on `day.checks`, each with what actually
happened when it did not come true; `fieldcase demo` fails when any claim fails.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from backend.core.crypto import SM
from backend.demo import scenario
from backend.demo.day import FieldDay
from backend.demo.wording import counts, local_time
from sync.client import SHANGHAI
from sync.jws import canonical_b64decode


def _when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def check_cut_off(day: FieldDay, cut: dict[str, Any] | None) -> None:
    """Right after 张敏's first push was cut off: part of it reached the server, the phone kept it all."""
    c, cut_batch = day.checks, scenario.CUT_BATCH
    c.expect(cut is None, "the first push of 张敏's phone was cut off")
    rows, _, _ = day.ledger(day.morning.phone.device_id or "")
    c.expect(rows == cut_batch and len(day.morning.phone.outbox()) == day.morning.records,
             f"the cut-off push left {cut_batch} records on the server and the whole outbox "
             "on the phone", f"{rows} ledgered, outbox {len(day.morning.phone.outbox())}")


def check_sync(day: FieldDay) -> None:
    """After the pushes and pulls: every record once in the ledger, one education case, market's own case."""
    c, cut_batch = day.checks, scenario.CUT_BATCH
    retry, wang_push = day.retry or {}, day.wang_push or {}
    c.expect(retry.get("counts") == {"duplicate": cut_batch, "applied": day.morning.records - cut_batch},
             f"the retry answered {cut_batch} duplicates and applied the other "
             f"{day.morning.records - cut_batch}", retry.get("counts"))
    c.expect(wang_push.get("counts") == {"applied": day.afternoon.records},
             f"王芳's {day.afternoon.records} records were all applied", wang_push.get("counts"))
    opened = next((r for r in wang_push.get("results", []) if r.get("seq") == 1), {})
    c.expect((opened.get("refs") or {}).get("merged") is True,
             "王芳's case.open answered refs.merged == true", opened.get("refs"))
    day.case_id = day.morning.phone.server_case_id(day.morning.client_case_id)
    c.expect(bool(day.case_id), "张敏's phone knows the server's case id")
    c.expect(day.afternoon.phone.server_case_id(day.afternoon.client_case_id) == day.case_id,
             "王芳's phone resolves its own case id to the same case")
    c.expect(day.morning.phone.server_case_id(day.afternoon.client_case_id) == day.case_id,
             "after pulling, 张敏's phone resolves 王芳's case id too (case_alias)")
    for username, phone in day.phones.items():
        rows, ops, statuses = day.ledger(phone.device_id or "")
        made = len(phone.records())
        c.expect(rows == ops == made and not phone.outbox(),
                 f"{day.cast[username].name}'s {made} record(s) each in the ledger exactly once, "
                 "outbox empty", f"{rows} rows, {ops} ops, outbox {len(phone.outbox())}")
    if not day.case_id:
        return
    day.case = case = day.get(f"/api/v1/cases/{day.case_id}")
    edu_cases = day.get(f"/api/v1/cases?institution_id={case['institution']['id']}&department=education")
    c.expect(edu_cases["total"] == 1, "the education bureau has ONE case for the centre", edu_cases["total"])
    c.expect({a["client_case_id"] for a in case["aliases"]}
             == {day.morning.client_case_id, day.afternoon.client_case_id},
             "both phones' case ids are aliases of it", case["aliases"])
    inspections = {i["id"]: i for i in case["inspections"]}
    c.expect(set(inspections) == {day.morning.inspection_id, day.afternoon.inspection_id},
             "both inspections are attached to it", sorted(inspections))
    c.expect(all(i["flags"] == [] for i in inspections.values()),
             "no inspection is flagged (two certified officers each, clocks fine)",
             {k: v["flags"] for k, v in inspections.items()})
    c.expect(len(case["evidence"]) == 3 and all(e["status"] == "declared" for e in case["evidence"]),
             "three photos are declared on the case", [e["status"] for e in case["evidence"]])
    _check_sm2_phone(day)
    market = day.phones["li.qiang"].server_case_id(day.market_cid)
    c.expect(bool(market) and market != day.case_id,
             "market regulation keeps its own case (PROTOCOL §4 merges within a department)", market)
    day.market_case_id = market


def _check_sm2_phone(day: FieldDay) -> None:
    """王芳's phone signs in the national algorithms, beside 张敏's Ed25519 phone, in the same case."""
    chain = day.chain(day.afternoon.phone.device_id or "")
    algs = {json.loads(canonical_b64decode(jws.split(".")[0]))["alg"] for jws, _ in chain}
    by_sm3 = all(link == SM.hexdigest(jws.encode("ascii")) for jws, link in chain)
    day.checks.expect(len(chain) == day.afternoon.records and algs == {"SM2SM3"} and by_sm3,
                      f"王芳's phone is an SM2 phone: her {day.afternoon.records} records are signed SM2SM3 and "
                      "chained by SM3, in the same case as 张敏's Ed25519 records",
                      {"records": len(chain), "algs": sorted(algs), "chained by SM3": by_sm3})


def check_office(day: FieldDay) -> None:
    """The office's files: verified and purged, the dropped upload resumed, the scan a mismatch, the gap found."""
    c, start, clips, gap_s, seconds = (day.checks, day.window_start, scenario.CLIPS, scenario.GAP,
                                       scenario.INSPECTION_SECONDS)
    push = day.office_push or {}
    c.expect(push.get("counts") == {"applied": len(clips) + 1} and not day.phones["zhang.min"].outbox(),
             f"张敏's {len(clips) + 1} office records ({len(clips)} clips, 1 scan) were applied",
             push.get("counts"))
    good = [eid for eid in day.items if eid != day.scan]
    wrong = {day.items[e][1]: (day.uploads.get(e), day.server_items[e]["status"]) for e in good
             if day.uploads.get(e) != {"evidence_id": e, "status": "verified", "purge_allowed": True}
             or day.server_items[e]["status"] != "verified" or not day.server_items[e]["purge_allowed"]}
    c.expect(not wrong, f"all {len(good)} photos and clips are verified, with purge_allowed", wrong)
    size = clips[-1][3]
    cut = size // 2
    c.expect(day.line.puts == [(None, cut), (f"bytes {cut}-{size - 1}/{size}", size - cut)]
             and day.line.probes[-1:] == [cut],
             f"clip #{clips[-1][0]}'s upload dropped after {cut} bytes and resumed from Upload-Offset {cut}: "
             f"only the other {size - cut} bytes were sent again",
             {"puts": day.line.puts, "probes": day.line.probes})
    scan, server = day.uploads.get(day.scan) or {}, day.server_items[day.scan]
    c.expect(scan.get("status") == "mismatch" and scan.get("purge_allowed") is False
             and str(scan.get("error", "")).startswith("mismatch") and server["status"] == "mismatch"
             and server["purge_allowed"] is False,
             "the scan rewritten after its declaration is a mismatch, not purgeable, and the phone reports it",
             {"phone": scan, "server": server["status"]})
    kept_path = Path(day.kept[day.scan]["path"]) if day.scan in day.kept else None
    c.expect(set(day.purged) == set(good) and set(day.kept) == {day.scan} and kept_path is not None
             and kept_path.exists() and not any(Path(i["path"]).exists() for i in day.purged.values()),
             f"the phones purged exactly the {len(good)} verified files and kept the mismatched scan",
             {"purged": len(day.purged), "kept": [day.items.get(e, ("", e))[1] for e in day.kept]})
    photos = {eid: day.server_items[eid] for eid, (_, what) in day.items.items() if what.startswith("photo")}
    c.expect(all(p["flags"] == [] and (p["media_info"] or {}).get("time_difference_s") == 0
                 and (p["media_info"] or {}).get("distance_m", 1e9) < 5 for p in photos.values()),
             f"the {len(photos)} photos' EXIF time and GPS agree with their declarations: no flags",
             {day.items[e][1]: (p["flags"], p["media_info"]) for e, p in photos.items()})
    cov = day.coverage
    window = (_when(cov["window"]["start"]), _when(cov["window"]["end"]))
    c.expect(window == (start, day.window_end),
             f"the coverage window is the inspection's, {local_time(start)}-{local_time(day.window_end)}",
             cov["window"])
    gap = (start + timedelta(seconds=gap_s[0]), start + timedelta(seconds=gap_s[1]))
    c.expect([(_when(g["start"]), _when(g["end"]), g["seconds"], g["explained"], g.get("reason"))
              for g in cov["gaps"]] == [(*gap, float(gap_s[1] - gap_s[0]), False, None)],
             f"exactly one gap: the {gap_s[1] - gap_s[0]} s between clips #2 and #3, not explained", cov["gaps"])
    covered = seconds - (gap_s[1] - gap_s[0])
    c.expect(cov["status"] == "gaps" and cov["covered_seconds"] == covered
             and cov["ratio"] == round(covered / seconds, 4),
             f"coverage status gaps: {covered} of {seconds} s covered",
             {k: cov[k] for k in ("status", "covered_seconds", "ratio")})
    c.expect(not (cov["clip_index_gaps"] or cov["clip_chain_breaks"] or cov["unverified_clips"] or cov["flags"]),
             "no clip is missing, unverified, flagged or out of the camera's hash chain",
             {k: cov[k] for k in ("clip_index_gaps", "clip_chain_breaks", "unverified_clips", "flags")})


def check_clue(day: FieldDay, public_ok: bool) -> None:
    """The clue went to education and onto the merged case; the public page shows no personal data."""
    c = day.checks
    c.expect(day.clue["department"] == "education" and day.linked["existing"] is True
             and day.linked["case"]["id"] == day.case_id and day.linked["clue"]["status"] == "case",
             "the hotline clue was routed to education and linked to the merged case, not a new one",
             {k: day.linked.get(k) for k in ("existing",)} | {"case": day.linked.get("case", {}).get("id")})
    leaked = [v for v in (*scenario.COMPLAINANT.values(), scenario.CENTRE["name"]) if v in day.public_text]
    c.expect(public_ok and day.public_clue["status"] == "case" and day.public_clue["case_status"] == "registered"
             and not leaked,
             "the parent's tracking code shows status case (registered) on the public page, "
             "with no name, phone number or institution", {"public": day.public_clue, "leaked": leaked})


def check_audit(day: FieldDay) -> None:
    """The audit lists the day's three problems, and the reviewed gap leaves the unreviewed list."""
    c = day.checks
    kinds = {(i["kind"], link["id"]) for i in day.issues for link in i["links"]
             if link["rel"] in ("inspection", "evidence")}
    expected = {("coverage_gap", day.morning.inspection_id), ("no_recording", day.afternoon.inspection_id),
                ("evidence_mismatch", day.scan)}
    c.expect(expected <= kinds, "the audit shows 张敏's coverage gap, 王芳's inspection with no recording at all "
             "and the mismatched scan", sorted(kinds))
    c.expect(bool(day.review) and (day.review or {}).get("reviewed") is True
             and "coverage_gap" not in day.unreviewed,
             "周慧's review of the gap is logged and the gap leaves the unreviewed list",
             {"review": day.review, "unreviewed": day.unreviewed})


def check_archive(day: FieldDay) -> None:
    """The package holds what it should, verifies offline, its tampered copy does not; the export is in custody."""
    c, verdict, tampered = day.checks, day.verdict, day.tampered_verdict
    files = [n for n in day.package_names if n.startswith("files/")]
    c.expect({"manifest.json", "evidence-list.csv", "evidence-list.html"} <= set(day.package_names)
             and len(files) == len(day.items) - 1,
             f"the package holds the manifest, the evidence list (CSV and HTML) and the {len(day.items) - 1} "
             "verified files (the mismatched scan is listed, its bytes are not the evidence)",
             sorted(day.package_names))
    c.expect(verdict.returncode == 0 and verdict.stdout.rstrip().endswith(": OK"),
             "fieldcase verify-package accepts the package with the server's published key",
             (verdict.returncode, verdict.stdout[-300:], verdict.stderr[-300:]))
    sm = day.manifest.get("custody", {}).get("sm") or {}
    c.expect(verdict.returncode == 0 and bool(sm.get("tree_head")) and "SM tree head (SM3, SM2) at size" in
             verdict.stdout and "WARNING" not in verdict.stdout,
             "the package is proven in both custody trees, checked with both published keys: Ed25519 over "
             "SHA-256, and SM2 over SM3 (its SM tree head, its leaves' proofs and its SM2 seal)",
             (sorted(sm), verdict.stdout[-400:]))
    c.expect(tampered.returncode == 1 and "PROBLEM" in tampered.stdout
             and day.tampered_name.rsplit("/", 1)[-1] in tampered.stdout,
             f"a copy with one byte of {day.tampered_name} changed fails verification, naming the file",
             (tampered.returncode, tampered.stdout[-300:]))
    c.expect(len(day.exported) == len(day.items)
             and all(e.get("purpose") == scenario.PACKAGE_PURPOSE and e["actor"] == day.cast["chen.jing"].id
                     for e in day.exported),
             "the export is a custody event of every item, with who asked and why",
             [(e["actor"], e.get("purpose")) for e in day.exported])


def check_statistics(day: FieldDay) -> None:
    """The admin's `GET /api/v1/stats` for the story's day(s), checked against what the story itself did.

    The expected figures come from the story's own answers (the cases, their findings, each inspection's
    own coverage answer, the evidence statuses, the push counts), so the check shows the statistics agree
    with the rest of the server rather than with numbers written down here.
    """
    if not (getattr(day, "case_id", None) and getattr(day, "market_case_id", None)):
        return
    first = day.window_start.astimezone(SHANGHAI).date()
    last = datetime.now(SHANGHAI).date()
    day.stats = day.get(f"/api/v1/stats?from={first.isoformat()}&to={last.isoformat()}")
    market = day.get(f"/api/v1/cases/{day.market_case_id}")
    departments = Counter((day.case["department"], market["department"]))
    categories = Counter({f["category"] for i in day.case["inspections"] for f in i["findings"]})
    ended = [i["id"] for i in day.case["inspections"] if i["ended_at"]]
    recording = Counter(day.get(f"/api/v1/inspections/{iid}/coverage")["status"] for iid in ended)
    recorded = recording["complete"] + recording["explained"]
    statuses = Counter(item["status"] for item in day.server_items.values())
    answered = [Counter(summary["counts"]) for _, _, summary, _ in day.pushes if summary]
    rejected, invalid = sum(c["rejected"] for c in answered), sum(c["invalid"] for c in answered)
    st = day.stats
    got = {"cases": (st["cases"]["opened"], st["cases"]["by_department"], st["cases"]["by_category"],
                     st["cases"]["without_findings"]),
           "recording": (st["recording"]["inspections_ended"], st["recording"]["complete_or_explained"],
                         {k: v for k, v in st["recording"]["by_status"].items() if v}),
           "evidence": (st["evidence"]["verified"], st["evidence"]["mismatch"],
                        st["evidence"]["verification_delay_seconds"]["count"]),
           "rejected": (st["rejected"]["quarantined"], st["rejected"]["invalid"]),
           "clues": (st["clues"]["received"], st["clues"]["converted"])}
    want = {"cases": (2, dict(sorted(departments.items())), dict(sorted(categories.items())), 1),
            "recording": (len(ended), recorded, dict(recording)),
            "evidence": (statuses["verified"], statuses["mismatch"], statuses["verified"]),
            "rejected": (rejected, invalid), "clues": (1, 1)}
    day.checks.expect(
        got == want,
        f"the statistics match the story: 2 cases opened ({counts(departments)}), findings "
        f"{counts(categories)}, {recorded} of {len(ended)} ended inspections fully recorded, "
        f"{statuses['verified']} items verified, {statuses['mismatch']} in mismatch, {rejected} records rejected, "
        "1 clue received and converted",
        {"got": got, "want": want})
