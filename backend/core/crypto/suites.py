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

from cryptography.exceptions import InvalidKey, InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from nacl.bindings import crypto_core_ed25519_is_valid_point

from backend.core.crypto import sm2

Verifier = Callable[[bytes, bytes], bool]  # (message, signature) -> whether it holds, under one loaded key


class InvalidPublicKey(ValueError):
    """Bytes that are not a public key of the suite: the message says what is wrong (length, prefix, curve)."""


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


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _sm3(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def _ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    if len(public_key) != 32 or len(signature) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _ed25519_load(public_key: bytes) -> Ed25519PublicKey:
    if len(public_key) != 32:
        raise InvalidPublicKey(f"an Ed25519 public key is 32 raw bytes, not {len(public_key)}")
    # OpenSSL loads any 32 bytes; libsodium checks the point is on the curve, in the prime-order subgroup and not of
    # small order.
    if not crypto_core_ed25519_is_valid_point(public_key):
        raise InvalidPublicKey("the public key is not a valid Ed25519 point")
    try:
        return Ed25519PublicKey.from_public_bytes(public_key)
    except (ValueError, InvalidKey):
        raise InvalidPublicKey("the public key is not an Ed25519 point") from None


def _ed25519_verifier(public_key: bytes) -> Verifier:
    key = _ed25519_load(public_key)

    def verify(message: bytes, signature: bytes) -> bool:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    return verify


def ed25519_public_key(seed: bytes) -> bytes:
    """The raw public key of a 32-byte Ed25519 seed: a custody key file holds the seed alone, and its public half is
    derived. (An SM2 key is kept with its public half: GmSSL derives none.)"""
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _sm2_check(public_key: bytes) -> None:
    try:
        sm2.check_public_key(public_key)
    except sm2.InvalidKey as exc:
        raise InvalidPublicKey(str(exc)) from None


def _sm2_verifier(public_key: bytes) -> Verifier:
    _sm2_check(public_key)
    return lambda message, signature: sm2.verify(public_key, message, signature)


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
    digest: Callable[[bytes], bytes]
    """The digest of `data` in one call: a plain function, not a method, as Merkle nodes and chain hashes are many
    and small (a method and a wrapper around hashlib cost a tenth of a leaf hash)."""
    _verifier: Callable[[bytes], Verifier]

    def hasher(self) -> Hasher:
        return self._hasher()

    def hexdigest(self, data: bytes) -> str:
        return self.digest(data).hex()

    def check_public_key(self, public_key: bytes) -> None:
        """Raises InvalidPublicKey, saying why, unless `public_key` is a key of this suite (a point on its curve)."""
        self._verifier(public_key)

    def verifier(self, public_key: bytes) -> Verifier:
        """What checks signatures under `public_key`, the key loaded once: for a device's records in a push, or a log's
        heads in an audit. InvalidPublicKey for bytes that are not a key of this suite."""
        return self._verifier(public_key)

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
             _generate=_ed25519_generate, digest=_sha256,
             _verifier=_ed25519_verifier)
SM = Suite(name="sm", digest_name="sm3", signature_name="SM2", jws_algs=("SM2SM3",),
           public_key_bytes=sm2.PUBLIC_KEY_BYTES, _hasher=lambda: _Streaming(hashes.SM3()), _sign=sm2.sign,
           _verify=sm2.verify, _generate=sm2.generate, digest=_sm3,
           _verifier=_sm2_verifier)
SUITES: dict[str, Suite] = {INTL.name: INTL, SM.name: SM}
_BY_ALG = {alg: suite for suite in SUITES.values() for alg in suite.jws_algs}


def suite_named(name: str) -> Suite:
    """The suite called `name`; KeyError for any other, so a misspelt configuration fails at start."""
    return SUITES[name]


def suite_for_alg(alg: object) -> Suite | None:
    """The suite a JWS header's `alg` names, or None: an explicit list, nothing else is accepted."""
    return _BY_ALG.get(alg) if isinstance(alg, str) else None
