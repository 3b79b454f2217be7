"""The one home of cryptographic primitives: everything else asks a suite to hash, sign, verify or seal.

Two suites (`suites.SUITES`):

- ``intl``: Ed25519 signatures and SHA-256 digests, what every phone, record and package used before;
- ``sm``: the national algorithms a 密评 asks for: SM2 signatures (GB/T 32918, with SM3, user ID pinned to
  ``1234567812345678`` as GB/T 35276 and GM/T 0009 say) and SM3 digests (GB/T 32905).

SM4-GCM sealing and HMAC-SM3 live in `sealing`; digests that a format fixes (CSP, RFC 9530, RFC 3161, C2SP key IDs)
in `digests`. docs/crypto.md maps each protection to its suite.
"""

from backend.core.crypto.suites import (
    INTL,
    SM,
    SUITES,
    Hasher,
    InvalidPublicKey,
    Suite,
    Verifier,
    ed25519_public_key,
    suite_for_alg,
    suite_named,
)

__all__ = ["INTL", "SM", "SUITES", "Hasher", "InvalidPublicKey", "Suite", "Verifier", "ed25519_public_key",
           "suite_for_alg", "suite_named"]
