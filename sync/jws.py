"""Defensive parsing and verification of record JWS (compact serialization, RFC 7515; EdDSA, RFC 8037/9864, or
SM2SM3, docs/protocol.md §3).

A record names its algorithm in its header; its device was enrolled with a key of one suite (`backend.core.crypto`):
``intl`` (Ed25519, SHA-256) or ``sm`` (SM2 with SM3, SM3). The record's suite must be its device's, and both its
signature and its chain hash are that suite's (`verify`, `record_hash`).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from backend.core.crypto import INTL, SM, SUITES, InvalidPublicKey, Suite, Verifier, suite_for_alg, suite_named
from backend.core.json_text import is_unicode_text

MAX_RECORD_BYTES = 256 * 1024
MAX_DEPTH = 32  # objects and arrays within one another; a record needs about five
TYP = "fieldcase-record"
_B64URL = re.compile(r"^[A-Za-z0-9_-]*\Z")
# A base64url text of 4k+2 (4k+3) characters ends in one that carries 4 (2) bits no byte uses; the
# canonical spelling has them zero, i.e. the last character is one of these (RFC 4648 §3.5).
_CANONICAL_LAST = {2: frozenset("AQgw"), 3: frozenset("AEIMQUYcgkosw048")}
RECORD_ALGS = tuple(alg for suite in SUITES.values() for alg in suite.jws_algs)
"""Every `alg` a record may have: EdDSA (RFC 8037) or its fully specified name Ed25519 (RFC 9864) for an Ed25519
device's, SM2SM3 (docs/protocol.md §3) for an SM2 device's; a record's must be its own device's suite's."""
_ALG_RULE = "header alg must be EdDSA or Ed25519 (RFC 9864), or SM2SM3"
_KID = re.compile(r"^[\x21-\x7e]{1,64}\Z")  # printable ASCII: a device id, nothing a database could refuse


class RecordRejected(Exception):
    """A submission that cannot enter the ledger; `code` is one of PROTOCOL §4's rejection codes."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class ParsedRecord:
    """A record whose structure is sound; its signature is not checked yet."""

    text: str
    hash: str
    kid: str
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes
    nul_escape: bool = True  # strict JSON holds U+0000 only as the escape `\\u0000`: False means none anywhere
    suite: Suite = INTL  # what its header's alg names; `verify` holds it to its device's


def record_hash(text: str, suite: Suite) -> str:
    """A record's chain hash (PROTOCOL §3): its device suite's digest of the ASCII bytes of its compact JWS, in
    lower-case hex: SHA-256 for an Ed25519 device, SM3 for an SM2 device. The one home of that rule: the ledger,
    the chain, the audit and the package verifier all ask here."""
    return suite.hexdigest(text.encode("ascii"))


def _b64decode(part: str) -> bytes:
    """The URL-safe alphabet, no padding, but lenient on the unused trailing bits: only for enrolled public keys,
    which are stored as the phone sent them (a record's parts are read by `canonical_b64decode`)."""
    if not _B64URL.match(part) or len(part) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def canonical_b64decode(part: str) -> bytes:
    """Base64url whose unused trailing bits are zero: the only spelling of its bytes.

    The decoder ignores those bits, so without this check one signature would
    have several spellings, and so one signed record several texts and hashes.
    A look at the last character is enough (no re-encoding): this runs three
    times per pushed record.
    """
    if not _B64URL.match(part):
        raise ValueError("not base64url (only A-Z a-z 0-9 - _, no padding)")
    rest = len(part) % 4
    if rest == 1:
        raise ValueError("not base64url (its length is one more than a multiple of 4)")
    if rest and part[-1] not in _CANONICAL_LAST[rest]:
        raise ValueError("not canonical base64url (the unused bits of its last character are not zero)")
    return base64.urlsafe_b64decode(part + "=" * (4 - rest) if rest else part)


def _b64_problem(parts: list[str]) -> str:
    """Which part of a compact JWS is not canonical base64url, and why (only on the way to a rejection)."""
    for name, part in zip(("header", "payload", "signature"), parts, strict=True):
        try:
            canonical_b64decode(part)
        except (ValueError, binascii.Error) as exc:
            return f"the {name} is {exc}"
    return "a part is not canonical base64url"


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _check_tree(value: Any) -> None:
    """I-JSON (RFC 7493): no lone surrogates; and a bounded depth, so nothing later recurses without end."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not is_unicode_text(item):
                raise ValueError("a string holds a lone surrogate (not Unicode text)")
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
            children = [*item, *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _may_break_tree_rules(text: str) -> bool:
    """Whether `_check_tree` can find anything: strict JSON reaches a lone surrogate only through a
    `\\uD800`-style escape, and no deeper nesting than it has opening brackets."""
    return (text.count("{") + text.count("[") >= MAX_DEPTH
            or ("\\u" in text and _SURROGATE_ESCAPE.search(text) is not None))


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_strict_object, parse_float=_finite,
                           parse_constant=_no_constant)
        if _may_break_tree_rules(text):
            _check_tree(value)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RecordRejected("malformed", f"{what} is not strict JSON: {exc}"[:300]) from None
    except RecursionError:
        raise RecordRejected("malformed", f"{what} is nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(value, dict):
        raise RecordRejected("malformed", f"{what} is not a JSON object")
    return value


def parse(text: Any) -> ParsedRecord:
    """Check shape, header and payload JSON. Raises RecordRejected('malformed', ...)."""
    if not isinstance(text, str):
        raise RecordRejected("malformed", "a record must be a string")
    if len(text) > MAX_RECORD_BYTES:
        raise RecordRejected("malformed", f"record larger than {MAX_RECORD_BYTES} bytes")
    if not text.isascii():
        raise RecordRejected("malformed", "a compact JWS is ASCII")
    parts = text.split(".")
    if len(parts) != 3 or not all(parts):
        raise RecordRejected("malformed", "not a compact JWS (header.payload.signature)")
    try:
        header_raw, payload_raw = canonical_b64decode(parts[0]), canonical_b64decode(parts[1])
        signature = canonical_b64decode(parts[2])
    except (ValueError, binascii.Error):
        raise RecordRejected("malformed", _b64_problem(parts)) from None
    header = _json_object(header_raw, "header")
    suite = suite_for_alg(header.get("alg"))
    if suite is None:
        raise RecordRejected("malformed", _ALG_RULE)
    if header.get("typ") != TYP:
        raise RecordRejected("malformed", f"header typ must be {TYP}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not _KID.match(kid):
        raise RecordRejected("malformed", "header kid must name the device")
    if set(header) - {"alg", "kid", "typ"}:
        raise RecordRejected("malformed", "header has fields other than alg, kid, typ")
    if len(signature) != 64:
        raise RecordRejected("bad_signature", f"an {suite.signature_name} signature is 64 bytes")
    return ParsedRecord(text=text, hash=record_hash(text, suite), kid=kid,
                        payload=_json_object(payload_raw, "payload"),
                        signing_input=f"{parts[0]}.{parts[1]}".encode("ascii"), signature=signature,
                        nul_escape=b"\\u0000" in payload_raw, suite=suite)


def _key_bytes(b64: str, canonical: bool) -> bytes:
    try:
        return canonical_b64decode(b64) if canonical else _b64decode(b64)
    except (ValueError, binascii.Error) as exc:
        raise ValueError(f"public_key is {exc}" if canonical else "public_key is not base64url") from None


def _shape_problem(raw: bytes, suite: Suite) -> str | None:
    """What is wrong with the length or prefix of a `suite` key, as enrolment has always said it (PROTOCOL §2)."""
    if suite is INTL:
        return None if len(raw) == INTL.public_key_bytes else "public_key must be 32 raw bytes"
    if len(raw) != suite.public_key_bytes:
        return (f"public_key must be the {suite.public_key_bytes}-byte uncompressed SM2 point (0x04 || x || y), "
                f"not {len(raw)} bytes")
    if raw[0] != 0x04:
        return "public_key must be the uncompressed SM2 point: its first byte is 0x04"
    return None


_NOT_A_POINT = {INTL.name: "public_key is not a valid Ed25519 point",
                SM.name: "public_key is not a point on the SM2 curve"}
"""What enrolment answers for a key of the right shape that its suite refuses (`InvalidPublicKey`): an Ed25519 key
off the curve, outside the prime-order subgroup or of small order; an SM2 key off the curve. The suite says why in
its own words; these are the protocol's answers, and stay as phones have always been given them."""


def load_public_key(b64: str, *, canonical: bool = False) -> bytes:
    """The raw 32-byte Ed25519 key, from base64url without padding; must be a valid curve point. `canonical` (at
    enrolment) also refuses a key whose unused trailing bits are set, so one key cannot be enrolled twice under two
    spellings; keys already stored load as they were enrolled. ValueError as for `load_device_key`."""
    return load_device_key(b64, INTL, canonical=canonical).raw


@dataclass(frozen=True, slots=True)
class DeviceKey:
    """A device's key: its suite, its raw bytes, and what checks a signature under it, the key loaded once (per push,
    per audit, per package), so nothing is made per record: a push checks hundreds under one key."""

    suite: Suite
    raw: bytes
    verifier: Verifier

    @property
    def alg(self) -> str:
        return device_alg(self.suite.name)


def load_device_key(b64: str, suite: Suite, *, canonical: bool = False) -> DeviceKey:
    """An enrolled key of `suite`, base64url without padding (`canonical` as for `load_public_key`). ValueError
    names what is wrong: the spelling, the length, or a point not on the curve."""
    if suite.name not in _NOT_A_POINT:
        raise ValueError(f"no device key is of suite {suite.name!r}")
    raw = _key_bytes(b64, canonical)
    problem = _shape_problem(raw, suite)
    if problem is not None:
        raise ValueError(problem)
    try:
        return DeviceKey(suite, raw, suite.verifier(raw))
    except InvalidPublicKey:
        raise ValueError(_NOT_A_POINT[suite.name]) from None


def device_alg(suite: str) -> str:
    """The `alg` that names a device's suite where the device is described (its status, a package's manifest):
    `EdDSA` for an Ed25519 device (whose records may also say `Ed25519`), `SM2SM3` for an SM2 device."""
    return suite_named(suite).jws_algs[0]


def device_key(public_key: str, suite: str) -> DeviceKey:
    """The key of an enrolled device, from its `public_key` and `suite` columns."""
    return load_device_key(public_key, suite_named(suite))


def verify(record: ParsedRecord, key: DeviceKey) -> None:
    """Check the record's signature with its device's key, in its device's suite.

    A record whose header names another suite than its device's (an `SM2SM3` record of an Ed25519 device, an
    `EdDSA` one of an SM2 device) is `bad_signature`: no signature of it is the device's.

    The key's verifier is the suite's, made once per device: Ed25519 by `cryptography` (OpenSSL), SM2 by GmSSL (user
    ID 1234567812345678, raw r ‖ s). `parse` has already split and decoded the JWS strictly and checked the header's
    alg (`EdDSA`, or `Ed25519`, RFC 9864's name for the same signature over the same key), so the signing input and
    the signature go to it as they are.
    """
    if record.suite is not key.suite:
        raise RecordRejected("bad_signature", f"the record's alg is not its device's: the device enrolled an "
                                              f"{key.suite.signature_name} key (alg {' or '.join(key.suite.jws_algs)})")
    if not key.verifier(record.signing_input, record.signature):
        raise RecordRejected("bad_signature", "signature does not verify with the device key")
