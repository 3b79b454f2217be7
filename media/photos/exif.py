"""What the camera wrote into a photo's EXIF: capture time, GPS position, orientation, make and model.

EXIF is written by the phone and read here as facts about the content, never
trusted to be well formed: every tag is checked for type and range, and what
cannot be read becomes a flag on the report (`exif_unreadable`,
`exif_time_invalid`, `gps_invalid`), not an exception. So does what is not
there: an EXIF block without a capture time is `no_capture_time`, because the
declared time then goes unchecked and the reviewer must know it was not.

The capture time is DateTimeOriginal (with OffsetTimeOriginal and
SubSecTimeOriginal). Without it, DateTimeDigitized (with its own offset and
sub-seconds) stands in: a camera writes it at the same moment, when the shot is
stored, and `exif_time_tag` says which was used. DateTime in IFD0 never does:
it is when the file was last changed, which an editing app rewrites.
`content` calls `read_exif` once the image is open; `thumbnails` needs
`orientation` alone.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from PIL import Image
from PIL.ExifTags import GPS, IFD, Base

from backend.core.times import LOCAL_TZ
from media.photos.report import FlagCode, PhotoReport

_EXIF_TIME = re.compile(r"(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_EXIF_OFFSET = re.compile(r"([+-])(\d{2}):(\d{2})")


def read_exif(im: Image.Image, report: PhotoReport) -> None:
    """Fill `report` with the camera, orientation, capture time and position the EXIF gives."""
    try:
        exif = im.getexif()
        exif_ifd = exif.get_ifd(IFD.Exif)
        gps_ifd = exif.get_ifd(IFD.GPSInfo)
    except MemoryError:
        raise
    except Exception as exc:
        report._add(FlagCode.EXIF_UNREADABLE, f"the EXIF block cannot be parsed: {exc}")
        return
    if not exif and not exif_ifd and not gps_ifd:
        report._add(FlagCode.NO_EXIF, "the photo carries no EXIF: capture time and place cannot be checked")
        return
    report.exif_read = True
    report.camera_make = _text(exif.get(Base.Make))
    report.camera_model = _text(exif.get(Base.Model))
    report.orientation = orientation(im)
    _read_exif_time(exif_ifd, report)
    _read_gps(gps_ifd, report)


def orientation(im: Image.Image) -> int | None:
    """The EXIF orientation (1 to 8), or None when it is missing, invalid or unreadable."""
    try:
        value = im.getexif().get(Base.Orientation)
    except MemoryError:
        raise
    except Exception:
        return None
    return value if isinstance(value, int) and 1 <= value <= 8 else None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "").strip()
    return value or None


# The capture time's tags, in order of preference: (time, its sub-seconds, its UTC offset).
_TIME_TAGS = (
    ("DateTimeOriginal", Base.DateTimeOriginal, Base.SubsecTimeOriginal, Base.OffsetTimeOriginal),
    ("DateTimeDigitized", Base.DateTimeDigitized, Base.SubsecTimeDigitized, Base.OffsetTimeDigitized),
)


def _read_exif_time(exif_ifd: dict[int, Any], report: PhotoReport) -> None:
    present = next((tags for tags in _TIME_TAGS if _text(exif_ifd.get(tags[1])) is not None), None)
    if present is None:
        report._add(FlagCode.NO_CAPTURE_TIME, "the photo's EXIF gives no capture time (neither DateTimeOriginal nor "
                    "DateTimeDigitized): when it was taken cannot be checked against the declared time")
        return
    name, time_tag, subsec_tag, offset_tag = present
    raw = _text(exif_ifd.get(time_tag)) or ""
    match = _EXIF_TIME.fullmatch(raw)
    try:
        if match is None:
            raise ValueError(raw)
        naive = datetime(*(int(part) for part in match.groups()))  # type: ignore[misc]
    except ValueError:
        report._add(FlagCode.EXIF_TIME_INVALID, f"EXIF {name} is not a valid time", value=raw, tag=name)
        return
    subsec = _text(exif_ifd.get(subsec_tag))
    if subsec and subsec.isdigit():
        naive = naive.replace(microsecond=int(subsec[:6].ljust(6, "0")))
    offset = _text(exif_ifd.get(offset_tag))
    tz = _parse_offset(offset) if offset else None
    report.exif_time_tag = name
    report.exif_offset_assumed = tz is None
    report.exif_captured_at = naive.replace(tzinfo=tz or LOCAL_TZ)


def _parse_offset(value: str) -> timezone | None:
    match = _EXIF_OFFSET.fullmatch(value)
    if match is None:
        return None
    sign, hours, minutes = match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    if delta > timedelta(hours=14):
        return None
    return timezone(-delta if sign == "-" else delta)


def _read_gps(gps: dict[int, Any], report: PhotoReport) -> None:
    if GPS.GPSLatitude not in gps and GPS.GPSLongitude not in gps:
        return
    lat = _degrees(gps.get(GPS.GPSLatitude), gps.get(GPS.GPSLatitudeRef), "N", "S")
    lon = _degrees(gps.get(GPS.GPSLongitude), gps.get(GPS.GPSLongitudeRef), "E", "W")
    if lat is None or lon is None or abs(lat) > 90 or abs(lon) > 180:
        report._add(FlagCode.GPS_INVALID, "the EXIF GPS position cannot be read as a point on Earth",
                    latitude=repr(gps.get(GPS.GPSLatitude))[:100], longitude=repr(gps.get(GPS.GPSLongitude))[:100])
        return
    location = {"lat": round(lat, 7), "lon": round(lon, 7)}
    accuracy = number(gps.get(GPS.GPSHPositioningError))
    if accuracy is not None and accuracy >= 0:
        location["accuracy_m"] = accuracy
    report.exif_location = location


def _degrees(value: Any, ref: Any, positive: str, negative: str) -> float | None:
    """Degrees/minutes/seconds rationals to signed decimal degrees; None when unusable."""
    parts = value if isinstance(value, tuple | list) else (value,)
    if not 1 <= len(parts) <= 3:
        return None
    numbers = [number(p) for p in parts]
    if any(n is None or n < 0 for n in numbers):
        return None
    degrees = sum(n / 60**i for i, n in enumerate(numbers))  # type: ignore[operator]
    hemisphere = (_text(ref) or positive).upper()[:1]
    if hemisphere not in (positive, negative):
        return None
    return -degrees if hemisphere == negative else degrees


def number(value: Any) -> float | None:
    """A finite float from an EXIF rational or a declared JSON number; None for anything else."""
    if value is None or isinstance(value, bool | str | bytes):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return number if math.isfinite(number) else None
