"""Full-process recording (PROTOCOL §7): do an inspection's verified clips cover its whole window?

The plan requires every enforcement action to be recorded from start to end. A
reviewer cannot watch hours of video to check that, so the server answers it
from the signed declarations alone: the clips' times, the body camera's own
clip counter and hash chain, the uploads' verification status, and the
officers' signed `recording.interruption` records.

`analyse` is the rule, as a pure function over plain values so that every
edge case can be tested without a database; `inspection_coverage` is the
glue that loads one inspection's rows (within the viewer's jurisdiction) and
hands them to it.

Decisions PROTOCOL leaves open (docs/protocol.md "Coverage, as built" says
the same to phone makers and reviewers):

- A gap is an uncovered stretch *longer* than the tolerance; one exactly as
  long is not. Uncovered stretches at the start and end of the window count.
  Stretches within tolerance are not gaps, but they are not covered either:
  `covered_seconds` and `ratio` are the true measure.
- A gap is explained only when the union of the inspection's interruptions
  (of any camera: the gap is a stretch when no camera recorded) covers all
  of it, up to the tolerance: no part of the gap outside every interruption
  may be longer than the tolerance. A gap only partly inside interruptions
  stays unexplained, whole; it is not split. `reason` is present whenever
  an interruption overlaps the gap, so a reviewer sees what was claimed even
  when it does not suffice.
- While the window is open (no `inspection.end` yet) the analysis runs from
  the start to the end of the last verified clip: the stretch after it may
  still be recording on a camera, so it is not called a gap yet.
- `open` wins over `none`: an unfinished inspection has no verdict.
- `none` means no verified clip overlaps the window at all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from backend.core.jurisdiction import get_scoped
from backend.core.models import Evidence, Inspection, Officer, RecordingInterruption
from backend.core.times import utc_iso

DEFAULT_TOLERANCE = timedelta(seconds=5)
# A camera counter that jumps (or a hostile phone declaring index 2**31) must not
# turn one response into a list of millions; the count is always exact.
MAX_MISSING_LISTED = 1000

Interval = tuple[datetime, datetime]
PreviousLookup = Callable[[str, int], str | Collection[str] | None]


@dataclass(frozen=True)
class Clip:
    """One body-camera clip as declared in a signed `evidence.capture` record, with its upload status."""

    evidence_id: str
    camera_serial: str
    clip_index: int
    started_at: datetime
    ended_at: datetime
    sha256: str
    status: str  # "declared", "verified", "mismatch" or "deleted": only a verified clip covers
    prev_sha256: str | None = None
    # A clip verified once and later deleted under retention still proves what it covered.
    was_verified: bool = False

    @property
    def verified(self) -> bool:
        return self.status == "verified" or (self.status == "deleted" and self.was_verified)


@dataclass(frozen=True)
class Interruption:
    """A signed `recording.interruption`: the officers' own account of why a camera stopped."""

    camera_serial: str
    started_at: datetime
    ended_at: datetime
    reason: str


def _seconds(delta: timedelta) -> float:
    return round(delta.total_seconds(), 3)


def _aware(value: datetime, what: str) -> datetime:
    # A naive time would be silently read as the server's zone, hours off a phone's +08:00.
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"{what} is a naive datetime; coverage needs timezone-aware times")
    return value


def _union(intervals: Iterable[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _holes(union: Sequence[Interval], start: datetime, end: datetime) -> list[Interval]:
    """The stretches of [start, end] that `union` (sorted, disjoint) leaves uncovered."""
    holes: list[Interval] = []
    cursor = start
    for s, e in union:
        if e <= cursor:
            continue
        if s >= end:
            break
        if s > cursor:
            holes.append((cursor, s))
        cursor = max(cursor, e)
    if cursor < end:
        holes.append((cursor, end))
    return holes


def _previous_lookup(previous_clips: Mapping[tuple[str, int], Any] | PreviousLookup | None) -> PreviousLookup:
    if previous_clips is None:
        return lambda serial, index: None
    if callable(previous_clips):
        return previous_clips
    mapping = previous_clips
    return lambda serial, index: mapping.get((serial, index))


def _as_set(value: str | Collection[str] | None) -> set[str]:
    if value is None:
        return set()
    if isinstance(value, str):
        return {value}
    return set(value)


def analyse(window_start: datetime, window_end: datetime | None, clips: Sequence[Clip],
            interruptions: Sequence[Interruption], *, tolerance: timedelta = DEFAULT_TOLERANCE,
            previous_clips: Mapping[tuple[str, int], str | Collection[str]] | PreviousLookup | None = None,
            ) -> dict[str, Any]:
    """Judge one inspection's recording against its window, in PROTOCOL §7's shape plus `flags`.

    `clips` are all clips declared for the inspection, whatever their upload
    status: unverified ones do not cover, but their declarations still count
    for the clip counter and the hash chain. `previous_clips` answers "which
    sha256 was declared for this camera's clip N?" for clips outside the
    inspection (a mapping keyed by (camera_serial, clip_index), or a callable
    taking the two), so a clip removed between two inspections is caught; the
    inspection's own clips are always consulted first.
    """
    start = _aware(window_start, "window_start")
    end = _aware(window_end, "window_end") if window_end is not None else None
    if tolerance < timedelta(0):
        raise ValueError("tolerance must not be negative")
    for clip in clips:
        _aware(clip.started_at, f"clip {clip.evidence_id} started_at")
        _aware(clip.ended_at, f"clip {clip.evidence_id} ended_at")
    for interruption in interruptions:
        _aware(interruption.started_at, "interruption started_at")
        _aware(interruption.ended_at, "interruption ended_at")

    flags: list[dict[str, Any]] = []
    if end is not None and end < start:
        flags.append({"flag": "window_ends_before_start"})

    # Well-formed verified clips are the only ones that can cover anything.
    covering = [c for c in clips if c.verified and c.ended_at > c.started_at]
    # An open window is judged up to the last verified clip: later, a camera may still be recording.
    horizon = max([start, *(c.ended_at for c in covering)]) if end is None else max(start, end)

    by_key: dict[tuple[str, int], list[Clip]] = defaultdict(list)
    for clip in clips:
        by_key[(clip.camera_serial, clip.clip_index)].append(clip)

    for clip in sorted(clips, key=lambda c: (c.camera_serial, c.clip_index, c.evidence_id)):
        ident = {"evidence_id": clip.evidence_id, "camera_serial": clip.camera_serial,
                 "clip_index": clip.clip_index}
        if clip.ended_at < clip.started_at:
            flags.append({"flag": "reversed", **ident})
        elif clip.ended_at == clip.started_at:
            flags.append({"flag": "zero_length", **ident})
        elif clip.ended_at <= start or (end is not None and clip.started_at >= max(start, end)):
            flags.append({"flag": "outside_window", **ident})
        if clip.status == "mismatch":
            flags.append({"flag": "hash_mismatch", **ident})
        if len(by_key[(clip.camera_serial, clip.clip_index)]) > 1:
            flags.append({"flag": "duplicate_clip_index", **ident})
    for interruption in interruptions:
        if interruption.ended_at < interruption.started_at:
            flags.append({"flag": "reversed_interruption", "camera_serial": interruption.camera_serial})

    covered = _union((max(c.started_at, start), min(c.ended_at, horizon)) for c in covering
                     if min(c.ended_at, horizon) > max(c.started_at, start))
    covered_total = sum((e - s for s, e in covered), timedelta(0))
    length = horizon - start

    explained_by = sorted((i for i in interruptions if i.ended_at > i.started_at),
                          key=lambda i: (i.started_at, i.ended_at))
    interrupted = _union((i.started_at, i.ended_at) for i in explained_by)
    gaps: list[dict[str, Any]] = []
    for gap_start, gap_end in _holes(covered, start, horizon):
        if gap_end - gap_start <= tolerance:
            continue
        unexplained = _holes(interrupted, gap_start, gap_end)
        gap: dict[str, Any] = {"start": utc_iso(gap_start), "end": utc_iso(gap_end),
                               "seconds": _seconds(gap_end - gap_start),
                               "explained": all(e - s <= tolerance for s, e in unexplained)}
        reasons = list(dict.fromkeys(i.reason for i in explained_by
                                     if i.started_at < gap_end and i.ended_at > gap_start))
        if reasons:
            gap["reason"] = "; ".join(reasons)
        gaps.append(gap)

    if end is None:
        status = "open"
    elif not covered:
        status = "none"
    elif not gaps:
        status = "complete"
    elif all(g["explained"] for g in gaps):
        status = "explained"
    else:
        status = "gaps"

    if length > timedelta(0):
        ratio = covered_total / length
        # Never round a short uncovered stretch up into a perfect score.
        ratio = round(ratio, 4) if covered_total == length else min(round(ratio, 4), 0.9999)
    else:
        ratio = 0.0

    return {
        "window": {"start": utc_iso(start), "end": utc_iso(end) if end is not None else None},
        "covered_seconds": _seconds(covered_total),
        "ratio": ratio,
        "gaps": gaps,
        "clip_index_gaps": _clip_index_gaps(clips),
        "clip_chain_breaks": _chain_breaks(clips, by_key, _previous_lookup(previous_clips)),
        "unverified_clips": [c.evidence_id for c in sorted(clips, key=lambda c: (c.camera_serial, c.clip_index,
                                                                                  c.evidence_id))
                             if not c.verified],
        "status": status,
        "flags": flags,
    }


def _clip_index_gaps(clips: Sequence[Clip]) -> list[dict[str, Any]]:
    """Counter numbers never declared between a camera's lowest and highest in this inspection.

    Every declaration counts as seen, verified or not: a clip that was declared
    but not uploaded is reported under `unverified_clips`, not as missing.
    """
    seen: dict[str, set[int]] = defaultdict(set)
    for clip in clips:
        seen[clip.camera_serial].add(clip.clip_index)
    out = []
    for serial in sorted(seen):
        indices = sorted(seen[serial])
        missing_count = (indices[-1] - indices[0] + 1) - len(indices)
        if not missing_count:
            continue
        missing: list[int] = []
        for low, high in zip(indices, indices[1:], strict=False):
            missing.extend(range(low + 1, min(high, low + 1 + MAX_MISSING_LISTED - len(missing))))
            if len(missing) >= MAX_MISSING_LISTED:
                break
        out.append({"camera_serial": serial, "missing": missing, "missing_count": missing_count})
    return out


def _chain_breaks(clips: Sequence[Clip], by_key: Mapping[tuple[str, int], list[Clip]],
                  lookup: PreviousLookup) -> list[dict[str, Any]]:
    """Clips whose camera-signed `prev_sha256` does not name what was declared as the previous clip.

    The previous clip may belong to another inspection, hence `lookup`. When
    nothing at all was declared for the previous index the link cannot be
    checked, and that is a break too (`previous_missing`): it is exactly how
    a clip deleted at the boundary between two inspections shows. A camera's
    clip 0 has no previous clip and is not checked.
    """
    breaks = []
    for clip in sorted(clips, key=lambda c: (c.camera_serial, c.clip_index, c.evidence_id)):
        if clip.prev_sha256 is None or clip.clip_index <= 0:
            continue
        key = (clip.camera_serial, clip.clip_index - 1)
        declared = {c.sha256 for c in by_key.get(key, ())} | _as_set(lookup(*key))
        if clip.prev_sha256 in declared:
            continue
        breaks.append({"evidence_id": clip.evidence_id, "camera_serial": clip.camera_serial,
                       "clip_index": clip.clip_index, "prev_sha256": clip.prev_sha256,
                       "declared_previous_sha256": sorted(declared),
                       "reason": "mismatch" if declared else "previous_missing"})
    return breaks


def _parse_time(value: Any) -> datetime:
    # Clip times are stored as the isoformat of the validated, offset-carrying record times.
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def clip_data(clip: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stored clip declaration as an answer shows it: its times by the one time rule (`utc_iso`).

    Stored, they keep the offset the phone signed them with (the row is re-derived from the record by `fieldcase
    verify`, so it stays as it was written); every answer writes the instant the same way instead.
    """
    if not clip:
        return clip
    return {**clip, "started_at": utc_iso(_parse_time(clip["started_at"])),
            "ended_at": utc_iso(_parse_time(clip["ended_at"]))}


def clip_of(evidence: Evidence) -> Clip:
    """The `Clip` an evidence row with a `clip` declaration stands for."""
    data = evidence.clip or {}
    return Clip(evidence_id=evidence.id, camera_serial=evidence.camera_serial or data["camera_serial"],
                clip_index=evidence.clip_index if evidence.clip_index is not None else data["clip_index"],
                started_at=_parse_time(data["started_at"]), ended_at=_parse_time(data["ended_at"]),
                sha256=evidence.sha256, status=evidence.status, prev_sha256=data.get("prev_sha256"),
                was_verified=evidence.verified_at is not None)


def inspection_coverage(session: Session, viewer: Officer, inspection_id: str, *,
                        tolerance: timedelta = DEFAULT_TOLERANCE) -> dict[str, Any]:
    """Coverage of one inspection the viewer may see; `NotFound` otherwise, as for any other read."""
    inspection = get_scoped(session, Inspection, inspection_id, viewer, what="inspection")
    # camera_serial, not clip: a JSON column stores None as JSON null, which IS NOT NULL does not skip.
    rows = session.scalars(select(Evidence).where(Evidence.inspection_id == inspection.id,
                                                  Evidence.camera_serial.is_not(None))).all()
    clips = [clip_of(e) for e in rows]
    interruptions = [Interruption(camera_serial=i.camera_serial, started_at=i.started_at, ended_at=i.ended_at,
                                  reason=i.reason)
                     for i in session.scalars(select(RecordingInterruption).where(
                         RecordingInterruption.inspection_id == inspection.id).order_by(RecordingInterruption.id))]
    own = {(c.camera_serial, c.clip_index) for c in clips}
    wanted = sorted({(c.camera_serial, c.clip_index - 1) for c in clips
                     if c.prev_sha256 is not None and c.clip_index > 0} - own)
    previous: dict[tuple[str, int], set[str]] = defaultdict(set)
    if wanted:
        # One query over ix_evidence_camera; the previous clip may belong to any inspection.
        for serial, index, sha in session.execute(
                select(Evidence.camera_serial, Evidence.clip_index, Evidence.sha256)
                .where(tuple_(Evidence.camera_serial, Evidence.clip_index).in_(wanted))):
            previous[(serial, index)].add(sha)
    return analyse(inspection.started_at, inspection.ended_at, clips, interruptions, tolerance=tolerance,
                   previous_clips=previous)
