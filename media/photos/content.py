"""What a file is, read from its bytes: opened safely, named by format, decoded within a pixel limit.

The SHA-256 and size of an evidence file prove which bytes arrived; they say
nothing about whether those bytes are a picture. This module answers that with
a real decode by Pillow (HEIF/HEIC through pillow-heif when it is installed),
and `read_content` fills a report with everything the file itself says,
including its EXIF (`exif`) and, for HEIF, whether the container is whole and
how it is turned (`heif`). A file that does not decode, or whose container is
cut short, is `undecodable`. Problems with the content become flags; only
I/O errors on the source itself propagate.

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

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from PIL import Image, ImageFile, UnidentifiedImageError

from media.photos.exif import read_exif
from media.photos.heif import read_container
from media.photos.report import FlagCode, PhotoError, PhotoReport

try:  # HEIC is what most phones shoot; without the plugin it is reported, not decoded.
    import pillow_heif
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    pillow_heif = None
else:
    pillow_heif.register_heif_opener()

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


# --------------------------------------------------------------------------- reading


@contextmanager
def opened(source: PhotoSource) -> Iterator[IO[bytes]]:
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


def read_head(fp: IO[bytes]) -> bytes:
    """The first bytes of the file (its magic numbers), with the position back at 0."""
    head = fp.read(_HEAD_BYTES)
    fp.seek(0)
    return head


def read_content(fp: IO[bytes], report: PhotoReport, max_pixels: int) -> None:
    """Fill `report` with what the file says: format, size, whether it decodes, and its EXIF."""
    head = read_head(fp)
    try:
        im = open_image(fp, head)
    except PhotoError as err:
        report.format, report.media_type = _sniff(head)
        report._add(err.code, str(err))
        return
    with im:
        report.format, report.media_type = _format_of(im, head)
        report.width, report.height = im.size
        try:
            check_pixels(im, max_pixels)
        except PhotoError as err:
            # Nothing else is read: even EXIF extraction may trigger a decode (PNG).
            report._add(err.code, str(err), pixels=im.size[0] * im.size[1])
            return
        problem = None
        try:
            im.load()
        except MemoryError:
            raise
        except Exception as exc:
            problem = f"the image does not decode: {exc}"
        container = read_container(fp) if report.format == "HEIF" else None
        if container is not None and container.problem:
            problem = container.problem  # the plainer account: which box is cut short, and by how much
        if problem:
            report._add(FlagCode.UNDECODABLE, problem)
        else:
            report.decodable = True
        read_exif(im, report)
        if container is not None and container.orientation is not None:
            _turn_heif(report, container.orientation)


def _turn_heif(report: PhotoReport, orientation: int) -> None:
    """HEIF's own turn, which libheif has applied: the report gives it as EXIF would, with the stored size."""
    report.orientation = orientation
    if orientation >= 5:  # a quarter turn: pillow-heif's size is the turned one
        report.width, report.height = report.height, report.width


def open_image(fp: IO[bytes], head: bytes) -> ImageFile.ImageFile:
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
            raise PhotoError(FlagCode.UNDECODABLE, f"a {name} file whose header is damaged") from exc
        raise PhotoError(FlagCode.UNSUPPORTED_FORMAT, f"{name} images are not decoded here") from exc
    except MemoryError:
        raise
    except Exception as exc:  # a plugin choking on a malformed header
        raise PhotoError(FlagCode.UNDECODABLE, f"the image header cannot be read: {exc}") from exc


def check_pixels(im: Image.Image, max_pixels: int) -> None:
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


# --------------------------------------------------------------------------- naming the format


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
