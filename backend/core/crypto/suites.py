"""The two algorithm suites, `intl` and `sm`, behind one interface.

A suite is what a proof is made in: a digest (records' chain hashes, evidence hashes, Merkle nodes) and a
signature scheme (records, custody heads, package indexes). Callers name the suite, never the primitive, so a
rule such as "a record's chain hash is the digest of its JWS in its device's suite" has one home and the
national algorithms are used wherever the suite says so (issue 23, docs/crypto.md).

Keys are raw bytes in both suites: Ed25519 keys are 32 bytes (RFC 8032), SM2 private keys 32 bytes and public
keys the 65-byte uncompressed point (`sm2`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from backend.core.crypto import sm2


class Hasher(Protocol):
    """A streaming digest: `update` as bytes arrive, `digest` once at the end."""

    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...


class _Streaming:
    """cryptography's Hash behind hashlib's two methods (its `finalize` may be called once; `digest` too).

    SHA-256 is hashlib's (OpenSSL's too, and ~2.5× faster to start per call, which counts for Merkle nodes and
    chain hashes); SM3 is cryptography's, which has it on every build, where hashlib has it only when the
    interpreter's OpenSSL does."""

    __slots__ = ("_hash",)

    def __init__(self, algorithm: hashes.HashAlgorithm) -> None:
        self._hash = hashes.Hash(algorithm)

    def update(self, data: bytes, /) -> None:
        self._hash.update(data)

    def digest(self) -> bytes:
        return self._hash.finalize()


def _ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    if len(public_key) != 32 or len(signature) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _ed25519_generate() -> tuple[bytes, bytes]:
    key = Ed25519PrivateKey.generate()
    return (key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()),
            key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))



def _ed25519_sign(private_key: bytes, public_key: bytes, message: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(private_key).sign(message)



@dataclass(frozen=True)
class Suite:
    name: str
    digest_name: str  # as docs and packages spell it: "sha256" or "sm3"
    signature_name: str  # "Ed25519" or "SM2"
    jws_algs: tuple[str, ...]  # the record header `alg` values that mean this suite (docs/protocol.md)
    public_key_bytes: int
    _hasher: Callable[[], Hasher]
    _sign: Callable[[bytes, bytes, bytes], bytes]
    _verify: Callable[[bytes, bytes, bytes], bool]
    _generate: Callable[[], tuple[bytes, bytes]]

    def hasher(self) -> Hasher:
        return self._hasher()

    def digest(self, data: bytes) -> bytes:
        h = self._hasher()
        h.update(data)
        return h.digest()

    def hexdigest(self, data: bytes) -> str:
        return self.digest(data).hex()

    def sign(self, private_key: bytes, public_key: bytes, message: bytes) -> bytes:
        """A signature of `message`: 64 bytes in both suites (Ed25519; SM2's raw r ‖ s)."""
        return self._sign(private_key, public_key, message)

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        """False for a bad signature and for a key or signature of the wrong shape: never raises on input."""
        return self._verify(public_key, message, signature)

    def generate(self) -> tuple[bytes, bytes]:
        """A new key pair (private, public) as raw bytes."""
        return self._generate()


INTL = Suite(name="intl", digest_name="sha256", signature_name="Ed25519", jws_algs=("EdDSA", "Ed25519"),
             public_key_bytes=32, _hasher=hashlib.sha256, _sign=_ed25519_sign, _verify=_ed25519_verify,
             _generate=_ed25519_generate)
SM = Suite(name="sm", digest_name="sm3", signature_name="SM2", jws_algs=("SM2SM3",),
           public_key_bytes=sm2.PUBLIC_KEY_BYTES, _hasher=lambda: _Streaming(hashes.SM3()), _sign=sm2.sign,
           _verify=sm2.verify, _generate=sm2.generate)
SUITES: dict[str, Suite] = {INTL.name: INTL, SM.name: SM}
_BY_ALG = {alg: suite for suite in SUITES.values() for alg in suite.jws_algs}


def suite_named(name: str) -> Suite:
    """The suite called `name`; KeyError for any other, so a misspelt configuration fails at start."""
    return SUITES[name]


def suite_for_alg(alg: object) -> Suite | None:
    """The suite a JWS header's `alg` names, or None: an explicit list, nothing else is accepted."""
    return _BY_ALG.get(alg) if isinstance(alg, str) else None
