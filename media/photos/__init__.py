"""What a photo's content says, set against what the phone declared about it.

The SHA-256 and size of an evidence file prove which bytes arrived; they say
nothing about whether those bytes are a picture, when it was taken or where.
This package reads the content — a real decode with Pillow, plus the EXIF the
camera wrote — so a reviewer can see when the picture disagrees with its signed
`evidence.capture` declaration (PROTOCOL.md §3, §6). It only reports: it never
alters the original, never touches a database, and never raises for a bad file.

One responsibility a module:

- `report`: the flags, the report and the error (`FlagCode`, `PhotoReport`, `PhotoError`);
- `content`: opening the file, naming its format (HEIF/HEIC via pillow-heif), decoding within a pixel limit;
- `exif`: capture time, GPS position, orientation and camera from the EXIF;
- `heif`: whether a HEIF container is whole, and the turn its `irot`/`imir` give (`media.isobmff` walks it);
- `declaration`: `inspect_photo`, the content's facts measured against the declaration;
- `thumbnails`: `make_thumbnail`, the small upright JPEG reviewers see.

Callers import from `media.photos` itself; the names below are its whole public surface.
"""

from __future__ import annotations

from media.photos.content import DEFAULT_MAX_PIXELS, HEIF_SUPPORTED, PhotoSource
from media.photos.declaration import inspect_photo
from media.photos.report import FlagCode, PhotoError, PhotoFlag, PhotoReport
from media.photos.thumbnails import make_thumbnail

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
