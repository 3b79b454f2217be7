"""A photo's content set against what the phone declared about it: `inspect_photo`.

The phone signs an `evidence.capture` declaration with the capture time and
place (PROTOCOL.md §3, §6). Once `content` has read what the file says, this
module measures how far the EXIF time and position are from the declared ones
and flags a difference past the tolerance, so a reviewer can see when the
picture disagrees with its declaration. It only reports: it never alters the
original, never touches a database, and never raises for a bad file, because a
hostile or broken upload is exactly the case it must describe.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from media.photos.content import DEFAULT_MAX_PIXELS, PhotoSource, opened, read_content
from media.photos.exif import number
from media.photos.report import FlagCode, PhotoReport

_EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)


def inspect_photo(
    source: PhotoSource,
    *,
    declared_captured_at: datetime | None = None,
    declared_location: dict[str, Any] | None = None,
    time_tolerance: timedelta = timedelta(minutes=2),
    distance_tolerance_m: float = 200.0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> PhotoReport:
    """Decode `source` fully and compare its EXIF with the signed declaration.

    Every content problem becomes a flag rather than an exception, so one hostile
    upload cannot break evidence processing. I/O errors on `source` itself (a
    missing path, a failing stream) do propagate: they are facts about storage,
    and recording them as "corrupt" would put a false finding on the evidence.

    EXIF DateTimeOriginal is read with OffsetTimeOriginal (and SubSecTimeOriginal)
    when present, DateTimeDigitized in its absence (`media.photos.exif`). Without
    an offset the time is taken as Asia/Shanghai local time, where these phones
    are used, and `exif_offset_assumed` says so. What cannot be checked is said
    too: `no_capture_time` when the EXIF has no capture time, `no_capture_place`
    when a place was declared and the EXIF has no position.
    A file position is restored afterwards; reading always starts at offset 0.
    """
    report = PhotoReport()
    with opened(source) as fp:
        read_content(fp, report, max_pixels)
    _compare_time(report, declared_captured_at, time_tolerance)
    _compare_location(report, declared_location, distance_tolerance_m)
    return report


def _compare_time(report: PhotoReport, declared: datetime | None, tolerance: timedelta) -> None:
    if declared is None:
        return
    if not isinstance(declared, datetime) or declared.utcoffset() is None:
        report._add(FlagCode.DECLARED_TIME_INVALID, "the declared capture time has no UTC offset",
                    value=str(declared))
        return
    if report.exif_captured_at is None:
        return
    difference = (report.exif_captured_at - declared).total_seconds()
    report.time_difference_s = difference
    if abs(difference) > tolerance.total_seconds():
        report._add(FlagCode.EXIF_TIME_DIFFERS, "the EXIF capture time differs from the declared one",
                    difference_s=difference, tolerance_s=tolerance.total_seconds(),
                    exif_offset_assumed=report.exif_offset_assumed)


def _compare_location(report: PhotoReport, declared: dict[str, Any] | None, tolerance_m: float) -> None:
    if declared is None:
        return
    point = _declared_point(declared)
    if point is None:
        report._add(FlagCode.DECLARED_LOCATION_INVALID, "the declared location is not a valid lat/lon",
                    value=repr(declared)[:200])
        return
    if report.exif_location is None:
        # An EXIF that was read and holds no position at all; an unreadable one is already `gps_invalid`.
        if report.exif_read and not report.has_flag(FlagCode.GPS_INVALID):
            report._add(FlagCode.NO_CAPTURE_PLACE, "the phone declared where the photo was taken, but its EXIF "
                        "holds no GPS position: the declared place cannot be checked against it",
                        declared_accuracy_m=number(declared.get("accuracy_m")))
        return
    distance = _haversine_m(point[0], point[1], report.exif_location["lat"], report.exif_location["lon"])
    report.distance_m = round(distance, 1)
    if distance > tolerance_m:
        # The phone's own accuracy is shown, not added to the tolerance: the reviewer weighs it.
        report._add(FlagCode.GPS_DIFFERS, "the EXIF GPS position differs from the declared location",
                    distance_m=round(distance, 1), tolerance_m=tolerance_m,
                    declared_accuracy_m=number(declared.get("accuracy_m")),
                    exif_accuracy_m=report.exif_location.get("accuracy_m"))


def _declared_point(declared: Any) -> tuple[float, float] | None:
    if not isinstance(declared, dict):
        return None
    lat, lon = number(declared.get("lat")), number(declared.get("lon"))
    if lat is None or lon is None or abs(lat) > 90 or abs(lon) > 180:
        return None
    return lat, lon


def _haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlam = phi2 - phi1, math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlam / 2) ** 2
    return 2 * _EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))
