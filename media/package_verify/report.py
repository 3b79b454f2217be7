"""What a verification found: every problem named, notes for the reader, and the counts of what was checked."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PackageReport:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    records: int = 0
    devices: int = 0
    items: int = 0
    files: int = 0
    deleted: int = 0
    events: int = 0
    key_source: str | None = None
    tsa_time: str | None = None  # the tree head's RFC 3161 time (UTC, ISO 8601), when its token checks
    tsa_name: str | None = None  # and the TSA that signed it (its certificate's subject, RFC 4514)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        deleted = f", {self.deleted} deleted under retention" if self.deleted else ""
        return (f"{self.records} records from {self.devices} devices, {self.items} evidence items "
                f"({self.files} files{deleted}), {self.events} custody events")
