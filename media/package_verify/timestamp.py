"""The RFC 3161 timestamps of the tree heads a package cites (PROTOCOL "Timestamps (RFC 3161)"): the TSA's token
in `custody.tree_head.timestamp_token`, and, in a package that carries the SM tree, the SM head's own in
`custody.sm.tree_head.timestamp_token` (its imprint SM3), each checked offline by the server's own check
(media.custody.timestamps).

A package whose head carries no token is not wrong (the TSA may have been down, or none is configured): the
report says so in a note. A token that is there must check: over this head's signed bytes, with a valid
signature, from a timeStamping certificate, chained to the anchor given with `--tsa-cert` if one was.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cryptography import x509

from backend.core.errors import TimestampFailed
from media.custody.timestamps import SHA256_IMPRINT, SM3_IMPRINT, Imprint, TokenFacts, check_head_token, decode_token
from media.package_verify.report import PackageReport

FIELD = "timestamp_token"


def check_head_timestamp(manifest: dict[str, Any], trust: Sequence[x509.Certificate],
                         report: PackageReport) -> None:
    head = manifest["custody"]["tree_head"]
    if FIELD not in head:
        report.notes.append("tree head not timestamped: the package carries no RFC 3161 token for it"
                            + (" (so --tsa-cert checked nothing)" if trust else ""))
    else:
        _check_intl(head, trust, report)
    sm = manifest["custody"].get("sm")
    if sm is not None:
        check_sm_head_timestamp(sm["tree_head"], trust, report)


def _check_intl(head: dict[str, Any], trust: Sequence[x509.Certificate], report: PackageReport) -> None:
    facts = _check_token(head, trust, report, "tree head", SHA256_IMPRINT)
    if facts is not None:
        report.tsa_time, report.tsa_name = _when(facts), facts.tsa


def check_sm_head_timestamp(head: dict[str, Any], trust: Sequence[x509.Certificate], report: PackageReport) -> None:
    """The SM head's token, as the intl head's is checked, with an SM3 imprint; its notes and problems are named
    "SM tree head"."""
    if FIELD not in head:
        report.notes.append("SM tree head not timestamped: the package carries no RFC 3161 token for it"
                            + (" (so --tsa-cert checked nothing for it)" if trust else ""))
        return
    _check_token(head, trust, report, "SM tree head", SM3_IMPRINT)


def _when(facts: TokenFacts) -> str:
    return facts.gen_time.isoformat().replace("+00:00", "Z")


def _check_token(head: dict[str, Any], trust: Sequence[x509.Certificate], report: PackageReport, name: str,
                 imprint: Imprint) -> TokenFacts | None:
    """One head's token checked, and what it says (or why it does not check) reported under the head's `name`."""
    try:
        facts = check_head_token(decode_token(head[FIELD]), head, trust, imprint)
    except TimestampFailed as exc:
        report.problems.append(f"{name} (size {head.get('tree_size')!r}): its RFC 3161 timestamp does not check: "
                               f"{exc.message}")
        return None
    own = imprint is not SHA256_IMPRINT  # the SM head's: named as such, in the note and the warning
    report.notes.append(f"{name} timestamped by the TSA {facts.tsa} at {_when(facts)} (RFC 3161, "
                        f"{f'{imprint.label} imprint, ' if own else ''}serial {facts.serial}"
                        f"{', chained to the given --tsa-cert' if facts.anchored else ''})")
    if not facts.anchored:
        whose = f"the {name}'s" if own else "the"
        report.notes.append(f"WARNING: {whose} timestamp was checked only with the certificate inside its token: "
                            "this shows who signed it, not that the TSA is the one you trust; pass --tsa-cert with the "
                            "TSA's CA certificate")
    return facts
