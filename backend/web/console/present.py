"""What the console's pages show, gathered from the domain modules: no rule of the domain is restated here.

Each function takes the request's session and the viewer and calls the same
functions the API calls (`backend.casework.queries`, `backend.casework.lifecycle`, `media.coverage`,
`media.uploads`, `backend.casework.audit`, ...), which scope everything to the viewer's
jurisdiction. What is added is presentation: names for ids, local times,
and the geometry of the inspection timeline.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from backend.core.crypto import INTL, suite_named
from backend.core.models import ZERO_HASH, ChainGap, Device, Evidence, Finding, Institution, LedgerRecord, Officer
from backend.core.times import LOCAL_TZ
from media import package_scope
from media.coverage import clip_of
from sync import jws


def parse_time(value: Any) -> datetime | None:
    """A datetime from what the domain answers (a datetime, or RFC 3339 text); None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def local(value: Any, *, seconds: bool = True) -> str:
    """Hangzhou wall-clock time, the way officers and courts read it."""
    when = parse_time(value)
    if when is None:
        return ""
    return when.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def officer_names(session: Session, ids: Iterable[str | None]) -> dict[str, str]:
    wanted = sorted({i for i in ids if i})
    if not wanted:
        return {}
    return {o.id: o.name for o in session.scalars(select(Officer).where(Officer.id.in_(wanted)))}


def institutions(session: Session, ids: Iterable[str | None]) -> dict[str, Institution]:
    wanted = sorted({i for i in ids if i})
    if not wanted:
        return {}
    return {i.id: i for i in session.scalars(select(Institution).where(Institution.id.in_(wanted)))}


def devices(session: Session, ids: Iterable[str | None]) -> dict[str, Device]:
    wanted = sorted({i for i in ids if i})
    if not wanted:
        return {}
    return {d.id: d for d in session.scalars(select(Device).where(Device.id.in_(wanted)))}


# ------------------------------------------------------------------------------------------ the case's ledger


@dataclass
class LedgerRow:
    """One ledger record of the case, with its signature and chain checked again as the page is built."""

    record: LedgerRecord
    officer_name: str
    device_label: str
    signature: str  # valid, invalid, no_key
    chain: str  # first, linked, after_gap, broken, hash_differs


def _signature(record: LedgerRecord, device: Device | None) -> str:
    if device is None:
        return "no_key"
    try:
        jws.verify(jws.parse(record.jws), jws.device_key(device.public_key, device.suite))
    except (jws.RecordRejected, ValueError):
        return "invalid"
    return "valid"


def ledger_rows(session: Session, case_id: str, inspection_ids: list[str]) -> list[LedgerRow]:
    """Every ledger record of the case (the package's rule for "the case's records"), oldest first.

    The signature is verified with the device's enrolled key through
    `sync.jws` (the push path's own check); the chain status says whether the
    record's `prev` is the hash of the same device's record `seq - 1` in the
    ledger (or 64 zeros for `seq` 1, or follows a released chain gap), and
    whether the stored hash is the stored JWS's hash in its device's suite (SHA-256, or SM3 for an SM2 device).
    """
    findings = list(session.scalars(select(Finding).where(Finding.inspection_id.in_(inspection_ids)))) \
        if inspection_ids else []
    evidence = package_scope.case_evidence(session, case_id, inspection_ids)
    records = package_scope.case_records(session, case_id, inspection_ids, findings, evidence)
    keys = devices(session, (r.device_id for r in records))
    names = officer_names(session, (r.officer_id for r in records))
    wanted = sorted({(r.device_id, r.seq - 1) for r in records if r.seq > 1})
    previous: dict[tuple[str, int], str] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        previous.update({(d, s): h for d, s, h in session.execute(
            select(LedgerRecord.device_id, LedgerRecord.seq, LedgerRecord.hash)
            .where(tuple_(LedgerRecord.device_id, LedgerRecord.seq).in_(chunk)))})
    gaps: dict[str, list[ChainGap]] = {}
    for gap in session.scalars(select(ChainGap).where(ChainGap.device_id.in_(sorted(keys)))):
        gaps.setdefault(gap.device_id, []).append(gap)
    rows = []
    for record in records:
        device = keys.get(record.device_id)
        if jws.record_hash(record.jws, suite_named(device.suite) if device else INTL) != record.hash:
            chain = "hash_differs"
        elif record.seq == 1:
            chain = "first" if record.prev == ZERO_HASH else "broken"
        elif (record.device_id, record.seq - 1) in previous:
            chain = "linked" if previous[(record.device_id, record.seq - 1)] == record.prev else "broken"
        elif any(g.first_seq <= record.seq - 1 <= g.last_seq for g in gaps.get(record.device_id, [])):
            chain = "after_gap"
        else:
            chain = "broken"
        rows.append(LedgerRow(record=record, officer_name=names.get(record.officer_id, record.officer_id),
                              device_label=(device.label or device.id) if device else record.device_id,
                              signature=_signature(record, device), chain=chain))
    rows.sort(key=lambda r: (r.record.at or r.record.received_at, r.record.received_at, r.record.id))
    return rows


# ------------------------------------------------------------------------------------- the inspection timeline

WIDTH = 1000
LABEL_WIDTH = 170
RIGHT_PAD = 24
PLOT_WIDTH = WIDTH - LABEL_WIDTH - RIGHT_PAD
AXIS_Y = 34
ROW_TOP = 44
ROW_HEIGHT = 46
PHOTO_ROW = 84
THUMB_W, THUMB_H = 64, 48
# The timeline's colours, named for what they mark. Every text colour is at least 4.5:1 against what it is drawn
# on (white, or the clip bar for a clip's number): tests/web/test_console.py checks the pairs listed in CONTRASTS.
PALETTE = {
    "background": "#ffffff",
    "text": "#1b1f24",
    "axis_text": "#333b44",
    "grid": "#d5dae0",
    "axis": "#4a5560",
    "clip_verified": "#1f5fa8",
    "clip_unverified": "#5f6b76",
    "clip_text": "#ffffff",
    "gap": "#d0021b",
    "gap_line": "#a4001d",
    "gap_text": "#a4001d",
    "explained": "#e8a33d",
    "explained_line": "#8a5a00",
    "explained_text": "#6b4500",
    "missing_text": "#a4001d",
    "photo_frame": "#1b1f24",
    "photo_placeholder": "#e9edf1",
}
CONTRASTS = (("text", "background"), ("axis_text", "background"), ("clip_text", "clip_verified"),
             ("clip_text", "clip_unverified"), ("gap_text", "background"), ("explained_text", "background"),
             ("missing_text", "background"))
TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


@dataclass
class Bar:
    evidence_id: str
    x: float
    width: float
    y: float
    label: str
    verified: bool
    title: str


@dataclass
class Lane:
    camera: str
    y: float
    bars: list[Bar] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    missing_count: int = 0


@dataclass
class GapMark:
    x: float
    width: float
    seconds: float
    explained: bool
    reason: str | None
    start: str
    end: str


@dataclass
class PhotoMark:
    evidence_id: str
    x: float
    y: float
    at: str
    from_exif: bool
    has_thumbnail: bool


@dataclass
class Tick:
    x: float
    label: str


@dataclass
class Timeline:
    width: int
    height: int
    lanes: list[Lane]
    gaps: list[GapMark]
    photos: list[PhotoMark]
    ticks: list[Tick]
    window_start_x: float
    window_end_x: float | None
    window_start: str
    window_end: str
    lanes_bottom: float
    photo_row_y: float


def _tick_step(span: float) -> int:
    for step in TICK_STEPS:
        if span / step <= 10:
            return step
    return TICK_STEPS[-1]


def inspection_timeline(coverage: dict[str, Any], clips: list[Evidence], photos: list[Evidence]) -> Timeline:
    """The geometry of the inspection's timeline: window, each camera's clips, the gaps, and the photos.

    Everything judged comes from `media.coverage` (the window, which clips
    count, the gaps and their length, the missing clip numbers); the clips'
    times are read through `coverage.clip_of`, the photos' through their EXIF
    capture time (`media_info.exif_captured_at`), else the declared time.
    """
    start = parse_time(coverage["window"]["start"])
    end = parse_time(coverage["window"]["end"])
    assert start is not None
    parsed = [clip_of(e) for e in clips]
    moments = [start, *(t for c in parsed for t in (c.started_at, c.ended_at))]
    if end is not None:
        moments.append(end)
    placed: list[tuple[Evidence, datetime, bool]] = []
    for p in photos:
        exif = parse_time((p.media_info or {}).get("exif_captured_at"))
        when = exif or p.captured_at
        placed.append((p, when, exif is not None))
        moments.append(when)
    lo, hi = min(moments), max(moments)
    if hi <= lo:
        hi = lo + timedelta(seconds=60)
    pad = (hi - lo) * 0.03
    lo, hi = lo - pad, hi + pad
    span = (hi - lo).total_seconds()

    def x(at: datetime) -> float:
        return round(LABEL_WIDTH + (at - lo).total_seconds() / span * PLOT_WIDTH, 2)

    cameras = sorted({c.camera_serial for c in parsed})
    missing = {g["camera_serial"]: g for g in coverage.get("clip_index_gaps", [])}
    lanes = []
    for n, camera in enumerate(cameras):
        lane = Lane(camera=camera, y=ROW_TOP + n * ROW_HEIGHT)
        gap = missing.get(camera)
        if gap:
            lane.missing, lane.missing_count = list(gap["missing"]), int(gap["missing_count"])
        for c in sorted((c for c in parsed if c.camera_serial == camera), key=lambda c: (c.started_at, c.clip_index)):
            left, right = x(min(c.started_at, c.ended_at)), x(max(c.started_at, c.ended_at))
            lane.bars.append(Bar(evidence_id=c.evidence_id, x=left, width=max(right - left, 2.0), y=lane.y + 8,
                                 label=f"#{c.clip_index}", verified=c.verified,
                                 title=f"{camera} #{c.clip_index} {local(c.started_at)} – {local(c.ended_at)}"
                                       f" ({c.status})"))
        lanes.append(lane)
    lanes_bottom = ROW_TOP + max(len(lanes), 1) * ROW_HEIGHT + 16  # room under the bars for the window's labels
    gaps = []
    for g in coverage.get("gaps", []):
        gs, ge = parse_time(g["start"]), parse_time(g["end"])
        if gs is None or ge is None:
            continue
        gaps.append(GapMark(x=x(gs), width=max(x(ge) - x(gs), 2.0), seconds=float(g["seconds"]),
                            explained=bool(g.get("explained")), reason=g.get("reason"),
                            start=local(gs), end=local(ge)))
    photo_row_y = lanes_bottom + 12
    marks = []
    lanes_end: list[float] = []  # right edge of the last thumbnail in each stacked lane
    for p, when, from_exif in sorted(placed, key=lambda item: item[1]):
        px = x(when)
        lane_no = next((i for i, right in enumerate(lanes_end) if px - THUMB_W / 2 > right + 2), len(lanes_end))
        if lane_no == len(lanes_end):
            lanes_end.append(0.0)
        lanes_end[lane_no] = px + THUMB_W / 2
        marks.append(PhotoMark(evidence_id=p.id, x=px, y=photo_row_y + lane_no * (THUMB_H + 6), at=local(when),
                               from_exif=from_exif, has_thumbnail=p.thumbnail_key is not None))
    photo_rows = max(len(lanes_end), 1)
    height = int(photo_row_y + photo_rows * (THUMB_H + 6) + 16)
    step = _tick_step(span)
    first = math.ceil(lo.timestamp() / step) * step
    ticks = []
    t = first
    while t <= hi.timestamp():
        at = datetime.fromtimestamp(t, UTC)
        ticks.append(Tick(x=x(at), label=at.astimezone(LOCAL_TZ).strftime("%H:%M:%S" if step < 60 else "%H:%M")))
        t += step
    return Timeline(width=WIDTH, height=height, lanes=lanes, gaps=gaps, photos=marks, ticks=ticks,
                    window_start_x=x(start), window_end_x=x(end) if end is not None else None,
                    window_start=local(start), window_end=local(end) if end is not None else "",
                    lanes_bottom=lanes_bottom, photo_row_y=photo_row_y)


def exif_rows(evidence: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Declared against read, for the evidence page: capture time, position, camera, size."""
    info = evidence.get("media_info") or {}
    if not info:
        return None
    declared_loc = evidence.get("location") or {}
    exif_loc = info.get("exif_location") or {}

    def position(loc: dict[str, Any]) -> str:
        if loc.get("lat") is None or loc.get("lon") is None:
            return ""
        return f"{float(loc['lat']):.5f}, {float(loc['lon']):.5f}"

    camera = " ".join(v for v in (info.get("camera_make"), info.get("camera_model")) if v)
    size = f"{info['width']} × {info['height']}" if info.get("width") and info.get("height") else ""
    return [
        {"key": "evidence.exif.time", "declared": local(evidence.get("captured_at")),
         "read": local(info.get("exif_captured_at")), "difference": info.get("time_difference_s"), "unit": "s",
         "flagged": bool({"exif_time_differs", "no_capture_time"} & set(evidence.get("flags") or []))},
        {"key": "evidence.exif.location", "declared": position(declared_loc), "read": position(exif_loc),
         "difference": info.get("distance_m"), "unit": "m",
         "flagged": bool({"gps_differs", "no_capture_place"} & set(evidence.get("flags") or []))},
        {"key": "evidence.exif.camera", "declared": "", "read": camera, "difference": None, "unit": "",
         "flagged": False},
        {"key": "evidence.exif.size", "declared": "", "read": size, "difference": None, "unit": "", "flagged": False},
    ]
