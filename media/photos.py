"""What a photo's content says, set against what the phone declared about it.

The SHA-256 and size of an evidence file prove which bytes arrived; they say
nothing about whether those bytes are a picture, when it was taken or where.
This module reads the content — a real decode with Pillow, plus the EXIF the
camera wrote — so a reviewer can see when the picture disagrees with its signed
`evidence.capture` declaration (PROTOCOL.md §3, §6). It only reports: it never
alters the original, never touches a database, and never raises for a bad file,
because a hostile or broken upload is exactly the case it must describe.

Memory stays bounded: files are read through a file object (never slurped,
except a non-seekable stream, which is spooled to a temporary file), and no
image is decoded whose declared size exceeds the per-call pixel limit.

Two Pillow globals still matter and are left alone on purpose, because changing
them per call would race between threads: `Image.MAX_IMAGE_PIXELS` (a lower
global limit also counts as a decompression bomb here, a higher or `None` one
does not weaken `max_pixels`) and `ImageFile.LOAD_TRUNCATED_IMAGES`, which must
stay `False` (Pillow's default) or truncated images would decode silently.
"""

from __future__ import annotations

import io
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import IO, Any

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError
from PIL.ExifTags import GPS, IFD, Base

from backend.core.times import LOCAL_TZ

try:  # HEIC is what most phones shoot; without the plugin it is reported, not decoded.
    import pillow_heif
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    pillow_heif = None
else:
    pillow_heif.register_heif_opener()

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "HEIF_SUPPORTED",
    "FlagCode",
    "PhotoError",
    "PhotoFlag",
    "PhotoReport",
    "PhotoSource",
    "inspect_photo",
    "make_thumbnail",
]

PhotoSource = str | os.PathLike[str] | IO[bytes]

# 64 Mpx covers the full-resolution output of 48/50/64 Mpx phone sensors (about
# 200 MB of RGB once decoded) while keeping a worker's peak memory predictable.
DEFAULT_MAX_PIXELS = 64_000_000

HEIF_SUPPORTED = pillow_heif is not None

# Only formats a phone plausibly produces are decoded: every extra decoder is
# extra attack surface for files that come from the field.
_WANTED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "HEIF", "AVIF")
Image.init()
_DECODABLE = tuple(name for name in _WANTED_FORMATS if name in Image.OPEN)

_SPOOL_IN_MEMORY = 8 * 1024 * 1024
_HEAD_BYTES = 64


_EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)


class FlagCode(StrEnum):
    """Every problem inspect_photo can report; the values are stable strings for storage."""

    NOT_AN_IMAGE = "not_an_image"
    UNSUPPORTED_FORMAT = "unsupported_format"
    CORRUPT_IMAGE = "corrupt_image"
    DECOMPRESSION_BOMB = "decompression_bomb"
    NO_EXIF = "no_exif"
    EXIF_UNREADABLE = "exif_unreadable"
    EXIF_TIME_INVALID = "exif_time_invalid"
    EXIF_TIME_DIFFERS = "exif_time_differs"
    GPS_INVALID = "gps_invalid"
    GPS_DIFFERS = "gps_differs"
    DECLARED_TIME_INVALID = "declared_time_invalid"
    DECLARED_LOCATION_INVALID = "declared_location_invalid"


class PhotoError(Exception):
    """Raised by make_thumbnail, whose caller needs pixels and cannot use a flag instead.

    `code` is the FlagCode inspect_photo would have reported for the same file.
    """

    def __init__(self, code: FlagCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class PhotoFlag:
    """One problem, with the measurements a reviewer needs to judge it."""

    code: FlagCode
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"code": str(self.code), "message": self.message, **self.details}


@dataclass
class PhotoReport:
    """What the content of one file says; `flags` lists everything questionable about it.

    `width`/`height` are the stored pixel dimensions, before `orientation` is
    applied. `exif_offset_assumed` is True when the camera wrote no UTC offset
    and the time was read as Asia/Shanghai local time. `time_difference_s` is
    EXIF time minus declared time; `distance_m` is between the EXIF and the
    declared position. Both are filled whenever the two sides exist, flagged or not.
    """

    decodable: bool = False
    format: str | None = None
    media_type: str | None = None
    width: int | None = None
    height: int | None = None
    orientation: int | None = None
    exif_captured_at: datetime | None = None
    exif_offset_assumed: bool | None = None
    exif_location: dict[str, float] | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    time_difference_s: float | None = None
    distance_m: float | None = None
    flags: list[PhotoFlag] = field(default_factory=list)

    @property
    def flag_codes(self) -> list[str]:
        return [str(f.code) for f in self.flags]

    def has_flag(self, code: FlagCode | str) -> bool:
        return any(f.code == code for f in self.flags)

    def flag(self, code: FlagCode | str) -> PhotoFlag | None:
        return next((f for f in self.flags if f.code == code), None)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form, for `media_info` and the evidence API."""
        return {
            "decodable": self.decodable,
            "format": self.format,
            "media_type": self.media_type,
            "width": self.width,
            "height": self.height,
            "orientation": self.orientation,
            "exif_captured_at": self.exif_captured_at.isoformat() if self.exif_captured_at else None,
            "exif_offset_assumed": self.exif_offset_assumed,
            "exif_location": dict(self.exif_location) if self.exif_location else None,
            "camera_make": self.camera_make,
            "camera_model": self.camera_model,
            "time_difference_s": self.time_difference_s,
            "distance_m": self.distance_m,
            "flags": [f.as_dict() for f in self.flags],
        }

    def _add(self, code: FlagCode, message: str, **details: Any) -> None:
        self.flags.append(PhotoFlag(code, message, details))


# --------------------------------------------------------------------------- public API


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
    when present. Without an offset the time is taken as Asia/Shanghai local
    time, where these phones are used, and `exif_offset_assumed` says so.
    A file position is restored afterwards; reading always starts at offset 0.
    """
    report = PhotoReport()
    with _opened(source) as fp:
        _inspect_content(fp, report, max_pixels)
    _compare_time(report, declared_captured_at, time_tolerance)
    _compare_location(report, declared_location, distance_tolerance_m)
    return report


def make_thumbnail(source: PhotoSource, *, longest_side: int = 320, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """A small upright JPEG for reviewers' screens; the original is never changed.

    The EXIF orientation is applied because browsers disagree on honouring it
    for derived images, and the thumbnail carries no EXIF (no GPS leaks through
    it). Images already smaller than `longest_side` are not enlarged.
    Raises PhotoError when the file cannot be decoded.
    """
    if longest_side < 1:
        raise ValueError("longest_side must be positive")
    with _opened(source) as fp:
        im = _open_image(fp, _read_head(fp))
        with im:
            _check_pixels(im, max_pixels)
            try:
                # JPEG can decode at 1/2, 1/4 or 1/8 scale: far less memory for the same thumbnail.
                im.draft("RGB", (longest_side, longest_side))
                im.load()
            except MemoryError:
                raise
            except Exception as exc:
                raise PhotoError(FlagCode.CORRUPT_IMAGE, f"the image cannot be decoded: {exc}") from exc
            try:
                upright = ImageOps.exif_transpose(im)
            except MemoryError:
                raise
            except Exception:
                # exif_transpose also rewrites the EXIF and trips over damaged tags; the pixels are fine,
                # so the orientation alone is applied, if it can be read at all.
                method = _TRANSPOSE.get(_orientation(im))
                upright = im.transpose(method) if method is not None else im.copy()
    with upright:
        rgb = _to_rgb(upright)
        rgb.thumbnail((longest_side, longest_side), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        rgb.save(out, format="JPEG", quality=80, optimize=True)
        return out.getvalue()


# --------------------------------------------------------------------------- reading


@contextmanager
def _opened(source: PhotoSource) -> Iterator[IO[bytes]]:
    """A seekable binary file positioned at 0, without reading a large file into memory."""
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as fp:
            yield fp
        return
    if _is_seekable(source):
        position = source.tell()
        try:
            source.seek(0)
            yield source
        finally:
            source.seek(position)
        return
    # Pillow needs to seek; a network stream is spooled to disk past a few MiB.
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
        shutil.copyfileobj(source, spool, 1024 * 1024)
        spool.seek(0)
        yield spool  # type: ignore[misc]


def _is_seekable(fp: IO[bytes]) -> bool:
    try:
        return bool(fp.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _read_head(fp: IO[bytes]) -> bytes:
    head = fp.read(_HEAD_BYTES)
    fp.seek(0)
    return head


def _inspect_content(fp: IO[bytes], report: PhotoReport, max_pixels: int) -> None:
    head = _read_head(fp)
    try:
        im = _open_image(fp, head)
    except PhotoError as err:
        report.format, report.media_type = _sniff(head)
        report._add(err.code, str(err))
        return
    with im:
        report.format, report.media_type = _format_of(im, head)
        report.width, report.height = im.size
        try:
            _check_pixels(im, max_pixels)
        except PhotoError as err:
            # Nothing else is read: even EXIF extraction may trigger a decode (PNG).
            report._add(err.code, str(err), pixels=im.size[0] * im.size[1])
            return
        try:
            im.load()
        except MemoryError:
            raise
        except Exception as exc:
            report._add(FlagCode.CORRUPT_IMAGE, f"the image does not decode: {exc}")
        else:
            report.decodable = True
        _read_exif(im, report)


def _open_image(fp: IO[bytes], head: bytes) -> ImageFile.ImageFile:
    """Identify the file (headers only) or raise PhotoError with the flag it deserves."""
    try:
        return Image.open(fp, formats=_DECODABLE)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PhotoError(FlagCode.DECOMPRESSION_BOMB, f"declared size exceeds Pillow's pixel limit: {exc}") from exc
    except UnidentifiedImageError as exc:
        name, _ = _sniff(head)
        if name is None:
            raise PhotoError(FlagCode.NOT_AN_IMAGE, "the file is not a recognisable image") from exc
        if name in _DECODABLE:
            raise PhotoError(FlagCode.CORRUPT_IMAGE, f"a {name} file whose header is damaged") from exc
        raise PhotoError(FlagCode.UNSUPPORTED_FORMAT, f"{name} images are not decoded here") from exc
    except MemoryError:
        raise
    except Exception as exc:  # a plugin choking on a malformed header
        raise PhotoError(FlagCode.CORRUPT_IMAGE, f"the image header cannot be read: {exc}") from exc


def _check_pixels(im: Image.Image, max_pixels: int) -> None:
    """Refuse to decode past the per-call limit, or past Pillow's global one if that is lower."""
    limit = max_pixels
    if Image.MAX_IMAGE_PIXELS is not None:
        limit = min(limit, Image.MAX_IMAGE_PIXELS)
    width, height = im.size
    if width * height > limit:
        raise PhotoError(
            FlagCode.DECOMPRESSION_BOMB,
            f"declared size {width}x{height} ({width * height} pixels) exceeds the limit of {limit} pixels",
        )


_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1",
                b"mif2", b"heif"}
_AVIF_BRANDS = {b"avif", b"avis"}
_MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "HEIF": "image/heif",
                "AVIF": "image/avif", "GIF": "image/gif", "TIFF": "image/tiff", "BMP": "image/bmp",
                "JPEG2000": "image/jp2", "JXL": "image/jxl", "PSD": "image/vnd.adobe.photoshop"}


def _ftyp_brands(head: bytes) -> set[bytes]:
    if len(head) < 12 or head[4:8] != b"ftyp":
        return set()
    box_end = min(int.from_bytes(head[:4], "big"), len(head))
    brands = {head[8:12]}
    brands.update(head[i:i + 4] for i in range(16, box_end - 3, 4))
    return brands


def _sniff(head: bytes) -> tuple[str | None, str | None]:
    """Name a file by its magic bytes, to tell a damaged photo or an unsupported one from a non-image."""
    name: str | None = None
    brands = _ftyp_brands(head)
    if head.startswith(b"\xff\xd8\xff"):
        name = "JPEG"
    elif head.startswith(b"\x89PNG\r\n\x1a\n"):
        name = "PNG"
    elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        name = "WEBP"
    elif brands & _AVIF_BRANDS:
        name = "AVIF"
    elif brands & _HEIF_BRANDS:
        name = "HEIF"
    elif head[:6] in (b"GIF87a", b"GIF89a"):
        name = "GIF"
    elif head[:4] in (b"II*\x00", b"MM\x00*"):  # also DNG raw
        name = "TIFF"
    elif head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in {12, 40, 52, 56, 64,
                                                                                            108, 124}:
        name = "BMP"
    elif head.startswith((b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")):
        name = "JPEG2000"
    elif head.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")):
        name = "JXL"
    elif head[:4] == b"8BPS":
        name = "PSD"
    if name is None:
        return None, None
    return name, _heif_media_type(brands) if name == "HEIF" else _MEDIA_TYPES.get(name)


def _heif_media_type(brands: set[bytes]) -> str:
    return "image/heic" if brands & {b"heic", b"heix", b"heim", b"heis"} else "image/heif"


def _format_of(im: Image.Image, head: bytes) -> tuple[str | None, str | None]:
    name = im.format
    if name == "MPO":  # a JPEG with extra frames (depth maps, previews): some phones write these
        name = "JPEG"
    if name == "HEIF":
        return name, _heif_media_type(_ftyp_brands(head))
    return name, _MEDIA_TYPES.get(name or "") or (Image.MIME.get(name) if name else None)


# --------------------------------------------------------------------------- EXIF


def _read_exif(im: Image.Image, report: PhotoReport) -> None:
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
    report.camera_make = _text(exif.get(Base.Make))
    report.camera_model = _text(exif.get(Base.Model))
    report.orientation = _orientation(im)
    _read_exif_time(exif_ifd, report)
    _read_gps(gps_ifd, report)


def _orientation(im: Image.Image) -> int | None:
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


_EXIF_TIME = re.compile(r"(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_EXIF_OFFSET = re.compile(r"([+-])(\d{2}):(\d{2})")


def _read_exif_time(exif_ifd: dict[int, Any], report: PhotoReport) -> None:
    raw = _text(exif_ifd.get(Base.DateTimeOriginal))
    if raw is None:
        return
    match = _EXIF_TIME.fullmatch(raw)
    try:
        if match is None:
            raise ValueError(raw)
        naive = datetime(*(int(part) for part in match.groups()))  # type: ignore[misc]
    except ValueError:
        report._add(FlagCode.EXIF_TIME_INVALID, "EXIF DateTimeOriginal is not a valid time", value=raw)
        return
    subsec = _text(exif_ifd.get(Base.SubsecTimeOriginal))
    if subsec and subsec.isdigit():
        naive = naive.replace(microsecond=int(subsec[:6].ljust(6, "0")))
    offset = _text(exif_ifd.get(Base.OffsetTimeOriginal))
    tz = _parse_offset(offset) if offset else None
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
    accuracy = _number(gps.get(GPS.GPSHPositioningError))
    if accuracy is not None and accuracy >= 0:
        location["accuracy_m"] = accuracy
    report.exif_location = location


def _degrees(value: Any, ref: Any, positive: str, negative: str) -> float | None:
    """Degrees/minutes/seconds rationals to signed decimal degrees; None when unusable."""
    parts = value if isinstance(value, tuple | list) else (value,)
    if not 1 <= len(parts) <= 3:
        return None
    numbers = [_number(p) for p in parts]
    if any(n is None or n < 0 for n in numbers):
        return None
    degrees = sum(n / 60**i for i, n in enumerate(numbers))  # type: ignore[operator]
    hemisphere = (_text(ref) or positive).upper()[:1]
    if hemisphere not in (positive, negative):
        return None
    return -degrees if hemisphere == negative else degrees


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool | str | bytes):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return number if math.isfinite(number) else None


# --------------------------------------------------------------------------- comparison


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
        return
    distance = _haversine_m(point[0], point[1], report.exif_location["lat"], report.exif_location["lon"])
    report.distance_m = round(distance, 1)
    if distance > tolerance_m:
        # The phone's own accuracy is shown, not added to the tolerance: the reviewer weighs it.
        report._add(FlagCode.GPS_DIFFERS, "the EXIF GPS position differs from the declared location",
                    distance_m=round(distance, 1), tolerance_m=tolerance_m,
                    declared_accuracy_m=_number(declared.get("accuracy_m")),
                    exif_accuracy_m=report.exif_location.get("accuracy_m"))


def _declared_point(declared: Any) -> tuple[float, float] | None:
    if not isinstance(declared, dict):
        return None
    lat, lon = _number(declared.get("lat")), _number(declared.get("lon"))
    if lat is None or lon is None or abs(lat) > 90 or abs(lon) > 180:
        return None
    return lat, lon


def _haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlam = phi2 - phi1, math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlam / 2) ** 2
    return 2 * _EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


# --------------------------------------------------------------------------- thumbnails


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB for JPEG; transparency goes onto white, as a viewer would show a screenshot."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return im.convert("RGB")
