"""`fieldcase demo`: a simulated field day, played by reference phones against the real server.

The demo is the quickest proof that the pieces fit: it starts the production
server (gunicorn, SQLite and an instance folder in a temporary directory),
and lets `sync.client.Phone` — the client written from PROTOCOL.md alone —
talk to it over real HTTP, exactly as an officer's phone would. Every step
that matters is checked, so a broken merge, a record applied twice or a lost
record makes the command fail instead of printing a cheerful report.

The cast: 张敏 and 王芳 of the Xihu district education bureau and 李强 of
market regulation, all holding valid enforcement certificates. There is no
signal at the tutoring centre all day, so each phone opens its own case.
PROTOCOL §4 merges an offline `case.open` into the open case *of the
officer's department*: the two education phones end up with one case, while
market regulation keeps its own. 王芳's phone signs in the national algorithms (SM2 records chained by SM3)
beside 张敏's Ed25519 one, and the server keeps its custody log in both trees (FIELDCASE_CUSTODY_SUITES=intl,sm).

Back at the office the files go up (PROTOCOL §6): the photos (real JPEGs
whose EXIF time and GPS agree with their declarations), the three clips of
张敏's body camera, and a scan of the signed on-site record that an app
rewrote after it was declared. The line drops half way through the biggest
clip; the phone resumes it from the server's `Upload-Offset`. The scan comes
out `mismatch` and stays on the phone; everything else is `verified` and
purged. The camera was off for 45 seconds in the middle of the inspection,
and no `recording.interruption` explains it: PROTOCOL §7 coverage says `gaps`.

The day starts with a parent's call to the 12345 hotline: a clue for the
centre, routed to the education bureau, with a tracking code for the parent;
once the phones have synced, the desk links it to the merged case and the
public status page says so, without a word of personal data. 周慧, a
reviewer, then reads the audit: the coverage gap, the inspection with no
recording at all and the mismatched scan, and marks the gap reviewed.

Last, 陈静, the bureau's evidence custodian, exports the case's evidence
package (PROTOCOL §8) and checks it the way a court would: offline, with
`fieldcase verify-package` and the server's published custody keys (Ed25519 and SM2), in both trees. A copy
with one byte of one photo changed must fail the same check.

The package, by responsibility: `scenario` (the story's facts), `people` (the cast and their accounts),
`synthetic` (the photos, clips, scan and forged package the demo makes), `flaky_line` (the upload that drops
half way), `day` (the state of one played day and its line to the server), `story` (the steps, in order),
`checks` (what each step promised), `report` (what is printed), `wording` (times, tallies and hashes as
written) and `command` (`fieldcase demo`: the server, the run, the exit code).
"""

from backend.demo.command import run, serve_demo
from backend.demo.people import PASSWORD

__all__ = ["PASSWORD", "run", "serve_demo"]
