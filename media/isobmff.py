"""Boxes of the ISO base media file format (ISO/IEC 14496-12): the container of MP4 clips and HEIF photos.

A body camera's MP4 and a phone's HEIC are both a sequence of boxes, each
announcing its own size and four-letter type. That makes one fact cheap to
prove without decoding a frame: whether the file is whole. The top-level boxes
must tile the file exactly, so a copy cut short leaves its last box claiming
bytes that never arrived, and random bytes are not boxes at all. Decoders are
lenient here on purpose (libheif shows a HEIC whose later items are gone;
players skip damage), which is why the evidence pipeline asks this module.

The walk skips payloads (by seeking, or by reading past them on a stream that
cannot seek, such as an S3 body), so a long clip costs a few reads, not its
size in memory. Only the payloads a caller names are kept, each up to a limit.
No size read from the file is trusted: every problem is a `BoxError` whose
message says what is wrong and where, in words a reviewer can follow.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import IO

# A top-level walk gives up past this many boxes: real files have a handful (a
# fragmented MP4 a few thousand), and a hostile one must not keep a worker busy.
MAX_BOXES = 100_000
_SKIP_CHUNK = 1024 * 1024


class BoxError(ValueError):
    """The bytes are not a whole, well-formed sequence of boxes; the message says where and why."""


@dataclass(frozen=True)
class Box:
    """One box: its type, where it starts and ends in the file, and its payload when it was asked for."""

    type: str
    start: int
    size: int
    payload: bytes | None = field(default=None, repr=False)

    @property
    def end(self) -> int:
        return self.start + self.size


def box_type(raw: bytes) -> str | None:
    """A box type as text, or None when the four bytes cannot be one (control bytes: not a box)."""
    if len(raw) != 4 or any(b < 0x20 or b == 0x7F for b in raw):
        return None
    return raw.decode("latin-1")


def top_level(fp: IO[bytes], *, keep: Collection[str] = (), limit: int = 16 * 1024 * 1024) -> list[Box]:
    """Walk the whole file from its first byte: its top-level boxes, with the payloads of the types in `keep`.

    Raises BoxError when the boxes do not tile the file exactly: a box cut
    short, stray bytes after the last box, a size smaller than its header, a
    type that is not four printable characters, or a kept payload past `limit`.
    """
    reader = _Reader(fp)
    found: list[Box] = []
    while True:
        start = reader.position
        head = reader.read(8)
        if not head:
            return found
        if len(found) >= MAX_BOXES:
            raise BoxError(f"more than {MAX_BOXES} top-level boxes: not a file a camera writes")
        if len(head) < 8:
            raise BoxError(f"{len(head)} stray bytes at byte {start:,}, too few for a box: the file is cut short "
                           "or has bytes appended")
        size, kind = struct.unpack(">I4s", head)
        name = box_type(kind)
        if name is None:
            raise BoxError(f"the bytes at {start:,} are not a box (type {kind!r})")
        header = 8
        if size == 1:  # a 64-bit size follows the type
            large = reader.read(8)
            if len(large) < 8:
                raise BoxError(f"the file is cut short inside the header of its {name!r} box at byte {start:,}")
            size, header = struct.unpack(">Q", large)[0], 16
        elif size == 0:  # "to the end of the file", so nothing can be cut short; it is the last box
            found.append(_to_the_end(reader, name, start, keep, limit))
            return found
        if size < header:
            raise BoxError(f"the {name!r} box at byte {start:,} declares {size} bytes, fewer than its own header")
        payload = None
        if name in keep:
            if size - header > limit:
                raise BoxError(f"the {name!r} box at byte {start:,} declares {size - header:,} bytes, "
                               f"more than the {limit:,} read here")
            payload = reader.read(size - header)
            got = len(payload)
        else:
            got = reader.skip(size - header)
        if got < size - header:
            raise BoxError(f"the file is cut short: its {name!r} box at byte {start:,} declares {size:,} bytes, "
                           f"but the file ends after {header + got:,} of them")
        found.append(Box(name, start, size, payload))


def _to_the_end(reader: _Reader, name: str, start: int, keep: Collection[str], limit: int) -> Box:
    payload = None
    if name in keep:
        payload = reader.read(limit + 1)
        if len(payload) > limit:
            raise BoxError(f"the {name!r} box at byte {start:,} runs past the {limit:,} bytes read here")
    else:
        reader.skip(2**62)
    return Box(name, start, reader.position - start, payload)


def children(payload: bytes, *, skip: int = 0, within: str = "box") -> list[Box]:
    """The boxes inside a kept payload (after `skip` bytes: 4 for a full box's version and flags)."""
    found: list[Box] = []
    for box in _inner(payload, skip, within):
        found.append(box)
        if len(found) > MAX_BOXES:
            raise BoxError(f"more than {MAX_BOXES} boxes inside {within!r}")
    return found


def first(boxes: list[Box], kind: str) -> Box | None:
    return next((b for b in boxes if b.type == kind), None)


def _inner(payload: bytes, offset: int, within: str) -> Iterator[Box]:
    end = len(payload)
    while offset < end:
        if end - offset < 8:
            raise BoxError(f"{end - offset} stray bytes at the end of {within!r}")
        size, kind = struct.unpack_from(">I4s", payload, offset)
        name = box_type(kind)
        if name is None:
            raise BoxError(f"{within!r} holds bytes that are not a box (type {kind!r})")
        header = 8
        if size == 1:
            if end - offset < 16:
                raise BoxError(f"the {name!r} box inside {within!r} is cut short")
            size, header = struct.unpack_from(">Q", payload, offset + 8)[0], 16
        elif size == 0:
            size = end - offset
        if size < header or offset + size > end:
            raise BoxError(f"the {name!r} box inside {within!r} declares {size:,} bytes, "
                           f"but {within!r} has {end - offset:,} left")
        yield Box(name, offset, size, payload[offset + header:offset + size])
        offset += size


class _Reader:
    """Forward reads over a file or a stream; skips seek when they can and read past the bytes when not."""

    def __init__(self, fp: IO[bytes]) -> None:
        self.fp = fp
        self.position = 0
        self.length: int | None = None
        try:
            seekable = bool(fp.seekable())
        except (AttributeError, OSError, ValueError):
            seekable = False
        if seekable:
            self.length = fp.seek(0, os.SEEK_END)
            fp.seek(0)

    def read(self, n: int) -> bytes:
        out = io.BytesIO()
        while n > 0:
            chunk = self.fp.read(min(n, _SKIP_CHUNK))
            if not chunk:
                break
            out.write(chunk)
            n -= len(chunk)
        data = out.getvalue()
        self.position += len(data)
        return data

    def skip(self, n: int) -> int:
        if self.length is not None:
            step = max(0, min(n, self.length - self.position))
            self.position += step
            self.fp.seek(self.position)
            return step
        skipped = 0
        while skipped < n:
            chunk = self.fp.read(min(n - skipped, _SKIP_CHUNK))
            if not chunk:
                break
            skipped += len(chunk)
        self.position += skipped
        return skipped
