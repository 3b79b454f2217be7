"""The report `fieldcase demo` prints once the day is played: what the server holds, section by section.

The checks say whether the story came true; the report shows it, for a person reading the output: the
merged case, the evidence and its fate, the body-camera coverage, the clue and the audit, the package
checked offline, every push's answer, the ledger heads and the day in figures. A section whose step was
not reached is left out.
"""

from __future__ import annotations

from collections import Counter

from backend.demo import scenario
from backend.demo.day import FieldDay
from backend.demo.wording import counts, figure, local_time, short_hashes


def report(day: FieldDay) -> None:
    """Print every section the day reached, through `day.echo`."""
    echo, names = day.echo, {p.id: p for p in day.cast.values()}
    echo("")
    echo("== The merged case (one case, two phones) ==")
    case = getattr(day, "case", None)
    if case:
        inst = case["institution"]
        echo(f"case {case['id']}  status {case['status']}, department {case['department']}, "
             f"region {case['region']} 西湖区 Xihu, version {case['version']}")
        echo(f"institution {inst['name']} ({inst['id']}; {inst['address']}; "
             f"{'provisional, not in the registry' if inst['provisional'] else 'registered'})")
        by_device = {p.device_id: u for u, p in day.phones.items()}
        for alias in case["aliases"]:
            who = day.cast[by_device.get(alias["device_id"], "admin")].name
            how = "merged into it" if alias["merged"] else "opened it"
            echo(f"  alias {alias['client_case_id']}  from {who}'s phone: {how}")
        echo("")
        echo("== Inspections ==")
        for n, insp in enumerate(case["inspections"], 1):
            crew = ", ".join(names[o].label if o in names else o for o in insp["officers"])
            start, end = local_time(insp["started_at"]), local_time(insp["ended_at"])
            echo(f"{n}. {insp['id']}  {start}-{end}  outcome {insp['outcome']}")
            echo(f"   officers: {crew}")
            echo(f"   flags: {', '.join(insp['flags']) or 'none'}")
            for f in insp["findings"]:
                echo(f"   finding [{f['category']}] {f['description']}  ({len(f['evidence'])} photo)")
        if getattr(day, "market_case_id", None):
            echo("")
            echo(f"market regulation's own case for the centre: {day.market_case_id} "
                 "(PROTOCOL §4 merges only within a department)")
    if getattr(day, "server_items", None):
        _evidence(day)
    if getattr(day, "issues", None) is not None and getattr(day, "linked", None):
        _desk(day)
    if getattr(day, "tampered_verdict", None):
        _archive(day)
    echo("")
    echo("== Pushes ==")
    for username, what, summary, error in day.pushes:
        who = f"{day.cast[username].name}'s phone, {what}:"
        if summary is None:
            echo(f"{who} no answer ({error})")
            continue
        tally = Counter(summary["counts"])
        echo(f"{who} applied {tally['applied']}, duplicate {tally['duplicate']}, "
             f"deferred {tally['deferred']}, conflict {tally['conflict']}, invalid {tally['invalid']}, "
             f"rejected {tally['rejected']}  in {summary['batches']} batch(es)")
    echo("")
    echo("== Ledger heads per device ==")
    for username, phone in day.phones.items():
        device = day.get(f"/api/v1/devices/{phone.device_id}")
        rows, _, statuses = day.ledger(phone.device_id or "")
        echo(f"{day.cast[username].name}'s phone {device['id']}: head seq {device['head']['seq']} "
             f"hash {device['head']['hash'][:12]}…, ledger {rows} ({dict(statuses)}), "
             f"deferred {device['deferred']['count']}, quarantined {device['quarantined']}, "
             f"outbox {len(phone.outbox())}")
    if getattr(day, "stats", None):
        _statistics(day)


def _evidence(day: FieldDay) -> None:
    echo, clips = day.echo, scenario.CLIPS
    echo("")
    echo("== Evidence: uploaded, verified, purged (PROTOCOL §6) ==")
    size = clips[-1][3]
    for username in ("zhang.min", "wang.fang"):
        echo(f"{day.cast[username].name}'s phone:")
        for eid, (owner, what) in day.items.items():
            if owner != username:
                continue
            server = day.server_items[eid]
            fate = "purged from the phone" if eid in day.purged else "KEPT on the phone"
            echo(f"  {what}: {server['size']:,} bytes, {server['status']}, "
                 f"purge_allowed {str(server['purge_allowed']).lower()}, {fate}")
            if eid == day.clips.get(clips[-1][0]) and day.line.puts:
                resumed = day.line.puts[1:]
                echo(f"    the line dropped after {day.line.puts[0][1]:,} of {size:,} bytes; HEAD answered "
                     f"Upload-Offset {day.line.probes[-1] if day.line.probes else '?'}; "
                     + (f"the phone resumed with Content-Range {resumed[0][0]} ({resumed[0][1]:,} bytes)"
                        if resumed else "the phone did not resume"))
            info = server.get("media_info") or {}
            if what.startswith("photo") and info:
                echo(f"    EXIF: taken {local_time(info.get('exif_captured_at'))} "
                     f"({info.get('time_difference_s')} s from the declaration), GPS {info.get('distance_m')} m "
                     f"from it, camera {info.get('camera_make')}; flags: {', '.join(server['flags']) or 'none'}")
            if server["status"] == "mismatch":
                up = server["uploads"][-1]
                echo(f"    declared sha256 {server['sha256'][:16]}…; the server received {up['received_size']:,} "
                     f"bytes with sha256 {(up['received_sha256'] or '')[:16]}… (kept apart, never served as "
                     "the evidence)")
                error = (day.uploads.get(eid) or {}).get("error") or ""
                echo(f"    the phone reports: {short_hashes(error)}")
    purged_bytes = sum(int(i["size"]) for i in day.purged.values())
    echo(f"the phones purged {len(day.purged)} file(s), {purged_bytes:,} bytes; kept: "
         + (", ".join(day.items.get(e, ("", e))[1] for e in day.kept) or "nothing"))
    cov = day.coverage
    echo("")
    echo("== Body-camera coverage of 张敏's inspection (PROTOCOL §7) ==")
    echo(f"window {local_time(cov['window']['start'])}-{local_time(cov['window']['end'])} "
         f"({scenario.INSPECTION_SECONDS} s), clips of {scenario.CAMERA} #{clips[0][0]}-#{clips[-1][0]}")
    echo(f"covered {cov['covered_seconds']} s, ratio {cov['ratio']}, status {cov['status']}")
    for g in cov["gaps"]:
        why = f"explained: {g['reason']}" if g["explained"] else "NOT explained (no recording.interruption)"
        echo(f"gap {local_time(g['start'])}-{local_time(g['end'])}: {g['seconds']} s, {why}")
    echo(f"clip numbers missing: {len(cov['clip_index_gaps']) or 'none'}; hash chain breaks: "
         f"{len(cov['clip_chain_breaks']) or 'none'}; unverified clips: {len(cov['unverified_clips']) or 'none'}")


def _desk(day: FieldDay) -> None:
    echo = day.echo
    echo("")
    echo("== The hotline clue ==")
    echo(f"clue {day.clue['id']} ({day.clue['source']}, category {day.clue['category']}) routed to "
         f"{day.clue['department']}, tracking code {day.clue['tracking_code']}")
    echo(f"linked to case {day.linked['case']['id']} (existing case: {str(day.linked['existing']).lower()})")
    echo(f"public page GET /api/v1/public/clues/{day.clue['tracking_code']}: {day.public_text.strip()}")
    echo("")
    echo("== Reviewers' audit (周慧) ==")
    for issue in day.issues:
        echo(f"{issue['kind']}: {issue['summary']}")
    if day.review:
        echo(f"reviewed {day.review.get('key')}: {(day.review.get('review') or {}).get('comment')}")
    echo(f"still unreviewed: {', '.join(day.unreviewed) or 'nothing'}")


def _archive(day: FieldDay) -> None:
    echo = day.echo
    echo("")
    echo("== Evidence package, checked offline (PROTOCOL §8) ==")
    head = day.manifest["custody"]["tree_head"]
    echo(f"陈静 (custodian) exported {day.package.name}: {day.package.stat().st_size:,} bytes, "
         f"{len(day.package_names)} entries; purpose: {scenario.PACKAGE_PURPOSE}")
    echo(f"signed tree head: size {head['tree_size']}, root {head['root_hash'][:16]}…, "
         f"custody key {day.manifest['custody']['key_id']}")
    echo(f"$ fieldcase verify-package {day.package.name} --public-key {day.server_key}")
    for line in (day.verdict.stderr + day.verdict.stdout).splitlines():
        echo(f"  {short_hashes(line)}")
    echo(f"$ fieldcase verify-package {day.tampered.name} ...   (one byte of {day.tampered_name} changed)")
    for line in day.tampered_verdict.stdout.splitlines():
        echo(f"  {short_hashes(line)}")
    echo(f"  (exit status {day.tampered_verdict.returncode})")


def _statistics(day: FieldDay) -> None:
    echo, st = day.echo, day.stats
    clues, cases, rec, ev, rej = (st[k] for k in ("clues", "cases", "recording", "evidence", "rejected"))
    delay = ev["verification_delay_seconds"]
    echo("")
    echo(f"== Statistics (GET /api/v1/stats as the admin, {st['period']['from']} to {st['period']['to']}) ==")
    rows = (
        ("clues received / converted / rate", f"{clues['received']} / {clues['converted']} / "
                                              f"{figure(clues['conversion_rate'])}"),
        ("cases opened", f"{cases['opened']} ({counts(cases['by_status'])}; {counts(cases['by_department'])})"),
        ("cases by category of findings", f"{counts(cases['by_category']) or 'none'}; "
                                          f"without findings {cases['without_findings']}"),
        ("cases closed / median days to close", f"{cases['closed']} / {figure(cases['to_close_days']['median'])}"),
        ("inspections ended / fully recorded", f"{rec['inspections_ended']} / {rec['complete_or_explained']} "
                                               f"(share {figure(rec['share'])}; {counts(rec['by_status'])})"),
        ("evidence verified / delay median, p90", f"{ev['verified']} / {figure(delay['median'])} s, "
                                                  f"{figure(delay['p90'])} s"),
        ("evidence in mismatch", f"{ev['mismatch']}"),
        ("records rejected / invalid", f"{rej['quarantined']} / {rej['invalid']}"),
    )
    for label, value in rows:
        echo(f"{label:<40}{value}")
    for row in st["regions"]:
        if any(row[k] for k in ("clues_received", "cases_opened", "inspections_ended", "evidence_verified",
                                "rejected_records", "invalid_records")):
            echo(f"district {row['region']} {row['name_zh']}: cases {row['cases_opened']}, inspections "
                 f"{row['inspections_ended']} (fully recorded {row['inspections_recorded']}), evidence verified "
                 f"{row['evidence_verified']} (mismatch {row['evidence_mismatch']}), clues {row['clues_received']}")
