"""The ZIP's members, each read once: its SHA-256 and size, for the sealed index and the evidence files alike, and
the SM3 of an evidence file whose item carries one, in the same pass. In a package sealed in SM2 too (one with the
SM tree, `sm3=True`) every member's SM3 is taken in that pass, since the seal lists it: no file is read twice.

Files are read in chunks, so memory does not grow with them; a member whose bytes fail the ZIP's own CRC was
changed inside the archive and is reported as damaged.
"""

from __future__ import annotations

import zipfile

from backend.core.crypto import SM, digests

CHUNK = 1024 * 1024


class Damaged(Exception):
    """The member's bytes fail the ZIP's CRC check: they were changed inside the archive."""


class Members:
    def __init__(self, zf: zipfile.ZipFile, *, sm3: bool = False) -> None:
        self.zf = zf
        self.sm3 = sm3  # hash every member with SM3 too, whoever asks first
        self._digests: dict[str, tuple[str, int, str | None] | Damaged] = {}

    def names(self) -> list[str]:
        return self.zf.namelist()

    def digest(self, name: str) -> tuple[str, int]:
        """(SHA-256 hex, size) of a member; KeyError when there is none of that name, Damaged when its CRC fails."""
        sha256, size, _ = self._read(name, sm3=False)
        return sha256, size

    def digests(self, name: str) -> tuple[str, int, str]:
        """(SHA-256 hex, size, SM3 hex) of a member, both hashes from one read; as `digest` otherwise."""
        sha256, size, sm3 = self._read(name, sm3=True)
        assert sm3 is not None
        return sha256, size, sm3

    def _read(self, name: str, *, sm3: bool) -> tuple[str, int, str | None]:
        sm3 = sm3 or self.sm3
        found = self._digests.get(name)
        if found is None or (sm3 and not isinstance(found, Damaged) and found[2] is None):
            info = self.zf.getinfo(name)
            h, s, n = digests.sha256_hasher(), SM.hasher() if sm3 else None, 0
            try:
                with self.zf.open(info) as fh:
                    while block := fh.read(CHUNK):
                        h.update(block)
                        if s is not None:
                            s.update(block)
                        n += len(block)
                found = (h.digest().hex(), n, s.digest().hex() if s is not None else None)
            except zipfile.BadZipFile as exc:
                found = Damaged(str(exc))
            self._digests[name] = found
        if isinstance(found, Damaged):
            raise found
        return found
