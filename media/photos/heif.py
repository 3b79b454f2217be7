"""What a HEIF/HEIC container says beyond its pixels: whether it is whole, and how it is turned.

pillow-heif (libheif) decodes the primary image, and that is not enough for
evidence. libheif happily shows the picture of an iPhone HEIC cut in half when
the missing half held only its thumbnail, depth map or gain map: the file is
still not what the camera wrote, so its top-level boxes must tile it exactly
(`media.isobmff`). And HEIF turns a picture with its own `irot` (rotation) and
`imir` (mirror) properties rather than the EXIF Orientation tag, which
pillow-heif resets to 1 once libheif has applied the turn; so the orientation a
viewer sees is read here, from the properties of the primary item, and given in
the EXIF numbering (1 to 8) the rest of the report uses.

`imir` follows ISO/IEC 23008-12:2022 and every common implementation (iPhone,
libheif): axis 0 exchanges top and bottom, axis 1 left and right. (The 2017 text
read the other way round and was amended.) `irot` turns anticlockwise in
quarter turns. Both apply in the order the item's associations list them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import IO

from media.isobmff import Box, BoxError, children, first, top_level

# The meta box holds the item index, properties and (for iPhone grids) tile
# references: tens of kilobytes in practice, so 8 MiB is generous.
_META_LIMIT = 8 * 1024 * 1024

# A turn as (mirrored left-right first, then quarter turns anticlockwise) -> EXIF Orientation.
_EXIF_ORIENTATION = {(False, 0): 1, (True, 0): 2, (False, 2): 3, (True, 2): 4,
                     (True, 1): 5, (False, 3): 6, (True, 3): 7, (False, 1): 8}


@dataclass(frozen=True)
class HeifContainer:
    """`problem` says why the file is not whole (None when it is); `orientation` is None when unreadable."""

    problem: str | None
    orientation: int | None


def read_container(fp: IO[bytes]) -> HeifContainer:
    """Walk the top-level boxes and read the primary item's turn; never raises for bad bytes."""
    try:
        boxes = top_level(fp, keep=("meta",), limit=_META_LIMIT)
    except BoxError as exc:
        return HeifContainer(f"the HEIF file is incomplete or damaged: {exc}", None)
    finally:
        fp.seek(0)
    meta = first(boxes, "meta")
    if meta is None or meta.payload is None:
        return HeifContainer("the HEIF file has no 'meta' box: nothing says which picture it holds", None)
    try:
        return HeifContainer(None, _orientation(meta.payload))
    except (BoxError, struct.error, IndexError, ValueError):
        return HeifContainer(None, None)  # libheif read it, so the pixels stand; the turn is unknown


def _orientation(meta: bytes) -> int:
    boxes = children(meta, skip=4, within="meta")  # meta is a full box: version and flags first
    pitm, iprp = first(boxes, "pitm"), first(boxes, "iprp")
    if pitm is None or iprp is None:
        return 1
    primary = _primary_item(pitm)
    properties = children(iprp.payload or b"", within="iprp")
    ipco, ipma = first(properties, "ipco"), first(properties, "ipma")
    if ipco is None or ipma is None:
        return 1
    listed = children(ipco.payload or b"", within="ipco")
    mirrored, turns = False, 0
    for index in _associations(ipma.payload or b"", primary):
        if not 1 <= index <= len(listed):  # index 0 means "no property"
            continue
        prop = listed[index - 1]
        value = (prop.payload or b"\x00")[0]
        if prop.type == "irot":
            turns += value & 0b11
        elif prop.type == "imir":
            # Mirroring after a turn equals mirroring first and turning back; top-bottom is left-right, then 180.
            mirrored, turns = not mirrored, -turns + (2 if value & 1 == 0 else 0)
    return _EXIF_ORIENTATION[(mirrored, turns % 4)]


def _primary_item(pitm: Box) -> int:
    data = pitm.payload or b""
    return struct.unpack_from(">H" if data[0] == 0 else ">I", data, 4)[0]


def _associations(ipma: bytes, item: int) -> list[int]:
    """The property indices associated with `item`, in order (ISO/IEC 23008-12 ItemPropertyAssociationBox)."""
    version, flags = ipma[0], int.from_bytes(ipma[1:4], "big")
    (count,), offset = struct.unpack_from(">I", ipma, 4), 8
    id_format, wide = (">H", 2) if version < 1 else (">I", 4)
    for _ in range(count):
        (item_id,) = struct.unpack_from(id_format, ipma, offset)
        offset += wide
        n = ipma[offset]
        offset += 1
        indices = []
        for _ in range(n):
            if flags & 1:
                (raw,) = struct.unpack_from(">H", ipma, offset)
                indices.append(raw & 0x7FFF)
                offset += 2
            else:
                indices.append(ipma[offset] & 0x7F)
                offset += 1
        if item_id == item:
            return indices
    return []
