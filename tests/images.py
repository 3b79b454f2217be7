"""Real image files for the photo tests, made with Pillow (and pillow-heif) on the fly.

Hand-written byte strings would only test our idea of a JPEG; these are the
files the decoders will actually meet. All are small and quick to make.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from datetime import datetime
from fractions import Fraction
from functools import cache

from PIL import Image, ImageDraw
from PIL.ExifTags import GPS, IFD, Base
from PIL.TiffImagePlugin import IFDRational

# West Lake, Hangzhou.
WEST_LAKE = (30.2425, 120.1485)
MARKER = (255, 0, 0)
BACKGROUND = (0, 90, 200)


def dms(value: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    """Decimal degrees as EXIF degree/minute/second rationals (seconds to 1/10000)."""
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = Fraction(round((value - degrees - minutes / 60) * 3600 * 10000), 10000)
    return IFDRational(degrees, 1), IFDRational(minutes, 1), IFDRational(seconds.numerator, seconds.denominator)


def make_exif(
    *,
    taken: datetime | str | None = datetime(2026, 7, 14, 9, 30, 5),
    offset: str | None = "+08:00",
    subsec: str | None = None,
    lat: float | None = WEST_LAKE[0],
    lon: float | None = WEST_LAKE[1],
    gps_rationals: tuple | None = None,
    accuracy_m: float | None = None,
    make: str | None = "HUAWEI",
    model: str | None = "P60 Pro",
    orientation: int | None = 1,
) -> Image.Exif:
    """An EXIF block as a phone camera writes it; pass None to leave a tag out."""
    exif = Image.Exif()
    if make is not None:
        exif[Base.Make] = make
    if model is not None:
        exif[Base.Model] = model
    if orientation is not None:
        exif[Base.Orientation] = orientation
    if taken is not None:
        sub = exif.get_ifd(IFD.Exif)
        sub[Base.DateTimeOriginal] = taken if isinstance(taken, str) else taken.strftime("%Y:%m:%d %H:%M:%S")
        if offset is not None:
            sub[Base.OffsetTimeOriginal] = offset
        if subsec is not None:
            sub[Base.SubsecTimeOriginal] = subsec
    if lat is not None and lon is not None:
        gps = exif.get_ifd(IFD.GPSInfo)
        gps[GPS.GPSVersionID] = b"\x02\x03\x00\x00"
        gps[GPS.GPSLatitudeRef] = "N" if lat >= 0 else "S"
        gps[GPS.GPSLongitudeRef] = "E" if lon >= 0 else "W"
        gps[GPS.GPSLatitude], gps[GPS.GPSLongitude] = gps_rationals or (dms(lat), dms(lon))
        if accuracy_m is not None:
            gps[GPS.GPSHPositioningError] = IFDRational(round(accuracy_m * 10), 10)
    return exif


def picture(size: tuple[int, int] = (64, 48)) -> Image.Image:
    """A plain picture with a red block in its top-left corner, to see where a rotation put it."""
    im = Image.new("RGB", size, BACKGROUND)
    w, h = size
    ImageDraw.Draw(im).rectangle((0, 0, w // 4, h // 4), fill=MARKER)
    return im


def jpeg(im: Image.Image | None = None, *, exif: Image.Exif | None = None, quality: int = 85) -> bytes:
    im = im if im is not None else picture()
    out = io.BytesIO()
    if exif is None:
        im.save(out, format="JPEG", quality=quality)
    else:
        im.save(out, format="JPEG", quality=quality, exif=exif)
    return out.getvalue()


def jpeg_with_exif(size: tuple[int, int] = (64, 48), **exif_fields) -> bytes:
    """A phone-style JPEG: DateTimeOriginal, OffsetTimeOriginal, GPS, Make, Model, Orientation."""
    return jpeg(picture(size), exif=make_exif(**exif_fields))


def jpeg_without_exif(size: tuple[int, int] = (64, 48)) -> bytes:
    return jpeg(picture(size))


def rotated_jpeg(size: tuple[int, int] = (640, 480)) -> bytes:
    """Stored landscape with Orientation 6: it is shown portrait, rotated 90° clockwise."""
    return jpeg_with_exif(size, orientation=6)


def noisy_jpeg(size: tuple[int, int] = (256, 256), seed: int = 7) -> bytes:
    """Noise compresses badly, so most of the file is entropy-coded scan data."""
    rng = random.Random(seed)
    im = Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))
    return jpeg(im, exif=make_exif())


def truncated_jpeg(keep: float = 0.6) -> bytes:
    """A JPEG cut part-way through its scan data, as an interrupted copy leaves it."""
    data = noisy_jpeg()
    return data[: int(len(data) * keep)]


def png(im: Image.Image) -> bytes:
    out = io.BytesIO()
    im.save(out, format="PNG")
    return out.getvalue()


def gif(size: tuple[int, int] = (32, 32)) -> bytes:
    out = io.BytesIO()
    picture(size).save(out, format="GIF")
    return out.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@cache
def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid, all-black 1-bit PNG of width x height pixels that is only tens of kilobytes.

    Decoded, Pillow would need a byte per pixel (400 MB at the default size); the
    compressed rows are built incrementally so making it needs no such memory.
    """
    row = bytes(1 + (width + 7) // 8)  # filter byte 0 + packed bits
    packer = zlib.compressobj(9)
    parts = []
    batch = 1000
    for start in range(0, height, batch):
        parts.append(packer.compress(row * min(batch, height - start)))
    parts.append(packer.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"".join(parts)) + _png_chunk(
        b"IEND", b"")


def not_an_image() -> bytes:
    return "案件笔录：2026年7月14日，现场检查，无异常。\nThis is a text file, not a photo.\n".encode()


def heic(size: tuple[int, int] = (64, 48), *, exif: Image.Exif | None = None) -> bytes:
    """A HEIC written by pillow-heif itself (x265), as a phone would shoot it."""
    import pillow_heif  # only the HEIC tests need it

    pillow_heif.register_heif_opener()
    out = io.BytesIO()
    kwargs = {"exif": exif.tobytes()} if exif is not None else {}
    picture(size).save(out, format="HEIF", quality=70, **kwargs)
    return out.getvalue()
