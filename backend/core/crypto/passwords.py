"""Passwords: a slow KDF, from an explicit list of algorithms, at the cost a deployment chooses.

Stored hashes carry their own algorithm and parameters (werkzeug's `method$salt$hash`), so changing the cost
(FIELDCASE_PASSWORD_KDF) changes how new and changed passwords are hashed, and every stored one still checks; a
hash made otherwise is made anew at its officer's next successful login (`needs_rehash`).
A password KDF is a primitive, so it lives with the others (issue 23); werkzeug runs it.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import TYPE_CHECKING

from werkzeug.security import check_password_hash, generate_password_hash

if TYPE_CHECKING:
    from backend.core.models import Officer

# The cost unless a deployment says otherwise: scrypt with N = 2^15, r = 8, p = 1 (~100 ms here; werkzeug's own).
PASSWORD_KDF = "scrypt:32768:8:1"  # noqa: S105 - the name and cost of a KDF, not a password
_KDF = re.compile(r"scrypt:(?P<n>\d+):(?P<r>\d+):(?P<p>\d+)|pbkdf2:(?P<hash>sha256|sm3):(?P<iterations>\d+)")


def check_kdf(method: str) -> str:
    """An allowed KDF, spelled as werkzeug reads it: scrypt:N:r:p (N a power of two), pbkdf2:sha256:ITERATIONS, or
    pbkdf2:sm3:ITERATIONS (PBKDF2 with HMAC-SM3, for a 密评: docs/crypto.md), which needs an interpreter whose
    OpenSSL has SM3 (hashlib computes it), checked here rather than at the first login."""
    match = _KDF.fullmatch(method)
    ok = match is not None
    if ok and match["n"]:
        n = int(match["n"])
        ok = n >= 2 and not n & (n - 1) and int(match["r"]) > 0 and int(match["p"]) > 0
    elif ok:
        ok = int(match["iterations"]) > 0
        if ok and match["hash"] == "sm3" and "sm3" not in hashlib.algorithms_available:
            raise ValueError("FIELDCASE_PASSWORD_KDF pbkdf2:sm3 needs SM3 in this Python's OpenSSL, which lacks it")
    if not ok:
        raise ValueError("FIELDCASE_PASSWORD_KDF must be scrypt:N:r:p (N a power of two), pbkdf2:sha256:ITERATIONS "
                         f"or pbkdf2:sm3:ITERATIONS, not {method!r}")
    return method


def hash_password(password: str, kdf: str = PASSWORD_KDF) -> str:
    return generate_password_hash(password, method=kdf)


def needs_rehash(stored: str, kdf: str) -> bool:
    """Whether a stored hash was made with another KDF or cost than the deployment's (`kdf`, as `check_kdf` spells
    it, which is how werkzeug writes the method before the first `$`). A password is only known at a login, so
    that is when it is hashed anew: switching FIELDCASE_PASSWORD_KDF (to `pbkdf2:sm3:…` for a 密评, or to a
    higher cost) reaches every officer who signs in, without anyone changing a password."""
    return stored.split("$", 1)[0] != kdf


@lru_cache(maxsize=4)
def _dummy_hash(kdf: str) -> str:
    return hash_password("fieldcase-timing-equaliser", kdf)


def verify_password(officer: Officer | None, password: str, kdf: str = PASSWORD_KDF) -> bool:
    """Costs one KDF run whether or not the officer exists (`kdf`: the deployment's), so timing leaks nothing."""
    if officer is None:
        check_password_hash(_dummy_hash(kdf), password)
        return False
    return check_password_hash(officer.password_hash, password)
