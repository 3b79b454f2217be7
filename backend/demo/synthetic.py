"""The files the demo makes in place of a phone camera, a body camera, a scanning app and a forger.

The server checks bytes against signed declarations, so the demo needs real files with the right faults:
photos whose EXIF agrees with their declaration, clips whose only property that matters is their bytes, a
scan rewritten after it was declared, and a package copy with one byte of one photo changed.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
from collections.abc import Mapping
from datetime import datetime
from fractions import Fraction
from pathlib import Path

from PIL import Image, ImageDraw
from PIL.ExifTags import GPS, IFD, Base
from PIL.TiffImagePlugin import IFDRational

from backend.demo.scenario import HERE
from sync.client import SHANGHAI


def _dms(value: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    """Decimal degrees as EXIF degree/minute/second rationals (seconds to 1/10000)."""
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = Fraction(round((value - degrees - minutes / 60) * 3600 * 10000), 10000)
    return IFDRational(degrees, 1), IFDRational(minutes, 1), IFDRational(seconds.numerator, seconds.denominator)


def photo(caption: str, colour: tuple[int, int, int], taken: datetime, where: Mapping[str, float] = HERE) -> bytes:
    """A real JPEG with EXIF as a phone camera writes it (capture time with its offset, GPS position), so the
    declared SHA-256 and size are those of a real file and the server's Pillow check has something to read."""
    image = Image.new("RGB", (320, 240), colour)
    draw = ImageDraw.Draw(image)
    draw.rectangle((12, 12, 308, 228), outline=(255, 255, 255), width=3)
    draw.text((24, 24), caption, fill=(255, 255, 255))
    local = taken.astimezone(SHANGHAI)
    exif = Image.Exif()
    exif[Base.Make] = "fieldcase-demo"
    exif[Base.Model] = "phone camera"
    exif[Base.DateTime] = local.strftime("%Y:%m:%d %H:%M:%S")
    sub = exif.get_ifd(IFD.Exif)
    sub[Base.DateTimeOriginal] = local.strftime("%Y:%m:%d %H:%M:%S")
    sub[Base.OffsetTimeOriginal] = "+08:00"
    gps = exif.get_ifd(IFD.GPSInfo)
    gps[GPS.GPSVersionID] = b"\x02\x03\x00\x00"
    gps[GPS.GPSLatitudeRef] = "N" if where["lat"] >= 0 else "S"
    gps[GPS.GPSLongitudeRef] = "E" if where["lon"] >= 0 else "W"
    gps[GPS.GPSLatitude], gps[GPS.GPSLongitude] = _dms(where["lat"]), _dms(where["lon"])
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=80, exif=exif)
    return buf.getvalue()


def write_clip(path: Path, size: int, seconds: float = 0) -> None:
    """A body-camera clip of `size` bytes, built as an MP4 is (`ftyp`, then `moov` with its movie header and a
    track, then `mdat`), so the server's container check (media.video) finds it whole; random bytes stand in
    for the video itself, whose frames nobody decodes."""
    millis = round(seconds * 1000)  # the movie's timescale is 1000 units a second
    mvhd = _box(b"mvhd", bytes(12) + struct.pack(">IIIH", 1000, millis, 0x10000, 0x100) + bytes(10) + _IDENTITY
                + bytes(24) + struct.pack(">I", 2))
    tkhd = _box(b"tkhd", struct.pack(">I", 1) + bytes(8) + struct.pack(">III", 1, 0, millis) + bytes(16) + _IDENTITY
                + struct.pack(">II", 1280 << 16, 720 << 16))
    head = _box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2avc1mp41") + _box(b"moov", mvhd + _box(
        b"trak", tkhd))
    if size < len(head) + 8:
        raise ValueError(f"a clip needs at least {len(head) + 8} bytes")
    path.write_bytes(head + struct.pack(">I", size - len(head)) + b"mdat" + os.urandom(size - len(head) - 8))


# The unit matrix of a movie header: 16.16 fixed point, with 2.30 for its last column.
_IDENTITY = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def write_scan(path: Path) -> None:
    """The scan of the signed on-site record, as a PDF-looking file."""
    path.write_bytes(b"%PDF-1.4\n% fieldcase demo: signed on-site record\n" + os.urandom(60_000))


def rewrite_scan(path: Path) -> None:
    """The scanning app "improves" the file after it was declared: one bit in the middle changes."""
    rewritten = bytearray(path.read_bytes())
    rewritten[len(rewritten) // 2] ^= 0x20
    path.write_bytes(bytes(rewritten))


def tamper_one_photo(source: Path, target: Path) -> str:
    """Copy the package with one byte of its first photo flipped; answers the entry changed."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zout:
        victim = next(n for n in zin.namelist() if n.startswith("files/") and n.lower().endswith((".jpg", ".jpeg")))
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == victim:
                changed = bytearray(data)
                changed[len(changed) // 2] ^= 0x01
                data = bytes(changed)
            zout.writestr(info, data)
    return victim
