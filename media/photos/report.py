"""The words a photo inspection answers in: its flags, its report, and the one error it raises.

Reading the file (`content`, `exif`), setting it against the declaration
(`declaration`) and making thumbnails (`thumbnails`) all speak these types,
and the evidence pipeline stores them (`PhotoReport.as_dict`, the `FlagCode`
values), so they live apart from any one of those steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from backend.core.times import utc_iso


class FlagCode(StrEnum):
    """Every problem inspect_photo can report; the values are stable strings for storage."""

    NOT_AN_IMAGE = "not_an_image"
    UNSUPPORTED_FORMAT = "unsupported_format"
    UNDECODABLE = "undecodable"
    DECOMPRESSION_BOMB = "decompression_bomb"
    NO_EXIF = "no_exif"
    EXIF_UNREADABLE = "exif_unreadable"
    EXIF_TIME_INVALID = "exif_time_invalid"
    NO_CAPTURE_TIME = "no_capture_time"
    EXIF_TIME_DIFFERS = "exif_time_differs"
    GPS_INVALID = "gps_invalid"
    NO_CAPTURE_PLACE = "no_capture_place"
    GPS_DIFFERS = "gps_differs"
    DECLARED_TIME_INVALID = "declared_time_invalid"
    DECLARED_LOCATION_INVALID = "declared_location_invalid"
    # No longer raised: what `undecodable` was called before clips were checked too. Listed so that
    # evidence read under the old name loses it when read again (media.analysis replaces its own flags).
    CORRUPT_IMAGE = "corrupt_image"


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
    applied; `orientation` is the turn a viewer applies, in EXIF numbering (1 to
    8), for HEIF read from its `irot`/`imir` properties. `exif_time_tag` names
    the EXIF tag the capture time came from (`DateTimeOriginal`, or
    `DateTimeDigitized` in its absence). `exif_offset_assumed` is True when the
    camera wrote no UTC offset and the time was read as Asia/Shanghai local time.
    `time_difference_s` is EXIF time minus declared time; `distance_m` is between
    the EXIF and the declared position. Both are filled whenever the two sides
    exist, flagged or not. `exif_read` is True once an EXIF block was found and
    read: only then does a missing time or position say something about the photo.
    """

    decodable: bool = False
    format: str | None = None
    media_type: str | None = None
    width: int | None = None
    height: int | None = None
    orientation: int | None = None
    exif_captured_at: datetime | None = None
    exif_time_tag: str | None = None
    exif_offset_assumed: bool | None = None
    exif_location: dict[str, float] | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    time_difference_s: float | None = None
    distance_m: float | None = None
    flags: list[PhotoFlag] = field(default_factory=list)
    exif_read: bool = False

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
            "exif_captured_at": utc_iso(self.exif_captured_at),  # the one spelling of an instant
            "exif_time_tag": self.exif_time_tag,
            "exif_offset_assumed": self.exif_offset_assumed,
            "exif_location": dict(self.exif_location) if self.exif_location else None,
            "camera_make": self.camera_make,
            "camera_model": self.camera_model,
            "time_difference_s": self.time_difference_s,
            "distance_m": self.distance_m,
            "flags": [f.as_dict() for f in self.flags],
        }

    def _add(self, code: FlagCode, message: str, **details: Any) -> None:
        """Record a flag; called by the modules of this package as they read and compare."""
        self.flags.append(PhotoFlag(code, message, details))
