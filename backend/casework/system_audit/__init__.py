"""The whole-system audit (`fieldcase verify`): everything the server keeps, checked against what was signed.

`fieldcase custody verify` checks the custody log alone; this checks it and everything else, each family in a
module of its own, each a generator of `Problem`s naming the check and the object by id:

- `tree`: the custody tree recomputed from its events, every signed head and their consistency, and events
  deleted from the end of the log;
- `heads`: no periodic head deleted, no leaf left unsigned longer than FIELDCASE_HEAD_INTERVAL, the heads'
  timestamp tokens;
- `ledger`: every record's JWS against its device's key, the chains, the statuses against the signed records,
  and each device's chain end against the custody log's `device_head` leaves;
- `derived` and `tables`: cases, aliases, inspections, findings, evidence items, clues, recording interruptions
  and procedure flags re-derived from the records (with the functions applying them uses) and compared;
- `corrections`: corrections of findings and cases, held against the record.correct or reviewer's custody leaf
  that made each (a corrected finding is re-derived with them);
- `evidence`: every item against its custody events, and its stored bytes re-hashed (all, or a sample).

`run.audit` runs them in one streaming read; `runs` keeps verdicts for the console; `jobs` makes it periodic.

`restore` is the check after a restore (`fieldcase restore-check`): `tree` again, the log against a head saved
off-site (`saved_head`: what the restore lost), and every verified object present in the store at its size.
"""

from backend.casework.system_audit.report import CHECKS, AuditReport, Problem, Progress
from backend.casework.system_audit.run import AuditOptions, audit

__all__ = ["CHECKS", "AuditOptions", "AuditReport", "Problem", "Progress", "audit"]
