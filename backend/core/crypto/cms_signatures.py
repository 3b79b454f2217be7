"""The signature of a CMS signer (RFC 5652 §5.6) under the key of an outside certificate: an RFC 3161 token's TSA.

A TSA signs with whatever key its certificate holds (RSA with PKCS #1 v1.5 or PSS, ECDSA, DSA, Ed25519, Ed448)
over a SHA-2 digest of its choice: that is no suite of fieldcase's, but the primitives are still called only in
`backend.core.crypto` (issue 23). The token's structure (CMS, TSTInfo, the signed attributes) is read by
`media.custody.timestamps` with asn1crypto; what comes here is the parsed fields and the certificate's key.
Algorithms are named as asn1crypto names them (`sha256`, `rsassa_pss`, `ecdsa`), so the reader hands them on as
it finds them.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

_SHA2: dict[str, type[hashes.HashAlgorithm]] = {
    "sha224": hashes.SHA224, "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}
SHA2 = frozenset(_SHA2)
"""The digests a signer may use and a certificate may be named by (ESSCertIDv2): SHA-2 only."""


def sha2(name: str, data: bytes) -> bytes:
    """`data` hashed with the SHA-2 digest called `name` (a signer's message digest, an ESSCertIDv2 hash);
    KeyError for a name not in `SHA2`."""
    h = hashes.Hash(_SHA2[name]())
    h.update(data)
    return h.finalize()


def fits(key: CertificatePublicKeyTypes, algorithm: str) -> bool:
    """Whether `key` (a certificate's `public_key()`) is of the kind that makes `algorithm`'s signatures."""
    if algorithm in ("rsassa_pkcs1v15", "rsassa_pss"):
        return isinstance(key, rsa.RSAPublicKey)
    if algorithm == "ecdsa":
        return isinstance(key, ec.EllipticCurvePublicKey)
    if algorithm == "dsa":  # looked up only here: cryptography warns of DSA's deprecation at each use of its name
        return isinstance(key, dsa.DSAPublicKey)
    if algorithm in ("ed25519", "ed448"):
        return isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
    return False


def verify(key: CertificatePublicKeyTypes, algorithm: str, digest: str, data: bytes, signature: bytes, *,
           pss: tuple[str, int] | None = None) -> bool:
    """Whether `signature` over `data` holds under `key`, by the signer's `algorithm` over its `digest` (in `SHA2`);
    for `rsassa_pss`, `pss` is the parameters' (MGF1 digest, salt length). False for a signature that does not
    hold; ValueError for a key that does not `fit` the algorithm, KeyError for a digest not in `SHA2`."""
    if not fits(key, algorithm):
        raise ValueError(f"a {type(key).__name__} makes no {algorithm} signature")
    chosen = _SHA2[digest]()
    try:
        if algorithm == "rsassa_pkcs1v15":
            key.verify(signature, data, padding.PKCS1v15(), chosen)
        elif algorithm == "rsassa_pss":
            if pss is None:
                raise ValueError("an RSASSA-PSS signature needs its parameters (MGF1 digest, salt length)")
            mgf, salt_length = pss
            key.verify(signature, data, padding.PSS(padding.MGF1(_SHA2[mgf]()), salt_length), chosen)
        elif algorithm == "ecdsa":
            key.verify(signature, data, ec.ECDSA(chosen))
        elif algorithm == "dsa":
            key.verify(signature, data, chosen)
        else:  # ed25519, ed448: the digest is the scheme's own
            key.verify(signature, data)
    except InvalidSignature:
        return False
    return True
