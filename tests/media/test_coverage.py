"""PROTOCOL §7, full-process recording: the coverage rule case by case, then through the API."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from backend.core.models import Evidence
from backend.core.times import utc_iso
from media.coverage import Clip, Interruption, analyse
from tests.phones import SHANGHAI, TestPhone, uid

T0 = datetime(2026, 7, 14, 9, 30, tzinfo=SHANGHAI)
TOL = timedelta(seconds=5)


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def clip(camera: str, index: int, start: float, end: float, *, status: str = "verified",
         prev: str | None = None, name: str | None = None) -> Clip:
    """A clip whose evidence id and sha256 derive from its name (by default camera+index): easy to chain."""
    name = name or f"{camera}{index}"
    return Clip(evidence_id=name, camera_serial=camera, clip_index=index, started_at=t(start), ended_at=t(end),
                sha256=sha(name), status=status, prev_sha256=prev)


def gap(start: float, end: float, explained: bool = False, reason: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"start": utc_iso(t(start)), "end": utc_iso(t(end)), "seconds": round(end - start, 3),
                           "explained": explained}
    if reason is not None:
        out["reason"] = reason
    return out


def stop(start: float, end: float, reason: str = "battery", camera: str = "A") -> Interruption:
    return Interruption(camera_serial=camera, started_at=t(start), ended_at=t(end), reason=reason)


# (id, window end in seconds or None, clips, interruptions, expected subset of the answer); windows start at 0.
CASES = [
    ("full coverage", 600, [clip("A", 1, 0, 300), clip("A", 2, 300, 600)], [],
     {"status": "complete", "covered_seconds": 600.0, "ratio": 1.0, "gaps": [], "flags": []}),
    ("two cameras overlapping", 600, [clip("A", 1, 0, 400), clip("B", 7, 200, 600)], [],
     {"status": "complete", "covered_seconds": 600.0, "ratio": 1.0, "gaps": []}),
    ("two cameras relaying, each with holes", 600,
     [clip("A", 1, 0, 250), clip("B", 7, 240, 420), clip("A", 2, 410, 600)], [],
     {"status": "complete", "covered_seconds": 600.0, "clip_index_gaps": []}),
    ("clips running past the window are clipped", 600, [clip("A", 1, -120, 300), clip("A", 2, 300, 900)], [],
     {"status": "complete", "covered_seconds": 600.0, "ratio": 1.0, "flags": []}),
    ("zero-length and reversed clips are flagged and cover nothing", 600,
     [clip("A", 1, 0, 300), clip("A", 2, 300, 300), clip("A", 3, 600, 300)], [],
     {"status": "gaps", "covered_seconds": 300.0, "gaps": [gap(300, 600)],
      "flags": [{"flag": "zero_length", "evidence_id": "A2", "camera_serial": "A", "clip_index": 2},
                {"flag": "reversed", "evidence_id": "A3", "camera_serial": "A", "clip_index": 3}]}),
    ("only malformed clips: none", 600, [clip("A", 2, 300, 300), clip("A", 3, 600, 0)], [],
     {"status": "none", "covered_seconds": 0.0, "ratio": 0.0, "gaps": [gap(0, 600)]}),
    ("no clips at all: none", 600, [], [],
     {"status": "none", "covered_seconds": 0.0, "ratio": 0.0, "gaps": [gap(0, 600)], "clip_index_gaps": [],
      "clip_chain_breaks": [], "unverified_clips": [], "flags": []}),
    ("a verified clip wholly outside the window is flagged, and is still none", 600,
     [clip("A", 1, -600, -10), clip("A", 2, 700, 800)], [],
     {"status": "none", "covered_seconds": 0.0,
      "flags": [{"flag": "outside_window", "evidence_id": "A1", "camera_serial": "A", "clip_index": 1},
                {"flag": "outside_window", "evidence_id": "A2", "camera_serial": "A", "clip_index": 2}]}),
    ("open: judged up to the last verified clip", None, [clip("A", 1, 0, 300), clip("A", 2, 310, 400)], [],
     {"status": "open", "window": {"start": utc_iso(T0), "end": None}, "covered_seconds": 390.0,
      "ratio": 0.975, "gaps": [gap(300, 310)]}),
    ("open with no clip yet", None, [], [],
     {"status": "open", "covered_seconds": 0.0, "ratio": 0.0, "gaps": []}),
    ("open with a gap at the start", None, [clip("A", 1, 60, 120)], [],
     {"status": "open", "gaps": [gap(0, 60)], "covered_seconds": 60.0, "ratio": 0.5}),
    ("a hole exactly the tolerance is not a gap", 600, [clip("A", 1, 0, 300), clip("A", 2, 305, 600)], [],
     {"status": "complete", "gaps": [], "covered_seconds": 595.0, "ratio": 0.9917}),
    ("a hole just over the tolerance is a gap", 600, [clip("A", 1, 0, 300), clip("A", 2, 305.5, 600)], [],
     {"status": "gaps", "gaps": [gap(300, 305.5)], "covered_seconds": 594.5}),
    ("late start and early stop within tolerance", 600, [clip("A", 1, 4, 596)], [],
     {"status": "complete", "gaps": []}),
    ("late start and early stop over tolerance count", 600, [clip("A", 1, 6, 594)], [],
     {"status": "gaps", "gaps": [gap(0, 6), gap(594, 600)]}),
    ("a gap inside an interruption is explained", 600, [clip("A", 1, 0, 200), clip("A", 2, 400, 600)],
     [stop(190, 410, "battery flat")],
     {"status": "explained", "gaps": [gap(200, 400, True, "battery flat")], "covered_seconds": 400.0}),
    ("interruption edges within tolerance of the gap still explain it", 600,
     [clip("A", 1, 0, 200), clip("A", 2, 400, 600)], [stop(203, 398)],
     {"status": "explained", "gaps": [gap(200, 400, True, "battery")]}),
    ("two adjoining interruptions explain one gap together", 600,
     [clip("A", 1, 0, 200), clip("A", 2, 400, 600)], [stop(200, 300, "battery"), stop(300, 400, "fault", "B")],
     {"status": "explained", "gaps": [gap(200, 400, True, "battery; fault")]}),
    ("a gap with no interruption is unexplained", 600, [clip("A", 1, 0, 200), clip("A", 2, 400, 600)], [],
     {"status": "gaps", "gaps": [gap(200, 400)]}),
    ("a partly covered gap stays unexplained, whole, with the reason shown", 600,
     [clip("A", 1, 0, 200), clip("A", 2, 400, 600)], [stop(200, 300, "battery")],
     {"status": "gaps", "gaps": [gap(200, 400, False, "battery")]}),
    ("interruptions with a hole longer than the tolerance do not explain", 600,
     [clip("A", 1, 0, 200), clip("A", 2, 400, 600)], [stop(200, 290), stop(300, 400)],
     {"status": "gaps", "gaps": [gap(200, 400, False, "battery")]}),
    ("one explained and one unexplained gap: gaps", 900,
     [clip("A", 1, 0, 200), clip("A", 2, 400, 600), clip("A", 3, 700, 900)], [stop(200, 400)],
     {"status": "gaps", "gaps": [gap(200, 400, True, "battery"), gap(600, 700)]}),
    ("missing clip numbers per camera", 600,
     [clip("A", 1, 0, 100), clip("A", 2, 100, 200), clip("A", 5, 200, 600), clip("B", 3, 0, 600),
      clip("B", 4, 0, 600), clip("C", 10, 0, 10), clip("C", 12, 10, 20, status="declared")], [],
     {"status": "complete",
      "clip_index_gaps": [{"camera_serial": "A", "missing": [3, 4], "missing_count": 2},
                          {"camera_serial": "C", "missing": [11], "missing_count": 1}]}),
    ("unverified clips do not cover but are not missing numbers", 600,
     [clip("A", 1, 0, 300), clip("A", 2, 300, 600, status="declared"), clip("A", 3, 500, 600, status="mismatch")],
     [],
     {"status": "gaps", "covered_seconds": 300.0, "gaps": [gap(300, 600)], "clip_index_gaps": [],
      "unverified_clips": ["A2", "A3"],
      "flags": [{"flag": "hash_mismatch", "evidence_id": "A3", "camera_serial": "A", "clip_index": 3}]}),
    ("an intact hash chain", 600,
     [clip("A", 1, 0, 200), clip("A", 2, 200, 400, prev=sha("A1")), clip("A", 3, 400, 600, prev=sha("A2"))], [],
     {"status": "complete", "clip_chain_breaks": [], "clip_index_gaps": []}),
    ("a removed middle clip: number gap and chain break", 600,
     [clip("A", 1, 0, 200), clip("A", 3, 200, 600, prev=sha("A2"))], [],
     {"clip_index_gaps": [{"camera_serial": "A", "missing": [2], "missing_count": 1}],
      "clip_chain_breaks": [{"evidence_id": "A3", "camera_serial": "A", "clip_index": 3, "prev_sha256": sha("A2"),
                             "declared_previous_sha256": [], "reason": "previous_missing"}]}),
    ("a removed middle clip with the rest renumbered: only the chain shows it", 600,
     [clip("A", 1, 0, 200), clip("A", 2, 200, 600, prev=sha("the removed one"), name="A3")], [],
     {"clip_index_gaps": [],
      "clip_chain_breaks": [{"evidence_id": "A3", "camera_serial": "A", "clip_index": 2,
                             "prev_sha256": sha("the removed one"), "declared_previous_sha256": [sha("A1")],
                             "reason": "mismatch"}]}),
    ("duplicate clip numbers are flagged", 600,
     [clip("A", 1, 0, 600), clip("A", 1, 0, 600, name="A1bis")], [],
     {"status": "complete",
      "flags": [{"flag": "duplicate_clip_index", "evidence_id": "A1", "camera_serial": "A", "clip_index": 1},
                {"flag": "duplicate_clip_index", "evidence_id": "A1bis", "camera_serial": "A", "clip_index": 1}]}),
    ("a window ending before it starts is empty and flagged", -60, [clip("A", 1, -60, 0)], [],
     {"status": "none", "ratio": 0.0, "gaps": [],
      "window": {"start": utc_iso(T0), "end": utc_iso(t(-60))}}),
]


@pytest.mark.parametrize(("window_end", "clips", "interruptions", "expected"),
                         [pytest.param(*case[1:], id=case[0]) for case in CASES])
def test_analyse(window_end, clips, interruptions, expected):
    end = t(window_end) if window_end is not None else None
    answer = analyse(T0, end, clips, interruptions, tolerance=TOL)
    assert set(answer) == {"window", "covered_seconds", "ratio", "gaps", "clip_index_gaps", "clip_chain_breaks",
                           "unverified_clips", "status", "flags"}
    for key, value in expected.items():
        assert answer[key] == value, key


def test_a_clip_deleted_under_retention_after_verification_still_covers_its_stretch():
    from dataclasses import replace

    kept, deleted = clip("A", 1, 0, 300), replace(clip("A", 2, 300, 600), status="deleted", was_verified=True)
    assert analyse(T0, t(600), [kept, deleted], [], tolerance=TOL)["status"] == "complete"
    never = replace(deleted, was_verified=False)  # a mismatch deleted later proved nothing
    answer = analyse(T0, t(600), [kept, never], [], tolerance=TOL)
    assert answer["status"] != "complete" and answer["unverified_clips"]


def test_a_window_ending_before_start_is_flagged():
    answer = analyse(T0, t(-60), [], [], tolerance=TOL)
    assert answer["flags"] == [{"flag": "window_ends_before_start"}]


def test_chain_across_inspections_uses_the_lookup():
    """The previous clip lives in another inspection: found through `previous_clips`, a mapping or a callable."""
    second = [clip("A", 4, 0, 300, prev=sha("A3")), clip("A", 5, 300, 600, prev=sha("A4"))]
    linked = analyse(T0, t(600), second, [], previous_clips={("A", 3): sha("A3")})
    assert linked["clip_chain_breaks"] == [] and linked["status"] == "complete"

    replaced = analyse(T0, t(600), second, [], previous_clips=lambda serial, index: {sha("another A3")})
    assert replaced["clip_chain_breaks"] == [
        {"evidence_id": "A4", "camera_serial": "A", "clip_index": 4, "prev_sha256": sha("A3"),
         "declared_previous_sha256": [sha("another A3")], "reason": "mismatch"}]

    removed = analyse(T0, t(600), second, [])
    assert [(b["evidence_id"], b["reason"]) for b in removed["clip_chain_breaks"]] == [("A4", "previous_missing")]
    # Within the inspection the numbers are contiguous: only the chain can tell.
    assert removed["clip_index_gaps"] == []


def test_clip_zero_has_no_previous_to_check():
    answer = analyse(T0, t(600), [clip("A", 0, 0, 600, prev=sha("whatever"))], [])
    assert answer["clip_chain_breaks"] == []


def test_a_huge_jump_in_clip_numbers_lists_at_most_1000():
    answer = analyse(T0, t(600), [clip("A", 0, 0, 300), clip("A", 2**31, 300, 600)], [])
    (gaps,) = answer["clip_index_gaps"]
    assert gaps["missing_count"] == 2**31 - 1
    assert gaps["missing"] == list(range(1, 1001))


def test_a_tiny_uncovered_stretch_never_rounds_up_to_a_perfect_ratio():
    answer = analyse(T0, t(100_000), [clip("A", 1, 0, 50_000), clip("A", 2, 50_001, 100_000)], [])
    assert answer["status"] == "complete" and answer["ratio"] == 0.9999


def test_times_come_out_as_rfc3339_utc_and_seconds_to_the_millisecond():
    answer = analyse(T0, t(10), [clip("A", 1, 0.0004, 1.23456)], [], tolerance=timedelta(0))
    assert answer["window"] == {"start": "2026-07-14T01:30:00.000Z", "end": "2026-07-14T01:30:10.000Z"}
    assert answer["covered_seconds"] == 1.234
    assert answer["gaps"][0]["end"] == "2026-07-14T01:30:00.000Z"  # 0.4 ms in: cut to the millisecond


def test_naive_times_are_refused():
    with pytest.raises(ValueError, match="naive"):
        analyse(T0.replace(tzinfo=None), None, [], [])
    with pytest.raises(ValueError, match="naive"):
        analyse(T0, None, [Clip("e", "A", 1, t(0).replace(tzinfo=None), t(1), sha("e"), "verified")], [])


def test_offsets_do_not_matter():
    utc_clip = Clip("e", "A", 1, T0.astimezone(UTC), t(600).astimezone(UTC), sha("e"), "verified")
    assert analyse(T0, t(600), [utc_clip], [])["status"] == "complete"


# A brute-force model on whole seconds, to check the interval arithmetic against.
spans = st.lists(st.tuples(st.integers(-20, 120), st.integers(0, 60), st.booleans()), max_size=8)


@settings(max_examples=300, deadline=None)
@given(spans=spans, stops=st.lists(st.tuples(st.integers(-20, 120), st.integers(0, 60)), max_size=3),
       tolerance=st.integers(0, 6), end=st.integers(1, 100))
def test_analyse_agrees_with_a_second_by_second_model(spans, stops, tolerance, end):
    clips = [clip("A", i, s, s + n, status="verified" if ok else "declared") for i, (s, n, ok) in enumerate(spans)]
    interruptions = [stop(s, s + n) for s, n in stops]
    answer = analyse(T0, t(end), clips, interruptions, tolerance=timedelta(seconds=tolerance))

    covered = [any(ok and s <= sec < s + n for s, n, ok in spans) for sec in range(end)]
    assert answer["covered_seconds"] == sum(covered)
    holes, sec = [], 0
    while sec < end:
        if covered[sec]:
            sec += 1
            continue
        first = sec
        while sec < end and not covered[sec]:
            sec += 1
        holes.append((first, sec))
    expected_gaps = [(a, b) for a, b in holes if b - a > tolerance]
    assert [(g["start"], g["end"]) for g in answer["gaps"]] == [(utc_iso(t(a)), utc_iso(t(b)))
                                                                for a, b in expected_gaps]
    for g, (a, b) in zip(answer["gaps"], expected_gaps, strict=True):
        inside = [any(s <= x < s + n for s, n in stops) for x in range(a, b)]
        longest_outside = max((len(run) for run in "".join("x" if i else "." for i in inside).split("x")), default=0)
        assert g["explained"] == (longest_outside <= tolerance)
    if not any(covered):
        assert answer["status"] == "none"
    elif not expected_gaps:
        assert answer["status"] == "complete"
    else:
        assert answer["status"] in ("explained", "gaps")


# ---------------------------------------------------------------------------- through the API

CENTRE = {"name": "西湖区启航培训中心", "region": "330106"}


class FieldDay:
    """One officer's phone recording an inspection with a body camera, all times relative to its start."""

    def __init__(self, client, officers, region: str = "330106") -> None:
        self.officer = officers.make(region=region)
        self.partner = officers.make(region=region, department="market")
        self.phone = TestPhone(client, self.officer, officers.headers(self.officer))
        self.start_at = (datetime.now(SHANGHAI) - timedelta(hours=3)).replace(microsecond=0)
        self.client_case_id, opened = self.phone.open_case(CENTRE)
        self.records = [opened]

    def at(self, seconds: float) -> datetime:
        return self.start_at + timedelta(seconds=seconds)

    def start(self) -> str:
        iid, started = self.phone.start(self.client_case_id, [self.officer.id, self.partner.id], at=self.at(0))
        self.records.append(started)
        return iid

    def clip(self, iid: str, camera: str, index: int, start: float, end: float, *, name: str | None = None,
             prev: str | None = None) -> str:
        eid, name = uid(), name or f"{camera}{index}"
        body = {"evidence_id": eid, "inspection_id": iid, "kind": "video", "media_type": "video/mp4",
                "sha256": sha(name), "size": 1000, "captured_at": self.at(start).isoformat(),
                "clip": {"camera_serial": camera, "clip_index": index, "started_at": self.at(start).isoformat(),
                         "ended_at": self.at(end).isoformat()}}
        if prev is not None:
            body["clip"]["prev_sha256"] = sha(prev)
        self.records.append(self.phone.record("evidence.capture", body, at=self.at(end + 1)))
        return eid

    def photo(self, iid: str) -> str:
        eid, record = self.phone.evidence(iid)
        self.records.append(record)
        return eid

    def interruption(self, iid: str, camera: str, start: float, end: float, reason: str) -> None:
        self.records.append(self.phone.record("recording.interruption", {
            "inspection_id": iid, "camera_serial": camera, "started_at": self.at(start).isoformat(),
            "ended_at": self.at(end).isoformat(), "reason": reason}, at=self.at(end + 1)))

    def end(self, iid: str, seconds: float) -> None:
        self.records.append(self.phone.end(iid, at=self.at(seconds)))

    def push(self) -> None:
        answer = self.phone.push(self.records)
        assert {r["status"] for r in answer["results"]} == {"applied"}, answer["results"]
        self.records = []

    def coverage(self, iid: str, headers: dict[str, str] | None = None):
        headers = self.phone.headers if headers is None else headers
        return self.phone.client.get(f"/api/v1/inspections/{iid}/coverage", headers=headers)


def verify(db, *evidence_ids: str, status: str = "verified") -> None:
    with db.transaction() as s:
        s.execute(update(Evidence).where(Evidence.id.in_(evidence_ids)).values(status=status))


def test_coverage_of_an_inspection_through_the_api(client, officers, db):
    day = FieldDay(client, officers)
    iid = day.start()
    first = day.clip(iid, "CAM-7", 1, 0, 200)
    second = day.clip(iid, "CAM-7", 2, 260, 600, prev="CAM-71")
    day.photo(iid)  # a photo is evidence, not a clip: it plays no part
    day.interruption(iid, "CAM-7", 198, 262, "电池耗尽 battery flat")
    day.push()

    opened = day.coverage(iid)
    assert opened.status_code == 200, opened.json
    assert opened.json["status"] == "open" and opened.json["window"] == {"start": utc_iso(day.at(0)), "end": None}
    assert sorted(opened.json["unverified_clips"]) == sorted([first, second])

    day.end(iid, 600)
    day.push()
    verify(db, first)
    partial = day.coverage(iid).json
    assert partial["status"] == "gaps" and partial["unverified_clips"] == [second]
    assert partial["gaps"] == [{"start": utc_iso(day.at(200)), "end": utc_iso(day.at(600)), "seconds": 400.0,
                                "explained": False, "reason": "电池耗尽 battery flat"}]

    verify(db, second)
    answer = day.coverage(iid).json
    assert answer == {
        "window": {"start": utc_iso(day.at(0)), "end": utc_iso(day.at(600))},
        "covered_seconds": 540.0, "ratio": 0.9,
        "gaps": [{"start": utc_iso(day.at(200)), "end": utc_iso(day.at(260)), "seconds": 60.0, "explained": True,
                  "reason": "电池耗尽 battery flat"}],
        "clip_index_gaps": [], "clip_chain_breaks": [], "unverified_clips": [], "status": "explained", "flags": [],
    }


def test_a_clip_removed_between_two_inspections_breaks_the_chain(client, officers, db):
    day = FieldDay(client, officers)
    morning = day.start()
    a1 = day.clip(morning, "CAM-9", 1, 0, 300)
    a2 = day.clip(morning, "CAM-9", 2, 300, 600, prev="CAM-91")
    day.end(morning, 600)
    afternoon = day.start()
    # The camera says clip 3 followed a clip whose hash is not the declared clip 2: something was swapped out.
    a3 = day.clip(afternoon, "CAM-9", 3, 0, 300, prev="a clip nobody declared")
    a4 = day.clip(afternoon, "CAM-9", 4, 300, 600, prev="CAM-93")
    day.end(afternoon, 600)
    day.push()
    verify(db, a1, a2, a3, a4)

    assert day.coverage(morning).json["clip_chain_breaks"] == []
    answer = day.coverage(afternoon).json
    assert answer["status"] == "complete" and answer["clip_index_gaps"] == []
    assert answer["clip_chain_breaks"] == [{
        "evidence_id": a3, "camera_serial": "CAM-9", "clip_index": 3, "prev_sha256": sha("a clip nobody declared"),
        "declared_previous_sha256": [sha("CAM-92")], "reason": "mismatch"}]


def test_coverage_outside_the_viewers_district_is_not_found(client, officers):
    day = FieldDay(client, officers)
    iid = day.start()
    day.push()
    stranger = officers.make(region="330105")
    r = day.coverage(iid, headers=officers.headers(stranger))
    assert r.status_code == 404 and r.json["code"] == 404
    assert day.coverage(uid()).status_code == 404
    city = officers.make(region="330100")
    assert day.coverage(iid, headers=officers.headers(city)).json["status"] == "open"
    assert day.coverage(iid, headers={}).status_code == 401


def test_the_tolerance_comes_from_settings(client, officers, db, app):
    day = FieldDay(client, officers)
    iid = day.start()
    eids = [day.clip(iid, "CAM-1", 1, 0, 300), day.clip(iid, "CAM-1", 2, 310, 600)]
    day.end(iid, 600)
    day.push()
    verify(db, *eids)
    assert day.coverage(iid).json["status"] == "gaps"
    state = app.extensions["fieldcase"]
    state.settings = state.settings.with_overrides({"coverage_tolerance_seconds": 15})
    answer = day.coverage(iid).json
    assert answer["status"] == "complete", answer
