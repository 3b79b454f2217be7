"""What an audit found: one `Problem` per thing wrong, named by check and object id, and the counts of what was
checked; and the `Progress` a terminal shows while it runs.

A problem names the object (a ledger record, a device, an evidence item, a leaf, a tree head, a row of a derived
table) by its id and says what is wrong with it; it never repeats a row's values (a finding's text, a hash an
insider wrote), so a report may be stored, shown in the console and sent to a monitoring system as it is.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from backend.core.times import utc_iso

CHECKS = ("tree", "heads", "ledger", "evidence", "derived")
"""tree: the custody log recomputed and every signed head; heads: none deleted, none overdue, their timestamp
tokens; ledger: every record's JWS, chain, status and its device's witnessed head; evidence: every item against its
signed declaration, its custody events, its stored bytes; derived: cases, inspections, findings, clues, recording
interruptions and procedure flags re-derived from the records."""


@dataclass(frozen=True)
class Problem:
    check: str  # one of CHECKS
    kind: str  # what the object is: record, device, evidence, leaf, tree_head, inspection, finding, case, ...
    object: str  # its id (a record: "<device>#<seq>"; a leaf or head: its index or size)
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"check": self.check, "kind": self.kind, "object": self.object, "message": self.message}

    def line(self) -> str:
        return f"PROBLEM [{self.check}] {self.kind} {self.object}: {self.message}"


class Progress(Protocol):
    """Told what there is to do, then each step done; a terminal draws a bar, everything else ignores it."""

    def begin(self, total: int) -> None: ...

    def advance(self, stage: str, steps: int) -> None: ...


class Silent:
    def begin(self, total: int) -> None:
        return None

    def advance(self, stage: str, steps: int) -> None:
        return None


@dataclass
class AuditReport:
    started_at: datetime
    finished_at: datetime | None = None
    sample: int | None = None  # files re-hashed at random; None: every file
    seed: int | None = None
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    elapsed_seconds: float = 0.0  # measured, not read off the clock: a test's clock may stand still

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: Problem) -> None:
        self.problems.append(problem)

    def problem_counts(self) -> dict[str, int]:
        found = Counter(p.check for p in self.problems)
        return {check: found.get(check, 0) for check in CHECKS}

    def as_dict(self, limit: int | None = None) -> dict[str, Any]:
        """The machine report (`fieldcase verify --json`): every problem, or the first `limit`."""
        shown = self.problems if limit is None else self.problems[:limit]
        return {"ok": self.ok, "started_at": utc_iso(self.started_at), "finished_at": utc_iso(self.finished_at),
                "elapsed_seconds": round(self.elapsed_seconds, 3), "sample": self.sample, "seed": self.seed,
                "counts": dict(sorted(self.counts.items())), "problem_counts": self.problem_counts(),
                "problem_total": len(self.problems), "problems": [p.as_dict() for p in shown]}

    def summary_lines(self) -> list[str]:
        """The human summary after the problems: what was checked, problems per check, the time it took."""
        c = self.counts
        files = "every stored file" if self.sample is None else f"a sample of {self.sample} (seed {self.seed})"
        lines = [
            f"custody log: {c['leaves']} leaves, {c['heads']} signed tree heads"
            + (f", and its SM tree with {c['sm_heads']} SM2-signed heads" if "sm_heads" in c else ""),
            f"ledger: {c['records']} records of {c['devices']} devices",
            f"evidence: {c['evidence']} items; {c['files']} stored files re-hashed ({files}), {c['bytes']} bytes",
            f"derived: {c['cases']} cases, {c['inspections']} inspections, {c['findings']} findings, "
            f"{c['clues']} clues, {c['interruptions']} recording interruptions",
            "problems: " + ", ".join(f"{check} {n}" for check, n in self.problem_counts().items()),
        ]
        verdict = "OK" if self.ok else f"{len(self.problems)} problem(s)"
        lines.append(f"fieldcase verify: {verdict} in {self.elapsed_seconds:.1f} s")
        return lines
