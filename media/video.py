"""A body camera's clip, checked for what can be proved without decoding a frame: `inspect_clip`.

The SHA-256 of a clip proves which bytes arrived, not that they are a clip a
player can open. A recording interrupted before the camera finalised it, or a
copy cut short, still hashes to what the phone declared when the phone itself
holds the damaged file. So the container is checked (MP4, and QuickTime's MOV,
which is built the same way; `media.isobmff` walks it): its top-level boxes tile
the file exactly, it starts with `ftyp`, its `moov` (the index a player needs)
is present with a movie header `mvhd` and at least one track, and there is media
data (`mdat`). A clip failing any of these is `undecodable`; one in another
container (WebM, AVI, MPEG-TS…) is `unsupported_format`, since nothing about it
was checked. Frames are not decoded: that would need a video decoder on the
server, a heavy dependency and attack surface for little more certainty.

Like `media.photos`, this only reports: it never alters the original and never
raises for bad bytes; I/O errors on the stream itself do propagate.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import StrEnum
from typing import IO, Any

from media.isobmff import Box, BoxError, box_type, children, first, top_level

_HEAD_BYTES = 192  # enough for two MPEG-TS packets' sync bytes
# A moov of 64 MiB indexes tens of hours of 30 fps video with audio.
_MOOV_LIMIT = 64 * 1024 * 1024
# Top-level types a QuickTime file may begin with when it predates `ftyp`.
_QUICKTIME_FIRST = {"moov", "mdat", "wide", "free", "skip", "pnot"}
_OTHER_CONTAINERS = (
    (b"\x1a\x45\xdf\xa3", "Matroska/WebM"),
    (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "ASF/WMV"),
    (b"FLV\x01", "FLV"),
    (b"\x00\x00\x01\xba", "MPEG program stream"),
)


class ClipFlagCode(StrEnum):
    """What inspect_clip can report; the same strings as the photo flags of the same meaning."""

    UNDECODABLE = "undecodable"
    UNSUPPORTED_FORMAT = "unsupported_format"


@dataclass(frozen=True)
class ClipFlag:
    code: ClipFlagCode
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"code": str(self.code), "message": self.message, **self.details}


@dataclass
class ClipReport:
    """What a clip's container says. `container_whole` is True when every check above passed.

    `duration_s` is the movie header's duration (None when it states none);
    `brands` the `ftyp` major and compatible brands.
    """

    container_whole: bool = False
    format: str | None = None
    media_type: str | None = None
    brands: list[str] = field(default_factory=list)
    duration_s: float | None = None
    flags: list[ClipFlag] = field(default_factory=list)

    @property
    def flag_codes(self) -> list[str]:
        return [str(f.code) for f in self.flags]

    def has_flag(self, code: ClipFlagCode | str) -> bool:
        return any(f.code == code for f in self.flags)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form, for `media_info` and the evidence API."""
        return {"container_whole": self.container_whole, "format": self.format, "media_type": self.media_type,
                "brands": list(self.brands), "duration_s": self.duration_s,
                "flags": [f.as_dict() for f in self.flags]}

    def _add(self, code: ClipFlagCode, message: str, **details: Any) -> None:
        self.flags.append(ClipFlag(code, message, details))


def inspect_clip(fp: IO[bytes]) -> ClipReport:
    """Check the clip's container from its first byte; `fp` may be a stream that cannot seek."""
    report = ClipReport()
    head = fp.read(_HEAD_BYTES)
    other = _other_container(head)
    if other is not None:
        report.format = other
        report._add(ClipFlagCode.UNSUPPORTED_FORMAT, f"{other} clips are not checked here")
        return report
    if not head:
        report._add(ClipFlagCode.UNDECODABLE, "the clip is empty")
        return report
    lead = box_type(head[4:8])
    if lead == "ftyp":
        _read_ftyp(report, head[8:int.from_bytes(head[:4], "big")])
    elif lead in _QUICKTIME_FIRST:
        report.format, report.media_type = "QuickTime", "video/quicktime"
    else:
        report._add(ClipFlagCode.UNDECODABLE, "the file is not an MP4 clip: it does not start with an 'ftyp' box")
        return report
    try:
        fp.seek(0)
        source: IO[bytes] = fp
    except (AttributeError, OSError, ValueError):  # a stream: read it again from the bytes already taken
        source = _Rejoined(head, fp)  # type: ignore[assignment]
    try:
        _check(top_level(source, keep=("moov",), limit=_MOOV_LIMIT), report)
    except BoxError as exc:
        report._add(ClipFlagCode.UNDECODABLE, f"the clip is incomplete or damaged: {exc}")
        return report
    report.container_whole = True
    return report


def _other_container(head: bytes) -> str | None:
    name = next((name for magic, name in _OTHER_CONTAINERS if head.startswith(magic)), None)
    if name is None and head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        name = "AVI"
    if name is None and len(head) > 188 and head[0] == head[188] == 0x47:  # two packets' sync bytes
        name = "MPEG transport stream"
    return name


def _check(boxes: list[Box], report: ClipReport) -> None:
    moov = first(boxes, "moov")
    if moov is None or moov.payload is None:
        raise BoxError("it has no 'moov' box, the index a player needs to find its frames (a recording stopped "
                       "before the camera finished writing it looks like this)")
    inside = children(moov.payload, within="moov")
    mvhd = first(inside, "mvhd")
    if mvhd is None:
        raise BoxError("its 'moov' box has no movie header ('mvhd')")
    report.duration_s = _duration(mvhd.payload or b"")
    if first(inside, "trak") is None:
        raise BoxError("its 'moov' box lists no track")
    if first(boxes, "mdat") is None:
        raise BoxError("it holds no media data ('mdat' box)")


def _read_ftyp(report: ClipReport, payload: bytes) -> None:
    """The major brand (then the minor version, skipped) and the compatible brands name the format."""
    brands = [payload[i:i + 4] for i in range(0, len(payload) - 3, 4) if i != 4]
    names = [b.decode("latin-1") for b in brands if box_type(b) is not None]
    report.brands = list(dict.fromkeys(names))
    major = report.brands[0] if report.brands else ""
    quicktime = major == "qt  "
    report.format = "QuickTime" if quicktime else "MP4"
    report.media_type = "video/quicktime" if quicktime else "video/mp4"


def _duration(mvhd: bytes) -> float | None:
    """Seconds from the movie header (version 0: 32-bit times, version 1: 64-bit); None when not stated."""
    try:
        if mvhd[0] == 1:
            timescale, duration = struct.unpack_from(">IQ", mvhd, 20)
            unknown = 2**64 - 1
        else:
            timescale, duration = struct.unpack_from(">II", mvhd, 12)
            unknown = 2**32 - 1
    except (struct.error, IndexError):
        raise BoxError("its movie header ('mvhd') is cut short") from None
    if timescale == 0 or duration in (0, unknown):
        return None
    return round(duration / timescale, 3)


class _Rejoined:
    """The stream again from its first byte, after `inspect_clip` has peeked at its head."""

    def __init__(self, head: bytes, fp: IO[bytes]) -> None:
        self._head, self._fp = head, fp

    def seekable(self) -> bool:
        return False

    def read(self, n: int = -1) -> bytes:
        if self._head:
            out, self._head = self._head[:n], self._head[n:]
            return out
        return self._fp.read(n)
