"""电子数据清单: a package's evidence list for people without tools, as CSV, HTML and PDF (PROTOCOL §8).

`build` makes the list as plain data from the package's manifest (the same items, file names, hashes and the
custody events the package proves) plus, from the same transaction, what a court asks for that the manifest
does not carry: the officers' enforcement certificates, upload times, capture places, and each inspection's
recording coverage (`media.coverage.inspection_coverage`, the verdict the console shows). `to_csv`, `to_html`
and `to_pdf` only lay that data out. Headings are Chinese first, English after; times are Beijing time with
the offset (`2026-12-06 12:00:00+08:00`). A certificate is judged on the local day of the inspection (of the
capture, for a capturing officer) against the certificate the officers table holds now, as the audit judges
it: there is no certificate history, so a certificate replaced since shows the new one.

The PDF, and why its font is embedded: `media/evidence_list/pdf.py`.
"""

from media.evidence_list.build import COVERAGE, build
from media.evidence_list.pdf import to_pdf
from media.evidence_list.text import to_csv, to_html

__all__ = ["COVERAGE", "build", "to_csv", "to_html", "to_pdf"]
