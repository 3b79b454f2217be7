"""media.photos against real files: EXIF facts, declared-vs-measured flags, thumbnails, hostile input."""

from __future__ import annotations

import io
import json
import math
import random
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from media.photos import (
    DEFAULT_MAX_PIXELS,
    HEIF_SUPPORTED,
    FlagCode,
    PhotoError,
    inspect_photo,
    make_thumbnail,
)
from tests import images

ROOT = Path(__file__).resolve().parents[2]
CST = timezone(timedelta(hours=8))
TAKEN = datetime(2026, 7, 14, 9, 30, 5, tzinfo=CST)
WEST_LAKE = {"lat": images.WEST_LAKE[0], "lon": images.WEST_LAKE[1], "accuracy_m": 8.0}


def inspect(data: bytes, **kwargs):
    return inspect_photo(io.BytesIO(data), **kwargs)


def offset_north(location: dict, metres: float) -> dict:
    """The same point moved north by `metres` (one degree of latitude is ~111.195 km)."""
    return {**location, "lat": location["lat"] + metres / 111_194.93}


def thumbnail_image(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def is_red(pixel) -> bool:
    r, g, b = pixel[:3]
    return r > 200 and g < 60 and b < 60


@pytest.fixture(autouse=True)
def _pillow_defaults():
    """The module must not change Pillow's globals, and the tests rely on their defaults."""
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    yield
    assert before == (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)


# --------------------------------------------------------------------------- EXIF facts


def test_exif_is_read_back():
    report = inspect(images.jpeg_with_exif((64, 48), subsec="25", accuracy_m=4.5),
                     declared_captured_at=TAKEN, declared_location=WEST_LAKE)

    assert report.decodable
    assert (report.format, report.media_type, report.width, report.height) == ("JPEG", "image/jpeg", 64, 48)
    assert (report.camera_make, report.camera_model, report.orientation) == ("HUAWEI", "P60 Pro", 1)
    assert report.exif_captured_at == TAKEN.replace(microsecond=250_000)
    assert report.exif_captured_at.utcoffset() == timedelta(hours=8)
    assert report.exif_offset_assumed is False
    assert report.exif_location["lat"] == pytest.approx(30.2425, abs=1e-6)
    assert report.exif_location["lon"] == pytest.approx(120.1485, abs=1e-6)
    assert report.exif_location["accuracy_m"] == pytest.approx(4.5)
    assert report.time_difference_s == pytest.approx(0.25)
    assert report.distance_m < 1
    assert report.flags == []


def test_report_as_dict_is_json():
    report = inspect(images.jpeg_with_exif(), declared_captured_at=TAKEN + timedelta(hours=1),
                     declared_location=offset_north(WEST_LAKE, 5000))
    data = json.loads(json.dumps(report.as_dict()))

    assert data["exif_captured_at"] == "2026-07-14T01:30:05.000Z"  # 09:30:05 in Hangzhou, by the one time rule
    assert data["exif_location"] == {"lat": pytest.approx(30.2425), "lon": pytest.approx(120.1485)}
    assert [f["code"] for f in data["flags"]] == ["exif_time_differs", "gps_differs"]
    assert report.flag_codes == ["exif_time_differs", "gps_differs"]
    assert set(data) >= {"decodable", "format", "media_type", "width", "height", "orientation", "camera_make",
                         "camera_model", "exif_offset_assumed", "time_difference_s", "distance_m"}


def test_exif_offset_other_than_china():
    # 20:30:05 at UTC-5 is 01:30:05 UTC, the same instant as 09:30:05 in Hangzhou the next day.
    report = inspect(images.jpeg_with_exif(taken=datetime(2026, 7, 13, 20, 30, 5), offset="-05:00"),
                     declared_captured_at=TAKEN)

    assert report.exif_captured_at == datetime(2026, 7, 14, 1, 30, 5, tzinfo=UTC)
    assert report.exif_offset_assumed is False
    assert report.time_difference_s == 0
    assert report.flags == []


def test_exif_without_offset_is_read_as_shanghai_time():
    report = inspect(images.jpeg_with_exif(offset=None), declared_captured_at=TAKEN)

    assert report.exif_offset_assumed is True
    assert report.exif_captured_at == TAKEN
    assert report.exif_captured_at.utcoffset() == timedelta(hours=8)
    assert report.flags == []


def test_southern_and_western_hemispheres():
    report = inspect(images.jpeg_with_exif(lat=-33.8568, lon=-70.6483))  # Santiago: S and W refs

    assert report.exif_location["lat"] == pytest.approx(-33.8568, abs=1e-6)
    assert report.exif_location["lon"] == pytest.approx(-70.6483, abs=1e-6)


def test_no_exif():
    report = inspect(images.jpeg_without_exif(), declared_captured_at=TAKEN, declared_location=WEST_LAKE)

    assert report.decodable
    assert report.flag_codes == ["no_exif"]
    assert report.exif_captured_at is None and report.exif_location is None
    assert report.time_difference_s is None and report.distance_m is None


def test_exif_without_time_or_gps_is_not_no_exif():
    report = inspect(images.jpeg_with_exif(taken=None, lat=None, lon=None), declared_captured_at=TAKEN,
                     declared_location=WEST_LAKE)

    assert report.camera_make == "HUAWEI"
    # What is missing is said, each on its own (tests/media/test_photo_flags.py has the whole story).
    assert report.flag_codes == ["no_capture_time", "no_capture_place"]


@pytest.mark.parametrize("value", ["0000:00:00 00:00:00", "    :  :     :  :  ", "2026:13:40 25:00:00", "yesterday"])
def test_unreadable_exif_time_is_flagged(value):
    report = inspect(images.jpeg_with_exif(taken=value), declared_captured_at=TAKEN)

    assert report.exif_captured_at is None
    assert report.flag_codes == ["exif_time_invalid"]


def test_unreadable_gps_is_flagged():
    from PIL.TiffImagePlugin import IFDRational

    zero = (IFDRational(0, 0), IFDRational(0, 0), IFDRational(0, 0))
    report = inspect(images.jpeg_with_exif(gps_rationals=(zero, zero)), declared_location=WEST_LAKE)

    assert report.exif_location is None
    assert report.flag_codes == ["gps_invalid"]


# --------------------------------------------------------------------------- declared vs measured


@pytest.mark.parametrize(("shift", "flagged"), [
    (timedelta(seconds=0), False),
    (timedelta(seconds=119), False),
    (timedelta(seconds=-120), False),
    (timedelta(seconds=121), True),
    (timedelta(minutes=-3), True),
    (timedelta(hours=8), True),  # the classic: a local time read as UTC
])
def test_time_difference_flagged_only_beyond_tolerance(shift, flagged):
    report = inspect(images.jpeg_with_exif(), declared_captured_at=TAKEN - shift)

    assert report.time_difference_s == shift.total_seconds()
    assert report.has_flag(FlagCode.EXIF_TIME_DIFFERS) is flagged
    if flagged:
        flag = report.flag("exif_time_differs")
        assert flag.details["difference_s"] == shift.total_seconds()
        assert flag.details["tolerance_s"] == 120


def test_time_tolerance_is_per_call():
    data = images.jpeg_with_exif()
    declared = TAKEN + timedelta(seconds=30)

    assert not inspect(data, declared_captured_at=declared).flags
    tight = inspect(data, declared_captured_at=declared, time_tolerance=timedelta(seconds=10))
    assert tight.flag_codes == ["exif_time_differs"]


def test_declared_time_in_utc_compares_as_the_same_instant():
    report = inspect(images.jpeg_with_exif(), declared_captured_at=TAKEN.astimezone(UTC))

    assert report.time_difference_s == 0
    assert report.flags == []


@pytest.mark.parametrize(("metres", "flagged"), [(0, False), (150, False), (199, False), (260, True), (5000, True)])
def test_gps_difference_flagged_only_beyond_tolerance(metres, flagged):
    report = inspect(images.jpeg_with_exif(), declared_location=offset_north(WEST_LAKE, metres))

    assert report.distance_m == pytest.approx(metres, abs=1.0)
    assert report.has_flag(FlagCode.GPS_DIFFERS) is flagged
    if flagged:
        flag = report.flag(FlagCode.GPS_DIFFERS)
        assert flag.details["distance_m"] == pytest.approx(metres, abs=1.0)
        assert flag.details["tolerance_m"] == 200.0
        assert flag.details["declared_accuracy_m"] == 8.0


def test_gps_distance_is_great_circle():
    # West Lake to People's Square, Shanghai: the spherical law of cosines gives 167 459.6 m.
    report = inspect(images.jpeg_with_exif(), declared_location={"lat": 31.2323, "lon": 121.4691})

    assert report.distance_m == pytest.approx(167_459.6, abs=1)
    assert report.has_flag("gps_differs")


def test_distance_tolerance_is_per_call():
    data = images.jpeg_with_exif()
    near = offset_north(WEST_LAKE, 150)

    assert inspect(data, declared_location=near, distance_tolerance_m=100).flag_codes == ["gps_differs"]
    assert inspect(data, declared_location=near, distance_tolerance_m=500).flags == []


@pytest.mark.parametrize("declared", [{"lat": "north"}, {"lat": 91, "lon": 0}, {"lat": math.nan, "lon": 1}, [1, 2],
                                      {"lon": 120.1}])
def test_bad_declared_location_is_a_flag(declared):
    report = inspect(images.jpeg_with_exif(), declared_location=declared)

    assert report.flag_codes == ["declared_location_invalid"]


def test_naive_declared_time_is_a_flag():
    report = inspect(images.jpeg_with_exif(), declared_captured_at=datetime(2026, 7, 14, 9, 30, 5))

    assert report.flag_codes == ["declared_time_invalid"]
    assert report.time_difference_s is None


# --------------------------------------------------------------------------- thumbnails


def test_rotated_photo_thumbnail_is_upright():
    data = images.rotated_jpeg((640, 480))
    report = inspect(data)
    assert (report.width, report.height, report.orientation) == (640, 480, 6)

    thumb = thumbnail_image(make_thumbnail(io.BytesIO(data)))

    assert thumb.format == "JPEG" and thumb.mode == "RGB"
    assert thumb.size == (240, 320)  # dimensions swapped, longest side 320
    # Orientation 6 is "rotate 90° clockwise to view": the stored top-left marker ends top-right.
    assert is_red(thumb.getpixel((thumb.width - 5, 5)))
    assert not is_red(thumb.getpixel((5, 5)))
    assert not thumb.getexif()  # nothing to rotate twice, and no GPS leaking through the thumbnail


def test_landscape_thumbnail_longest_side():
    thumb = thumbnail_image(make_thumbnail(io.BytesIO(images.jpeg_with_exif((1000, 500)))))

    assert thumb.size == (320, 160)
    assert is_red(thumb.getpixel((5, 5)))


def test_thumbnail_size_is_configurable_and_never_enlarges():
    assert thumbnail_image(make_thumbnail(io.BytesIO(images.jpeg_without_exif((900, 1200))),
                                          longest_side=100)).size == (75, 100)
    assert thumbnail_image(make_thumbnail(io.BytesIO(images.jpeg_without_exif((64, 48))))).size == (64, 48)


def test_thumbnail_of_transparent_png_is_rgb_on_white():
    im = Image.new("RGBA", (400, 200), (0, 0, 0, 0))
    im.paste((255, 0, 0, 255), (0, 0, 100, 100))
    thumb = thumbnail_image(make_thumbnail(io.BytesIO(images.png(im))))

    assert thumb.mode == "RGB" and thumb.size == (320, 160)
    assert is_red(thumb.getpixel((5, 5)))
    assert min(thumb.getpixel((300, 150))) > 240


def test_thumbnail_survives_damaged_exif():
    # One flipped byte turns the Model tag (0x0110, text) into ImageLength (0x0101): exif_transpose's
    # EXIF rewrite then fails, though the orientation and the pixels are intact.
    raw = images.make_exif(orientation=6).tobytes()
    big_endian = raw.removeprefix(b"Exif\x00\x00")[:2] == b"MM"
    model = b"\x01\x10\x00\x02" if big_endian else b"\x10\x01\x02\x00"
    assert raw.count(model) == 1
    damaged = raw.replace(model, b"\x01\x01\x00\x02" if big_endian else b"\x01\x01\x02\x00")
    out = io.BytesIO()
    images.picture((640, 480)).save(out, format="JPEG", exif=damaged)
    data = out.getvalue()
    assert inspect(data).decodable

    thumb = thumbnail_image(make_thumbnail(io.BytesIO(data)))

    assert thumb.size == (240, 320)
    assert is_red(thumb.getpixel((thumb.width - 5, 5)))


def test_thumbnail_from_path(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(images.rotated_jpeg())

    assert thumbnail_image(make_thumbnail(path)).size == (240, 320)
    assert thumbnail_image(make_thumbnail(str(path))).size == (240, 320)


@pytest.mark.parametrize(("data", "code"), [
    (images.truncated_jpeg(), FlagCode.UNDECODABLE),
    (images.not_an_image(), FlagCode.NOT_AN_IMAGE),
    (images.gif(), FlagCode.UNSUPPORTED_FORMAT),
    (images.png_bomb(), FlagCode.DECOMPRESSION_BOMB),
])
def test_thumbnail_of_undecodable_raises_photo_error(data, code):
    with pytest.raises(PhotoError) as err:
        make_thumbnail(io.BytesIO(data))
    assert err.value.code == code


# --------------------------------------------------------------------------- broken and hostile files


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_jpeg_is_undecodable(keep):
    report = inspect(images.truncated_jpeg(keep), declared_captured_at=TAKEN)

    assert not report.decodable
    assert report.has_flag(FlagCode.UNDECODABLE)
    assert (report.format, report.width, report.height) == ("JPEG", 256, 256)
    # The header survived, so its EXIF is still reported: a fact about what was received.
    assert report.exif_captured_at == TAKEN


def test_jpeg_cut_inside_its_header_is_undecodable_not_a_non_image():
    report = inspect(images.jpeg_with_exif()[:40])

    assert report.flag_codes == ["undecodable"]
    assert report.format == "JPEG"


def test_decompression_bomb_is_flagged_quickly_without_decoding():
    data = images.png_bomb()  # 20000 x 20000: 400 MB to decode, ~50 kB on disk
    assert len(data) < 100_000

    started = time.perf_counter()
    report = inspect(data, declared_captured_at=TAKEN)
    elapsed = time.perf_counter() - started

    assert report.flag_codes == ["decompression_bomb"]
    assert not report.decodable
    assert report.format == "PNG"
    assert elapsed < 1.0


def test_decompression_bomb_uses_little_memory():
    """In a fresh interpreter, so the peak RSS belongs to this inspection alone."""
    script = textwrap.dedent("""
        import io, resource, sys
        from media.photos import inspect_photo
        from tests import images
        data = images.png_bomb()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        report = inspect_photo(io.BytesIO(data))
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(report.flag_codes[0], (after - before) // 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         check=True).stdout.split()

    assert out[0] == "decompression_bomb"
    assert int(out[1]) < 50  # MiB; decoding would have taken about 400


def test_pixel_limit_is_per_call_and_does_not_rely_on_pillows_global(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # someone disabled Pillow's protection
    report = inspect(images.png_bomb())

    assert report.flag_codes == ["decompression_bomb"]
    assert (report.width, report.height) == (20_000, 20_000)
    assert report.flag("decompression_bomb").details["pixels"] == 400_000_000

    data = images.jpeg_with_exif((100, 100))
    assert inspect(data, max_pixels=9_999).flag_codes == ["decompression_bomb"]
    assert inspect(data, max_pixels=10_000).flags == []


def test_default_limit_catches_what_pillows_global_lets_through():
    data = images.png_bomb(10_000, 8_000)  # 80 Mpx: under Pillow's 89 Mpx warning threshold
    assert DEFAULT_MAX_PIXELS < 10_000 * 8_000

    report = inspect(data)

    assert report.flag_codes == ["decompression_bomb"]
    assert (report.width, report.height) == (10_000, 8_000)


@pytest.mark.parametrize("data", [images.not_an_image(), b"", b"\x00" * 100, b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
                                  b"BMW X5 inspection notes"])
def test_non_images(data):
    report = inspect(data, declared_captured_at=TAKEN, declared_location=WEST_LAKE)

    assert report.flag_codes == ["not_an_image"]
    assert not report.decodable
    assert report.format is None


def test_image_formats_a_phone_does_not_send_are_unsupported():
    tiff = io.BytesIO()
    images.picture().save(tiff, format="TIFF")
    for data, name in [(images.gif(), "GIF"), (tiff.getvalue(), "TIFF")]:
        report = inspect(data)
        assert report.flag_codes == ["unsupported_format"]
        assert report.format == name


@pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")  # Pillow's notes on damaged EXIF
def test_random_damage_never_raises():
    rng = random.Random(1234)
    originals = [images.jpeg_with_exif((64, 48)), images.png(images.picture()), images.noisy_jpeg((48, 48))]
    if HEIF_SUPPORTED:
        originals.append(images.heic(exif=images.make_exif()))
    for original in originals:
        for _ in range(60):
            damaged = bytearray(original)
            for _ in range(rng.randint(1, 12)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            cut = rng.choice([len(damaged), rng.randrange(1, len(damaged))])
            report = inspect(bytes(damaged[:cut]), declared_captured_at=TAKEN, declared_location=WEST_LAKE)
            json.dumps(report.as_dict())
            assert report.decodable or report.flags


# --------------------------------------------------------------------------- sources


def test_path_and_file_sources(tmp_path):
    data = images.jpeg_with_exif()
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)

    expected = inspect(data).as_dict()
    assert inspect_photo(path).as_dict() == expected
    assert inspect_photo(str(path)).as_dict() == expected
    with path.open("rb") as fp:
        assert inspect_photo(fp).as_dict() == expected


def test_file_position_is_restored():
    fp = io.BytesIO(images.jpeg_with_exif())
    fp.seek(17)

    assert inspect_photo(fp).decodable
    assert fp.tell() == 17


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


def test_non_seekable_stream():
    report = inspect_photo(_Stream(images.jpeg_with_exif()), declared_captured_at=TAKEN)

    assert report.decodable and report.exif_captured_at == TAKEN
    assert thumbnail_image(make_thumbnail(_Stream(images.rotated_jpeg()))).size == (240, 320)


def test_storage_errors_are_not_reported_as_content(tmp_path):
    with pytest.raises(FileNotFoundError):
        inspect_photo(tmp_path / "missing.jpg")


# --------------------------------------------------------------------------- HEIC


heif_only = pytest.mark.skipif(not HEIF_SUPPORTED, reason="pillow-heif not installed")


@heif_only
def test_heic_decodes_with_exif():
    data = images.heic((64, 48), exif=images.make_exif())
    assert data[4:12] == b"ftypheic"

    report = inspect(data, declared_captured_at=TAKEN, declared_location=WEST_LAKE)

    assert report.decodable
    assert (report.format, report.media_type, report.width, report.height) == ("HEIF", "image/heic", 64, 48)
    assert (report.camera_make, report.camera_model) == ("HUAWEI", "P60 Pro")
    assert report.exif_captured_at == TAKEN
    assert report.exif_location["lat"] == pytest.approx(30.2425, abs=1e-6)
    assert report.flags == []


@heif_only
def test_heic_thumbnail_is_upright():
    # HEIF stores rotation in its own `irot` box; pillow-heif moves EXIF orientation there on save.
    data = images.heic((800, 600), exif=images.make_exif(orientation=6))

    thumb = thumbnail_image(make_thumbnail(io.BytesIO(data)))

    assert thumb.size == (240, 320)
    assert is_red(thumb.getpixel((thumb.width - 5, 5)))


@heif_only
def test_truncated_heic_is_undecodable():
    data = images.heic((256, 256), exif=images.make_exif())

    report = inspect(data[: len(data) * 2 // 3])

    assert not report.decodable
    assert report.has_flag(FlagCode.UNDECODABLE)


@heif_only
def test_heic_without_the_plugin_is_unsupported(tmp_path):
    """The guarded import: with pillow-heif missing, HEIC is named by its ftyp brand, not called a non-image."""
    path = tmp_path / "photo.heic"
    path.write_bytes(images.heic(exif=images.make_exif()))
    script = textwrap.dedent(f"""
        import sys
        sys.modules["pillow_heif"] = None  # as if it were not installed
        from media import photos
        report = photos.inspect_photo({str(path)!r})
        print(photos.HEIF_SUPPORTED, report.flag_codes, report.format, report.media_type)
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         check=True).stdout.strip()

    assert out == "False ['unsupported_format'] HEIF image/heic"
