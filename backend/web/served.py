"""Bytes a phone supplied, as they leave the server: the headers that keep them from acting on our origin, and
the RFC 9530 digest fields that say what they are.

An evidence file is whatever a phone uploaded, under the media type the phone declared. The API and the console
serve it from the server's own origin, where a reviewer's session lives: a file declared `text/html` or
`image/svg+xml` and shown inline would run its script there. So only types a browser shows without running
anything (raster pictures, video, audio: `INLINE_TYPES`, an allow-list, not a pattern: SVG is an image/ type and
a document) may be shown inline; every other file is an attachment. Every such answer also says `nosniff` (the
declared type is the only type a browser may assume) and carries a sandboxing Content-Security-Policy, so even a
file a browser did render would be a document without script, forms or origin. A media type that is not plain
ASCII `type/subtype` is served as `application/octet-stream`.

Digests (RFC 9530): `Repr-Digest: sha-256=:<base64>:` on every download; `Content-Digest` and `Repr-Digest` are
read on uploads (`parse_digest`), beside the hex `Digest: sha-256=<hex>` the downloads have always carried.
"""

from __future__ import annotations

import base64
import binascii
import re

from backend.core.errors import Invalid

INLINE_TYPES = frozenset({
    "image/jpeg", "image/png", "image/gif", "image/webp", "image/avif",
    "image/heic", "image/heif", "image/heic-sequence", "image/heif-sequence",
    "video/mp4", "video/quicktime", "video/webm", "video/3gpp", "video/3gpp2",
    "audio/mp4", "audio/mpeg", "audio/aac", "audio/ogg", "audio/webm", "audio/wav", "audio/amr", "audio/3gpp",
})
SANDBOX = "sandbox; default-src 'none'; img-src 'self'; media-src 'self'"
_TOKEN_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]*/[A-Za-z0-9][A-Za-z0-9.+-]*$")
_EXTENSION = re.compile(r"[^a-z0-9]")


def shown_inline(media_type: str) -> bool:
    """Whether a file of this declared type may be shown in the browser (else it is only ever downloaded)."""
    return media_type.lower() in INLINE_TYPES


def content_type(media_type: str) -> str:
    """The Content-Type a file is served with: its declared type, unless that is no plain ASCII type/subtype."""
    return media_type.lower() if _TOKEN_TYPE.match(media_type) else "application/octet-stream"


def file_headers(evidence_id: str, media_type: str, *, sha256: str | None = None, size: int | None = None,
                 inline: bool = True) -> dict[str, str]:
    """The headers of an answer carrying evidence bytes (an original, or a thumbnail made from one).

    `inline` is what the caller asks for; only an allow-listed type gets it. `sha256` (hex) and `size` describe
    the whole file: its ETag, the legacy `Digest` and RFC 9530's `Repr-Digest`.
    """
    served = content_type(media_type)
    shown = inline and shown_inline(served)
    extension = _EXTENSION.sub("", served.split("/")[1].split("+")[0])[:10] or "bin"
    headers = {
        "Content-Type": served,
        "Content-Disposition": f'{"inline" if shown else "attachment"}; filename="{evidence_id}.{extension}"',
        "Content-Security-Policy": SANDBOX,
        "X-Content-Type-Options": "nosniff",
    }
    if size is not None:
        headers["Content-Length"] = str(size)
    if sha256 is not None:
        headers.update({"ETag": f'"{sha256}"', "Digest": f"sha-256={sha256}", "Repr-Digest": repr_digest(sha256)})
    return headers


# --- RFC 9530 digest fields --------------------------------------------------------------------------------------

ALGORITHMS = {"sha-256": 32}  # what is checked; other algorithms a sender lists are ignored (RFC 9530 §3)
_MEMBER = re.compile(r"^([a-z*][a-z0-9_.*-]*)=:([A-Za-z0-9+/]*={0,2}):(;.*)?$")


def repr_digest(sha256: str) -> str:
    """`sha-256=:<base64>:` of a hex SHA-256: a Structured Fields byte sequence (RFC 8941 §3.3.5)."""
    return "sha-256=:" + base64.b64encode(bytes.fromhex(sha256)).decode() + ":"


def parse_digest(name: str, value: str | None) -> str | None:
    """The SHA-256 (hex) a `Content-Digest` or `Repr-Digest` field states, or None when absent or listing only
    algorithms not checked here. A field that is no dictionary of byte sequences, or whose sha-256 is not 32
    bytes of base64, answers 422: a digest the server cannot read is not one it has checked."""
    if value is None or not value.strip():
        return None
    found: str | None = None
    for member in value.split(","):
        match = _MEMBER.match(member.strip())
        if not match:
            raise _bad(name, "must be a dictionary of digests such as sha-256=:<base64>: (RFC 9530)")
        algorithm, encoded = match.group(1), match.group(2)
        if algorithm not in ALGORITHMS:
            continue
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise _bad(name, f"{algorithm} is not valid base64") from None
        if len(raw) != ALGORITHMS[algorithm]:
            raise _bad(name, f"{algorithm} must be {ALGORITHMS[algorithm]} bytes, not {len(raw)}")
        if found is not None and found != raw.hex():
            raise _bad(name, f"{algorithm} is given twice, with different values")
        found = raw.hex()
    return found


def _bad(name: str, why: str) -> Invalid:
    return Invalid(f"{name} {why}", errors={"headers": {name: [why]}})
