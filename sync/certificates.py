"""Whether an officer's law-enforcement certificate (执法证) holds on a day: the one home of that rule.

An administrative inspection needs at least two officers present who hold a certificate valid that day. The
server judges it when it applies an ``inspection.start`` (the ``fewer_than_two_certified`` flag), when it draws
teams and plans tasks, in the reviewers' audit and in a package's evidence list; the reference phone judges it
before it signs, from the certificates ``GET /api/v1/reference/officers`` gave it. All of them call this
module, which is the protocol's because the certificate's fields travel on the wire (PROTOCOL §1 ``/me``, the
officers' reference data) and imports nothing, so the phone may use it.

The day is the local (Asia/Shanghai) date of the act: a certificate is valid from ``valid_from`` (open when
absent) to ``valid_until`` inclusive, and only when it has a number and an end date.
"""

from __future__ import annotations

from datetime import date

NO_CERTIFICATE = "no_certificate"
NOT_YET_VALID = "not_yet_valid"
EXPIRED = "expired"


def certificate_fault(number: str | None, valid_from: date | None, valid_until: date | None,
                      day: date) -> str | None:
    """None when the certificate is valid on ``day``; else ``no_certificate``, ``not_yet_valid`` or ``expired``."""
    if not number or valid_until is None:
        return NO_CERTIFICATE
    if valid_from is not None and day < valid_from:
        return NOT_YET_VALID
    if day > valid_until:
        return EXPIRED
    return None


def certificate_valid_on(number: str | None, valid_from: date | None, valid_until: date | None,
                         day: date) -> bool:
    """Whether the certificate holds on ``day``."""
    return certificate_fault(number, valid_from, valid_until, day) is None


def officer_certificate_fault(officer: object, day: date) -> str | None:
    """:func:`certificate_fault` of a server officer row, whose certificate is its ``cert_*`` columns."""
    return certificate_fault(getattr(officer, "cert_number", None), getattr(officer, "cert_valid_from", None),
                             getattr(officer, "cert_valid_until", None), day)


def certified_on(officer: object, day: date) -> bool:
    """Whether a server officer row holds a certificate valid on ``day``."""
    return officer_certificate_fault(officer, day) is None
