"""The ZIP's members, each read once: its SHA-256 and size, for the sealed index and the evidence files alike.

Files are read in chunks, so memory does not grow with them; a member whose bytes fail the ZIP's own CRC was
changed inside the archive and is reported as damaged.
"""

from __future__ import annotations

import hashlib
import zipfile

CHUNK = 1024 * 1024


class Damaged(Exception):
    """The member's bytes fail the ZIP's CRC check: they were changed inside the archive."""


class Members:
    def __init__(self, zf: zipfile.ZipFile) -> None:
        self.zf = zf
        self._digests: dict[str, tuple[str, int] | Damaged] = {}

    def names(self) -> list[str]:
        return self.zf.namelist()

    def digest(self, name: str) -> tuple[str, int]:
        """(SHA-256 hex, size) of a member; KeyError when there is none of that name, Damaged when its CRC fails."""
        if name not in self._digests:
            info = self.zf.getinfo(name)
            h, n = hashlib.sha256(), 0
            try:
                with self.zf.open(info) as fh:
                    while block := fh.read(CHUNK):
                        h.update(block)
                        n += len(block)
                self._digests[name] = (h.hexdigest(), n)
            except zipfile.BadZipFile as exc:
                self._digests[name] = Damaged(str(exc))
        found = self._digests[name]
        if isinstance(found, Damaged):
            raise found
        return found
