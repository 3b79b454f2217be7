"""HMAC-SM3 as a JWS algorithm for PyJWT: what access tokens are signed with under the `sm` suite.

No IANA identifier exists for HMAC-SM3 in JWS; fieldcase names it `HSM3` (HMAC with SM3, as `HS256` is HMAC with
SHA-256). The token is a JWS (RFC 7515) like any other: the MAC is HMAC (RFC 2104, GB/T 15852.2) with SM3
(GB/T 32905) over `header.payload`, 32 bytes, base64url. Only this server mints and reads these tokens.

The algorithm is registered on the codec the token issuer builds (`codec`), not on PyJWT's global one, so no
other decoder in the process accepts it, and the codec knows no algorithm but the one it is built for.
"""

from __future__ import annotations

import jwt
from cryptography.hazmat.primitives import hashes
from jwt.algorithms import HMACAlgorithm, get_default_algorithms

from backend.core.crypto.sealing import hmac_sm3

HSM3 = "HSM3"


class HMACSM3Algorithm(HMACAlgorithm):
    """PyJWT's HMAC algorithm with SM3 in place of its hashlib hash: its key checks (no PEM, SSH or JWK text as
    a secret), its JWK forms and its constant-time `verify` are kept; `sign` is HMAC-SM3 from OpenSSL."""

    def __init__(self) -> None:
        super().__init__(hashes.SM3)  # type: ignore[arg-type]  # PyJWT reads a cryptography hash class too

    def sign(self, msg: bytes, key: bytes) -> bytes:
        return hmac_sm3(key, msg)


def codec(algorithm: str) -> jwt.PyJWT:
    """A JWT codec that signs and verifies with `algorithm` alone: `HSM3`, or one of PyJWT's own (`HS256`).

    PyJWT has no public way to give a `PyJWT` its `PyJWS`; it wires its own module-level codec the same way
    (`jwt.api_jwt`: `_jwt_global_obj._jws = _jws_global_obj`), and `PyJWS.register_algorithm` is public.
    """
    if algorithm == HSM3:
        jws = jwt.PyJWS(algorithms=[])
        jws.register_algorithm(HSM3, HMACSM3Algorithm())
    elif algorithm in get_default_algorithms():
        jws = jwt.PyJWS(algorithms=[algorithm])
    else:
        raise ValueError(f"unsupported token algorithm {algorithm!r}")
    built = jwt.PyJWT()
    built._jws = jws  # noqa: SLF001 - see above
    return built
