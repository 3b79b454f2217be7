"""Photos and clips say what they could not check (PROTOCOL §6, "Photos" and "Clips"), on real camera files.

The files in `camera_files/` were written by cameras, phones and encoders (see its README); the damaged ones are
made here by cutting bytes off them. The upload tests go the whole way a phone goes (declare, upload, complete,
then the analysis job) on both stores: on S3 the clip is read as a stream that cannot seek.
"""

from __future__ import annotations

import io
import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat
from PIL.ExifTags import IFD, Base

from media.photos import HEIF_SUPPORTED, inspect_photo, make_thumbnail
from media.video import inspect_clip
from tests import images
from tests.media.test_uploads import Field

CAMERA_FILES = Path(__file__).parent / "camera_files"
CST = timezone(timedelta(hours=8))

# What the EXIF of the real files says (the times have no offset: read as Shanghai time).
KODAK_TAKEN = datetime(2005, 8, 13, 9, 47, 23, tzinfo=CST)
KODAK_PLACE = {"lat": -0.3713, "lon": 36.0564167, "accuracy_m": 10.0}
CANON_TAKEN = datetime(2008, 5, 30, 15, 56, 1, tzinfo=CST)
IPHONE_TAKEN = datetime(2021, 7, 6, 16, 8, 14, 164000, tzinfo=timezone(timedelta(hours=3)))
IPHONE_PLACE = {"lat": 46.7547028, "lon": 33.3361056, "accuracy_m": 65.0}
ELSEWHERE = {"lat": images.WEST_LAKE[0], "lon": images.WEST_LAKE[1], "accuracy_m": 8.0}

heif_only = pytest.mark.skipif(not HEIF_SUPPORTED, reason="pillow-heif not installed")


def camera_file(name: str) -> bytes:
    return (CAMERA_FILES / name).read_bytes()


def inspect(data: bytes, **declared):
    return inspect_photo(io.BytesIO(data), **declared)


def without_tag(data: bytes, tag: int) -> bytes:
    """The same camera JPEG saved again with one tag of its EXIF sub-IFD taken out."""
    with Image.open(io.BytesIO(data)) as im:
        exif = im.getexif()
        exif.get_ifd(IFD.Exif).pop(tag)
        out = io.BytesIO()
        im.save(out, format="JPEG", quality=95, exif=exif)
    return out.getvalue()


class _Stream(io.RawIOBase):
    """A network body: readable once, not seekable."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self._inner.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


# --------------------------------------------------------------------------- capture time


def test_given_a_camera_photo_with_exif_time_and_gps_when_it_is_verified_then_nothing_is_missing():
    report = inspect(camera_file("Kodak_CX7530.jpg"), declared_captured_at=KODAK_TAKEN,
                     declared_location=KODAK_PLACE)

    assert report.flags == []
    assert (report.exif_captured_at, report.exif_time_tag, report.exif_offset_assumed) == (
        KODAK_TAKEN, "DateTimeOriginal", True)
    assert report.time_difference_s == 0 and report.distance_m < 1


def test_given_a_photo_whose_exif_has_no_DateTimeOriginal_when_it_is_verified_then_it_is_flagged_no_capture_time():
    # A Photoshop import kept the EXIF but only IFD0 DateTime, the edit time, which is never taken for the capture.
    report = inspect(camera_file("Canon_40D_photoshop_import.jpg"), declared_captured_at=CANON_TAKEN)

    assert report.exif_read and report.exif_captured_at is None and report.time_difference_s is None
    assert report.flag_codes == ["no_capture_time"]
    assert "DateTimeOriginal" in report.flag("no_capture_time").message


def test_given_a_photo_with_DateTimeDigitized_alone_when_it_is_verified_then_that_time_is_checked():
    data = without_tag(camera_file("Canon_40D.jpg"), Base.DateTimeOriginal)

    on_time = inspect(data, declared_captured_at=CANON_TAKEN)
    late = inspect(data, declared_captured_at=CANON_TAKEN + timedelta(hours=1))

    assert (on_time.exif_captured_at, on_time.exif_time_tag, on_time.flags) == (
        CANON_TAKEN, "DateTimeDigitized", [])
    assert late.flag_codes == ["exif_time_differs"]


def test_given_a_photo_without_any_exif_when_it_is_verified_then_no_exif_says_it_once():
    report = inspect(images.jpeg_without_exif(), declared_captured_at=CANON_TAKEN, declared_location=ELSEWHERE)

    assert report.flag_codes == ["no_exif"]


def test_given_an_unreadable_DateTimeOriginal_when_it_is_verified_then_it_is_invalid_not_missing():
    report = inspect(images.jpeg_with_exif(taken="0000:00:00 00:00:00"), declared_captured_at=CANON_TAKEN)

    assert report.flag_codes == ["exif_time_invalid"]


# --------------------------------------------------------------------------- capture place


def test_given_a_photo_without_gps_and_a_declared_place_when_it_is_verified_then_it_is_flagged_no_capture_place():
    report = inspect(camera_file("Canon_40D.jpg"), declared_captured_at=CANON_TAKEN, declared_location=ELSEWHERE)

    assert report.flag_codes == ["no_capture_place"]
    flag = report.flag("no_capture_place")
    assert "GPS" in flag.message and flag.details["declared_accuracy_m"] == 8.0
    assert report.distance_m is None


def test_given_a_photo_without_gps_and_no_declared_place_when_it_is_verified_then_nothing_is_missing():
    assert inspect(camera_file("Canon_40D.jpg"), declared_captured_at=CANON_TAKEN).flags == []


def test_given_an_unreadable_gps_position_when_it_is_verified_then_it_is_invalid_not_missing():
    from PIL.TiffImagePlugin import IFDRational

    zero = (IFDRational(0, 0),) * 3
    report = inspect(images.jpeg_with_exif(gps_rationals=(zero, zero)), declared_location=ELSEWHERE)

    assert report.flag_codes == ["gps_invalid"]


# --------------------------------------------------------------------------- undecodable photos


@heif_only
def test_given_a_whole_iphone_heic_when_it_is_verified_then_it_decodes_with_its_time_and_place():
    report = inspect(camera_file("empty_icc.heic"), declared_captured_at=IPHONE_TAKEN,
                     declared_location=IPHONE_PLACE)

    assert report.decodable and report.flags == []
    assert (report.format, report.camera_model, report.orientation) == ("HEIF", "iPhone XS", 1)
    assert report.exif_captured_at == IPHONE_TAKEN


@heif_only
@pytest.mark.parametrize("keep", [0.2, 0.5, 0.9, 0.999])
def test_given_a_truncated_heic_when_it_is_verified_then_it_is_flagged_undecodable(keep):
    data = camera_file("empty_icc.heic")

    report = inspect(data[: int(len(data) * keep)])

    assert not report.decodable
    assert report.has_flag("undecodable") and "cut short" in report.flag("undecodable").message


@heif_only
def test_given_half_an_iphone_heic_when_libheif_shows_its_picture_then_it_is_still_undecodable():
    """The lost half held other items; the primary picture decodes, and the file is still not what was shot."""
    data = camera_file("empty_icc.heic")
    half = data[: len(data) // 2]
    with Image.open(io.BytesIO(half)) as im:
        im.load()  # libheif is lenient: this is why the container is checked too

    assert inspect(half).flag_codes == ["undecodable"]


@pytest.mark.parametrize("keep", [0.6, 0.9, 0.999])
def test_given_a_truncated_camera_jpeg_when_it_is_verified_then_it_is_flagged_undecodable(keep):
    data = camera_file("Kodak_CX7530.jpg")

    report = inspect(data[: int(len(data) * keep)], declared_captured_at=KODAK_TAKEN)

    assert not report.decodable and report.has_flag("undecodable")
    assert report.exif_captured_at == KODAK_TAKEN  # the header survived: what it says is still reported


# --------------------------------------------------------------------------- HEIF orientation


def _upright_distance(thumb: Image.Image, reference: Image.Image) -> tuple[float, float]:
    """How far a thumbnail is from the upright reference, and from the nearest wrong turn of it."""
    def distance(a: Image.Image, b: Image.Image) -> float:
        return ImageStat.Stat(ImageChops.difference(a.convert("L"), b.convert("L"))).mean[0]

    turns = [reference.transpose(t) for t in (Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM,
                                              Image.Transpose.ROTATE_180)]
    return distance(thumb, reference), min(distance(thumb, t) for t in turns)


@heif_only
@pytest.mark.parametrize("orientation", range(1, 9))
def test_given_a_heic_turned_by_irot_and_imir_when_it_is_verified_then_its_orientation_and_thumbnail_are_right(
        orientation):
    data = camera_file(f"Landscape_{orientation}.heic")

    report = inspect(data)
    thumb = Image.open(io.BytesIO(make_thumbnail(io.BytesIO(data))))
    reference = Image.open(io.BytesIO(make_thumbnail(io.BytesIO(camera_file("Landscape_1.heic")))))

    assert report.orientation == orientation
    # The stored size, as for a JPEG: a quarter turn (5 to 8) stores the landscape picture standing up.
    assert (report.width, report.height) == ((600, 450) if orientation < 5 else (450, 600))
    assert thumb.size == (320, 240)
    upright, turned = _upright_distance(thumb, reference)
    assert upright < turned / 2


# --------------------------------------------------------------------------- clips


def test_given_a_whole_camera_mp4_when_it_is_checked_then_its_container_is_whole():
    report = inspect_clip(io.BytesIO(camera_file("white.mp4")))

    assert report.container_whole and report.flags == []
    assert (report.format, report.media_type, report.duration_s) == ("MP4", "video/mp4", 10.0)


@pytest.mark.parametrize(("cut", "says"), [
    (3_000, "'mdat' box at byte 40 declares 8,190 bytes"),  # the camera's file copied part way
    (8_230, "no 'moov' box"),  # the recording stopped before the camera wrote its index
    (13_000, "'moov' box at byte 8,230 declares 5,483 bytes"),
    (13_712, "'moov' box at byte 8,230"),
])
def test_given_a_truncated_mp4_when_it_is_checked_then_it_is_flagged_undecodable(cut, says):
    data = camera_file("white.mp4")[:cut]

    for source in (io.BytesIO(data), io.BufferedReader(_Stream(data))):  # a file, and a stream that cannot seek
        report = inspect_clip(source)
        assert not report.container_whole
        assert report.flag_codes == ["undecodable"] and says in report.flags[0].message


def test_given_an_mp4_without_its_movie_header_when_it_is_checked_then_it_is_flagged_undecodable():
    data = camera_file("white.mp4")
    assert data.count(b"mvhd") == 1

    report = inspect_clip(io.BytesIO(data.replace(b"mvhd", b"free")))

    assert report.flag_codes == ["undecodable"] and "'mvhd'" in report.flags[0].message


@pytest.mark.parametrize(("data", "code"), [
    (bytes(range(256)) * 40, "undecodable"),  # not boxes at all
    (b"", "undecodable"),
    (b"\x1a\x45\xdf\xa3" + bytes(300), "unsupported_format"),  # a WebM: another container, not checked
])
def test_given_a_file_that_is_no_mp4_when_it_is_checked_then_it_says_so(data, code):
    assert inspect_clip(io.BytesIO(data)).flag_codes == [code]


def test_given_a_camera_mp4_damaged_at_random_when_it_is_checked_then_it_never_raises():
    rng = random.Random(17)
    original = camera_file("white.mp4")
    for _ in range(200):
        damaged = bytearray(original)
        for _ in range(rng.randint(1, 8)):  # mostly where the boxes are: the head and the moov at the end
            damaged[rng.choice([rng.randrange(64), rng.randrange(8_230, len(damaged))])] = rng.randrange(256)
        report = inspect_clip(io.BytesIO(bytes(damaged[: rng.choice([len(damaged), rng.randrange(len(damaged))])])))
        json.dumps(report.as_dict())
        assert report.container_whole != bool(report.flags)


# --------------------------------------------------------------------------- the whole way, on both stores


@pytest.fixture
def field(media_app):
    from tests.conftest import Officers

    db = media_app.extensions["fieldcase"].db
    return Field(media_app, lambda app, client: Officers(db, client))


def _upload(field: Field, name: str, data: bytes | None = None, **declared) -> dict:
    data = camera_file(name) if data is None else data
    eid = field.declare(data, **declared)
    answer = field.upload(eid, data)
    assert answer["status"] == "verified"  # a hash is a fact about bytes; what they show is the flags' business
    return answer


def photo_flags(answer: dict) -> list[str]:
    """The evidence's flags but `late_upload`: these cameras shot their pictures years before this upload."""
    return [f for f in answer["flags"] if f != "late_upload"]


def _photo(field: Field, name: str, data: bytes | None = None, *, taken: datetime, place: dict | None,
           media_type: str = "image/jpeg") -> dict:
    return _upload(field, name, data, kind="photo", media_type=media_type, captured_at=taken.isoformat(),
                   location=place)


def test_given_a_camera_photo_when_it_is_uploaded_then_nothing_is_flagged_missing(field):
    answer = _photo(field, "Kodak_CX7530.jpg", taken=KODAK_TAKEN, place=KODAK_PLACE)

    assert photo_flags(answer) == [] and answer["has_thumbnail"]
    assert answer["media_info"]["exif_time_tag"] == "DateTimeOriginal"
    assert answer["media_info"]["exif_offset_assumed"] is True


def test_given_a_photo_without_capture_time_or_gps_when_it_is_uploaded_then_both_are_flagged(field):
    answer = _photo(field, "Canon_40D_photoshop_import.jpg", taken=CANON_TAKEN, place=ELSEWHERE)

    assert photo_flags(answer) == ["no_capture_time", "no_capture_place"]
    messages = {f["code"]: f["message"] for f in answer["media_info"]["flags"]}
    assert "capture time" in messages["no_capture_time"] and "GPS" in messages["no_capture_place"]
    assert answer["has_thumbnail"]  # the picture itself is fine


@heif_only
def test_given_a_truncated_heic_when_it_is_uploaded_then_it_is_undecodable_without_a_thumbnail(field):
    data = camera_file("empty_icc.heic")

    answer = _photo(field, "empty_icc.heic", data[: len(data) // 2], taken=IPHONE_TAKEN, place=IPHONE_PLACE,
                    media_type="image/heic")

    assert "undecodable" in answer["flags"] and answer["media_info"]["decodable"] is False
    assert answer["has_thumbnail"] is False


@heif_only
def test_given_a_heic_turned_by_irot_when_it_is_uploaded_then_media_info_gives_its_orientation(field):
    answer = _photo(field, "Landscape_6.heic", taken=CANON_TAKEN, place=None, media_type="image/heic")

    assert answer["media_info"]["orientation"] == 6
    assert (answer["media_info"]["width"], answer["media_info"]["height"]) == (450, 600)
    assert photo_flags(answer) == ["no_exif"] and answer["has_thumbnail"]


def test_given_a_whole_clip_when_it_is_uploaded_then_its_container_is_whole(field):
    answer = _upload(field, "white.mp4")

    assert answer["flags"] == []
    assert answer["media_info"]["container_whole"] is True and answer["media_info"]["duration_s"] == 10.0


def test_given_a_truncated_clip_when_it_is_uploaded_then_it_is_flagged_undecodable(field):
    answer = _upload(field, "white.mp4", camera_file("white.mp4")[:8_230])

    assert answer["flags"] == ["undecodable"] and answer["media_info"]["container_whole"] is False
    assert "no 'moov' box" in answer["media_info"]["flags"][0]["message"]
