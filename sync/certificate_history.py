"""Every certificate an officer has held, and the one that held on a given day (issue 15).

An officers row holds today's certificate (执法证); a renewal overwrites its number and dates. Judging an
inspection of last year by today's certificate gets it wrong both ways: a certificate renewed since then looks
"not yet valid" on the day, and one that lapsed since looks valid in hindsight only if the new dates cover it.
So every change is kept (`officer_certificates`, written by `record_certificate` from the one place officers
change, `backend.casework.accounts`), and an evidence list, the reviewers' audit and the two-certified-officers
flag ask `CertificateBook.held_on` for the certificate of the day of the act.

Which certificate "held" on a day is decided by the certificates' own validity dates, not by when the server
learned of them: an officer whose certificate was entered late was still certified on the days it covers. The
rule: one valid on the day if any (the most recently recorded, when two overlap); else the one that lapsed last
before the day (the verdict is then "expired"); else the first one still to come ("not yet valid"); with none at
all, none ("no certificate"). A later entry under the same number corrects the earlier ones (a mistyped date, a
certificate revoked early); only a new number is another certificate. Whether a certificate is valid on a day
stays `sync.certificates`' rule.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.models import Officer, OfficerCertificate
from sync.certificates import certificate_valid_on

_IN_CHUNK = 500


@dataclass(frozen=True)
class HeldCertificate:
    """A certificate as `sync.certificates` reads it (the officers row's attribute names)."""

    cert_number: str | None
    cert_valid_from: date | None
    cert_valid_until: date | None


NONE_HELD = HeldCertificate(None, None, None)


def _current(officer: Officer) -> HeldCertificate:
    return HeldCertificate(officer.cert_number, officer.cert_valid_from, officer.cert_valid_until)


def record_certificate(session: Session, officer: Officer, *, now: datetime, by: str | None) -> None:
    """Keep the officer's certificate in the history when it is new or changed (a removal keeps the old rows)."""
    if not officer.cert_number:
        return
    last = session.scalars(select(OfficerCertificate).where(OfficerCertificate.officer_id == officer.id)
                           .order_by(OfficerCertificate.id.desc()).limit(1)).first()
    held = _current(officer)
    if last is not None and HeldCertificate(last.cert_number, last.cert_valid_from, last.cert_valid_until) == held:
        return
    session.add(OfficerCertificate(officer_id=officer.id, cert_number=held.cert_number,
                                   cert_valid_from=held.cert_valid_from, cert_valid_until=held.cert_valid_until,
                                   recorded_at=now, recorded_by=by))


def _latest_per_number(certificates: list[HeldCertificate]) -> list[HeldCertificate]:
    """A number's later entry corrects its earlier ones (dates mistyped, a certificate revoked early): only a
    new number is another certificate. Oldest recorded first, as given."""
    latest = {c.cert_number: n for n, c in enumerate(certificates)}
    return [c for n, c in enumerate(certificates) if latest[c.cert_number] == n]


def _chosen(certificates: list[HeldCertificate], day: date) -> HeldCertificate:
    """`certificates` oldest recorded first; the rule of the module's docstring."""
    valid = [c for c in certificates if certificate_valid_on(c.cert_number, c.cert_valid_from, c.cert_valid_until, day)]
    if valid:
        return valid[-1]
    lapsed = [c for c in certificates if c.cert_valid_until is not None and c.cert_valid_until < day]
    if lapsed:
        return max(lapsed, key=lambda c: c.cert_valid_until or day)
    coming = [c for c in certificates if c.cert_valid_from is not None and c.cert_valid_from > day]
    if coming:
        return min(coming, key=lambda c: c.cert_valid_from or day)
    return certificates[-1] if certificates else NONE_HELD


class CertificateBook:
    """The certificates some officers have held, loaded once for a whole list, audit page or push."""

    def __init__(self, held: dict[str, list[HeldCertificate]]) -> None:
        self._held = held

    @classmethod
    def load(cls, session: Session, officers: Iterable[Officer]) -> CertificateBook:
        officers = list(officers)
        held: dict[str, list[HeldCertificate]] = defaultdict(list)
        ids = sorted({o.id for o in officers})
        for start in range(0, len(ids), _IN_CHUNK):
            rows = session.scalars(select(OfficerCertificate)
                                   .where(OfficerCertificate.officer_id.in_(ids[start:start + _IN_CHUNK]))
                                   .order_by(OfficerCertificate.id))
            for row in rows:
                held[row.officer_id].append(HeldCertificate(row.cert_number, row.cert_valid_from,
                                                            row.cert_valid_until))
        for officer in officers:  # today's certificate counts even where no history was written (rows made by hand)
            if officer.cert_number and (not held[officer.id] or held[officer.id][-1] != _current(officer)):
                held[officer.id].append(_current(officer))
        return cls({officer_id: _latest_per_number(certificates) for officer_id, certificates in held.items()})

    def held_on(self, officer: Officer, day: date) -> HeldCertificate:
        return _chosen(self._held.get(officer.id, []), day)

    def covers(self, officer: Officer, first: date, last: date) -> bool:
        """Whether one certificate of the officer's holds on every day from `first` to `last`: then no day between
        needs judging one by one."""
        return any(certificate_valid_on(c.cert_number, c.cert_valid_from, c.cert_valid_until, first)
                   and certificate_valid_on(c.cert_number, c.cert_valid_from, c.cert_valid_until, last)
                   for c in self._held.get(officer.id, []))
