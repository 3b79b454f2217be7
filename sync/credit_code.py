"""The unified social credit code (统一社会信用代码) of GB 32100-2015: the one home of its rule.

The wire carries it (an institution's ``credit_code`` in ``case.open`` and ``clue.report``, PROTOCOL §3), so the
rule belongs to the protocol: the server checks it when it matches or registers an institution (casework), the
package verifier folds it when it compares institutions (media), and the reference phone checks it before it
signs (``sync.client.checks``), all from this module. It imports nothing, so the phone may use it without
pulling in any server code.

A code is 18 characters of ``0-9`` and the capitals but I, O, S, V and Z; the 18th is a check character over
the first 17 (weights 3^i mod 31, GB 32100-2015 §4.2).
"""

from __future__ import annotations

from dataclasses import dataclass

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
LENGTH = 18
_VALUE = {c: i for i, c in enumerate(ALPHABET)}


@dataclass(frozen=True)
class CreditCodeFault:
    """What is wrong with a code, in parts, so each reader can say it in its own words.

    ``kind`` is ``length`` (``length`` holds the count), ``characters`` (``characters`` holds the ones not
    allowed) or ``check`` (``found`` is the 18th character, ``expected`` the one the first 17 call for).
    """

    kind: str
    length: int = 0
    characters: str = ""
    found: str = ""
    expected: str = ""


def check_character(first17: str) -> str:
    """The 18th character the first 17 call for."""
    total = sum(_VALUE[c] * w for c, w in zip(first17, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def credit_code_fault(code: str) -> CreditCodeFault | None:
    """Why ``code`` (already normalised) is not a valid credit code, or None when it is."""
    if len(code) != LENGTH:
        return CreditCodeFault("length", length=len(code))
    bad = "".join(sorted({c for c in code if c not in _VALUE}))
    if bad:
        return CreditCodeFault("characters", characters=bad)
    expected = check_character(code[:17])
    if code[17] != expected:
        return CreditCodeFault("check", found=code[17], expected=expected)
    return None


def credit_code_problem(code: str) -> str | None:
    """Why ``code`` is not a valid credit code, in the server's words (field errors, ``bad_credit_code``)."""
    fault = credit_code_fault(code)
    if fault is None:
        return None
    if fault.kind == "length":
        return "must have 18 characters"
    if fault.kind == "characters":
        return "characters not allowed: " + fault.characters + " (I, O, S, V and Z are never used)"
    return f"check character is {fault.found!r}, expected {fault.expected!r}"


def normalise_credit_code(code: str) -> str:
    """How a code is compared and stored: blanks around it dropped, letters in capitals."""
    return code.strip().upper()
