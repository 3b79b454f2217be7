"""Small upright JPEGs of evidence photos for reviewers' screens: `make_thumbnail`.

A thumbnail is derived, never the evidence: it is made from a decoded copy,
with the EXIF orientation applied and no EXIF carried over (no GPS leaks
through it). Unlike `inspect_photo`, its caller needs pixels, so a file that
cannot be decoded raises `PhotoError` with the flag inspection would report.
"""

from __future__ import annotations

import io

from PIL import Image, ImageOps

from media.photos.content import DEFAULT_MAX_PIXELS, PhotoSource, check_pixels, open_image, opened, read_head
from media.photos.exif import orientation
from media.photos.report import FlagCode, PhotoError

_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def make_thumbnail(source: PhotoSource, *, longest_side: int = 320, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """A small upright JPEG for reviewers' screens; the original is never changed.

    The EXIF orientation is applied because browsers disagree on honouring it
    for derived images, and the thumbnail carries no EXIF (no GPS leaks through
    it). Images already smaller than `longest_side` are not enlarged.
    Raises PhotoError when the file cannot be decoded.
    """
    if longest_side < 1:
        raise ValueError("longest_side must be positive")
    with opened(source) as fp:
        im = open_image(fp, read_head(fp))
        with im:
            check_pixels(im, max_pixels)
            try:
                # JPEG can decode at 1/2, 1/4 or 1/8 scale: far less memory for the same thumbnail.
                im.draft("RGB", (longest_side, longest_side))
                im.load()
            except MemoryError:
                raise
            except Exception as exc:
                raise PhotoError(FlagCode.UNDECODABLE, f"the image cannot be decoded: {exc}") from exc
            try:
                upright = ImageOps.exif_transpose(im)
            except MemoryError:
                raise
            except Exception:
                # exif_transpose also rewrites the EXIF and trips over damaged tags; the pixels are fine,
                # so the orientation alone is applied, if it can be read at all.
                method = _TRANSPOSE.get(orientation(im))
                upright = im.transpose(method) if method is not None else im.copy()
    with upright:
        rgb = _to_rgb(upright)
        rgb.thumbnail((longest_side, longest_side), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        rgb.save(out, format="JPEG", quality=80, optimize=True)
        return out.getvalue()


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB for JPEG; transparency goes onto white, as a viewer would show a screenshot."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return im.convert("RGB")
