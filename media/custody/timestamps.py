"""RFC 3161 timestamps of signed tree heads: asking a Time-Stamping Authority, and checking the token it gives.

A signed tree head states when it was signed by the log's own clock, which whoever holds the custody key could
set back. A token from an independent TSA states that the head existed no later than the TSA's time. The token's
message imprint is a digest of exactly the bytes the head's signature covers (`media.custody.keys.head_payload`),
so whoever checks the head re-derives the imprint from the same fields: SHA-256 for an intl head (`SHA256_IMPRINT`),
SM3 for a head of the SM tree (`SM3_IMPRINT`, OID 1.2.156.10197.1.401; docs/crypto.md says why), so that each
tree's time rests on its own suite's digest.

The token is a CMS ContentInfo (RFC 5652) holding a TSTInfo (RFC 3161 §2.4.2). It is read with asn1crypto, its
signature checked by `backend.core.crypto.cms_signatures` (the home of primitives) and its certificate path by
cryptography's X.509 verifier: no DER is parsed here by hand. (rfc3161-client was the first choice; its strict DER
reader refuses tokens whose certificate SET is not sorted, which OpenSSL's own TSA writes, and it checks whole
responses against a trust root only, while a package verifier holds a bare token and may have no root.)

`check_token` is the one check, used at receipt, by `fieldcase custody verify` and by `fieldcase verify-package`:

- the token is a SignedData whose content is a TSTInfo, with exactly one signer;
- the imprint is of the algorithm asked for (SHA-256, or SM3 for an SM head), of exactly the head payload;
- the signed attributes name TSTInfo as the content type and carry its digest, and the signature over them holds
  with the signer's certificate, found in the token;
- that certificate is the one the ESS signing-certificate attribute names (RFC 5816), it was valid at the
  token's time, and its extended key usage is timeStamping alone, marked critical (RFC 3161 §2.3);
- with trust anchors, it chains to one of them at the token's time, through the token's other certificates.

Without trust anchors a token proves only that it was made with the key of the certificate it carries: anyone
can make such a certificate. The anchor (FIELDCASE_TSA_CERT, `verify-package --tsa-cert`) says whose it is.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from asn1crypto import cms, core, tsp
from cryptography import x509
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store, VerificationError

from backend.core.crypto import SM, cms_signatures, digests
from backend.core.errors import TimestampFailed
from media.custody.keys import head_payload

QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"


@dataclass(frozen=True)
class Imprint:
    """The hash of a message imprint (RFC 3161 §2.4.1): how a request names it and how a token's is recomputed."""

    label: str  # as messages name it
    oid: str  # the AlgorithmIdentifier's, dotted (written with NULL parameters, as OpenSSL writes both)
    digest: Callable[[bytes], bytes]


SHA256_IMPRINT = Imprint(label="SHA-256", oid="2.16.840.1.101.3.4.2.1", digest=digests.sha256)
SM3_IMPRINT = Imprint(label="SM3", oid="1.2.156.10197.1.401", digest=SM.digest)  # GM/T 0006, as GB/T 35275 names it


@dataclass(frozen=True)
class TokenFacts:
    """What a token that checks says: the TSA's time, who the TSA is, and whether that was checked."""

    gen_time: datetime  # aware UTC, as the TSA wrote it (fractions of a second kept)
    tsa: str  # the signing certificate's subject, RFC 4514
    serial: int  # the token's serial number: unique per TSA
    policy: str  # the TSA policy, dotted OID
    anchored: bool  # the signing certificate chains to a trust anchor the checker gave


def head_message(head: Mapping[str, Any]) -> bytes:
    """The bytes a head's token imprints (SHA-256 of them; SM3 for an SM head): exactly what its signature covers."""
    return head_payload(head["tree_size"], head["root_hash"], head["timestamp"])


def encode_token(token: bytes) -> str:
    """How a token travels in JSON (`timestamp_token` of a head): standard base64 (RFC 4648 §4), padded, of its
    DER, so `base64 -d` hands `openssl ts -verify -token_in` the token as it is."""
    return base64.b64encode(token).decode("ascii")


def decode_token(text: object) -> bytes:
    """A `timestamp_token` field's bytes; only its one spelling (standard, padded base64) is accepted."""
    if not isinstance(text, str) or not text:
        raise TimestampFailed("timestamp_token is not a base64 string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise TimestampFailed("timestamp_token is not standard base64") from None
    if encode_token(raw) != text:
        raise TimestampFailed("timestamp_token is not spelled canonically (standard base64, padded)")
    return raw


def load_trust(pem: bytes) -> tuple[x509.Certificate, ...]:
    """Trust anchors from PEM: the CA (or the TSA's own certificate) that a token's signer must chain to."""
    try:
        certificates = tuple(x509.load_pem_x509_certificates(pem))
    except ValueError as exc:
        raise TimestampFailed(f"the TSA trust anchor is not PEM certificates ({exc})") from None
    return certificates


def request_for(message: bytes, imprint: Imprint = SHA256_IMPRINT) -> tuple[bytes, int]:
    """A TimeStampReq (DER) for the `imprint` digest of `message`, asking for the TSA's certificate, and its random
    nonce."""
    nonce = secrets.randbits(63) | 1 << 62  # positive, and always 8 bytes of DER: no leading-zero questions
    request = tsp.TimeStampReq({
        "version": 1,
        "message_imprint": {"hash_algorithm": {"algorithm": imprint.oid, "parameters": core.Null()},
                            "hashed_message": imprint.digest(message)},
        "nonce": nonce,
        "cert_req": True,
    })
    return request.dump(), nonce


class _TimeStampResp(tsp.TimeStampResp):
    """RFC 3161 §2.4.2's TimeStampResp, whose token is OPTIONAL (absent when the TSA refuses: OpenSSL's answer to an
    imprint it does not take, badAlg). asn1crypto's class requires it, so a refusal would read as no answer at all."""

    _fields = [("status", tsp.PKIStatusInfo), ("time_stamp_token", cms.ContentInfo, {"optional": True})]


def token_from_reply(reply: bytes, nonce: int, message: bytes, trust: Sequence[x509.Certificate] = (),
                     imprint: Imprint = SHA256_IMPRINT) -> tuple[bytes, TokenFacts]:
    """The token of a TSA's TimeStampResp to our request, checked: granted, our nonce, and `check_token`."""
    try:
        response = _TimeStampResp.load(reply, strict=True)
        status = response["status"]
        granted = status["status"].native in ("granted", "granted_with_mods")
        if not granted:
            text = "; ".join(status["status_string"].native or []) if status["status_string"] else ""
            failure = status["fail_info"].native if status["fail_info"] else None
            raise TimestampFailed(f"the TSA refused: {status['status'].native}"
                                  f"{f' ({text})' if text else ''}{f' [{sorted(failure)}]' if failure else ''}")
        token_info = response["time_stamp_token"]
        if not token_info:
            raise TimestampFailed("the TSA granted but sent no token")
        token = token_info.dump()
        answered = token_info["content"]["encap_content_info"]["content"].parsed["nonce"].native
    except (ValueError, TypeError, KeyError) as exc:
        raise TimestampFailed(f"the TSA's answer is not a TimeStampResp ({type(exc).__name__}: {exc})") from None
    if answered != nonce:
        raise TimestampFailed("the TSA's token does not carry the nonce of our request (a replayed answer?)")
    return token, check_token(token, message, trust, imprint)


def check_head_token(token: bytes, head: Mapping[str, Any], trust: Sequence[x509.Certificate] = (),
                     imprint: Imprint = SHA256_IMPRINT) -> TokenFacts:
    """`check_token` for a tree head given as its JSON fields (`tree_size`, `root_hash`, `timestamp`); an SM tree
    head's token imprints SM3 (`SM3_IMPRINT`)."""
    return check_token(token, head_message(head), trust, imprint)


def check_token(token: bytes, message: bytes, trust: Sequence[x509.Certificate] = (),
                imprint: Imprint = SHA256_IMPRINT) -> TokenFacts:
    """Check a TimeStampToken (DER) over the `imprint` digest of `message`, offline; its facts, or TimestampFailed
    naming why."""
    try:
        info = cms.ContentInfo.load(token, strict=True)
        if info["content_type"].native != "signed_data":
            raise TimestampFailed(f"the token is CMS {info['content_type'].native}, not signed data")
        signed = info["content"]
        encap = signed["encap_content_info"]
        if encap["content_type"].native != "tst_info":
            raise TimestampFailed(f"the token signs {encap['content_type'].native}, not a TSTInfo")
        content = encap["content"]
        tst_der, tst = bytes(content), content.parsed
        signers = list(signed["signer_infos"])
        if len(signers) != 1:
            raise TimestampFailed(f"the token has {len(signers)} signers, not one")
        signer = signers[0]
        certificates = [c.chosen for c in signed["certificates"] if c.name == "certificate"] \
            if signed["certificates"] else []
        facts = _check(tst, tst_der, signer, certificates, message, trust, imprint)
    except TimestampFailed:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise TimestampFailed(f"the token cannot be read as an RFC 3161 TimeStampToken ({type(exc).__name__}: "
                              f"{exc})") from None
    return facts


def _check(tst: Any, tst_der: bytes, signer: Any, certificates: list[Any], message: bytes,
           trust: Sequence[x509.Certificate], expected: Imprint) -> TokenFacts:
    imprint = tst["message_imprint"]
    if imprint["hash_algorithm"]["algorithm"].dotted != expected.oid:
        raise TimestampFailed(f"the token imprints {imprint['hash_algorithm']['algorithm'].native}, not "
                              f"{expected.label}")
    if imprint["hashed_message"].native != expected.digest(message):
        raise TimestampFailed("the token imprints another message, not this tree head (a token of another head?)")
    digest_name = signer["digest_algorithm"]["algorithm"].native
    if digest_name not in cms_signatures.SHA2:
        raise TimestampFailed(f"the token's signature digest {digest_name} is not accepted (SHA-2 only)")
    attributes = {a["type"].native: a["values"] for a in signer["signed_attrs"]} if signer["signed_attrs"] else {}
    if "content_type" not in attributes or attributes["content_type"][0].native != "tst_info":
        raise TimestampFailed("the token's signed attributes do not name a TSTInfo as their content")
    if "message_digest" not in attributes:
        raise TimestampFailed("the token's signed attributes carry no message digest")
    if attributes["message_digest"][0].native != cms_signatures.sha2(digest_name, tst_der):
        raise TimestampFailed("the token's TSTInfo does not match the digest its signature covers (altered)")
    certificate = _signer_certificate(signer, certificates)
    _check_ess(attributes, certificate)
    _check_signature(signer, digest_name, certificate)
    gen_time = tst["gen_time"].native
    _check_certificate(certificate, gen_time)
    if tst["tsa"] and tst["tsa"].name == "directory_name" and tst["tsa"].chosen != certificate.subject:
        raise TimestampFailed("the token's TSA name is not the subject of the certificate that signed it")
    anchored = bool(trust) and _chain(certificate, certificates, gen_time, trust)
    return TokenFacts(gen_time=gen_time, tsa=_load(certificate).subject.rfc4514_string(),
                      serial=tst["serial_number"].native, policy=tst["policy"].dotted, anchored=anchored)


def _load(certificate: Any) -> x509.Certificate:
    return x509.load_der_x509_certificate(certificate.dump())


def _signer_certificate(signer: Any, certificates: list[Any]) -> Any:
    sid = signer["sid"]
    for candidate in certificates:
        if sid.name == "issuer_and_serial_number":
            if (candidate.issuer == sid.chosen["issuer"]
                    and candidate.serial_number == sid.chosen["serial_number"].native):
                return candidate
        elif candidate.key_identifier == sid.chosen.native:
            return candidate
    raise TimestampFailed("the token does not carry the certificate that signed it (asked for with certReq)")


def _check_ess(attributes: dict[str, Any], certificate: Any) -> None:
    """RFC 5816 / RFC 2634 §5.4: the signed attributes name the signing certificate by its hash, so another
    certificate with the same key cannot be put in its place."""
    if "signing_certificate_v2" in attributes:
        first = attributes["signing_certificate_v2"][0]["certs"][0]
        algorithm = first["hash_algorithm"]["algorithm"].native
        if algorithm not in cms_signatures.SHA2:
            raise TimestampFailed(f"the token names its certificate by a {algorithm} hash (SHA-2 only)")
        expected = cms_signatures.sha2(algorithm, certificate.dump())
    elif "signing_certificate" in attributes:
        first = attributes["signing_certificate"][0]["certs"][0]
        expected = digests.sha1(certificate.dump())
    else:
        raise TimestampFailed("the token's signed attributes do not name its signing certificate (ESS)")
    if first["cert_hash"].native != expected:
        raise TimestampFailed("the token's signing certificate is not the one its signature names (ESS hash)")


def _check_signature(signer: Any, digest_name: str, certificate: Any) -> None:
    data = signer["signed_attrs"].untag().dump()  # signed as a SET OF (RFC 5652 §5.4), not with the [0] tag
    signature = signer["signature"].native
    algorithm = signer["signature_algorithm"]
    named = _named_hash(algorithm)
    if named is not None and named != digest_name:
        raise TimestampFailed(f"the token's signature algorithm uses {named} but its digest is {digest_name}")
    key = _load(certificate).public_key()
    kind = algorithm.signature_algo
    if not cms_signatures.fits(key, kind):
        raise TimestampFailed(f"the token's signature algorithm {kind} does not fit its certificate's key")
    pss = None
    if kind == "rsassa_pss":
        params = algorithm["parameters"]
        pss = (params["mask_gen_algorithm"]["parameters"]["algorithm"].native, params["salt_length"].native)
    if not cms_signatures.verify(key, kind, digest_name, data, signature, pss=pss):
        raise TimestampFailed("the token's signature does not verify with its certificate (forged or altered)")


def _named_hash(algorithm: Any) -> str | None:
    """The hash a signature algorithm names itself (sha256_rsa, sha256_ecdsa), None when it names none."""
    if algorithm.signature_algo in ("rsassa_pss", "ed25519", "ed448"):
        return None
    try:
        return algorithm.hash_algo
    except ValueError:  # rsaEncryption: the digest algorithm alone says
        return None


def _check_certificate(certificate: Any, at: datetime) -> None:
    loaded = _load(certificate)
    if not loaded.not_valid_before_utc <= at <= loaded.not_valid_after_utc:
        raise TimestampFailed(f"the token's time {at.isoformat()} is outside its certificate's validity")
    try:
        usage = loaded.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise TimestampFailed("the token's certificate is not a TSA's: it has no extended key usage") from None
    if not usage.critical or list(usage.value) != [x509.ExtendedKeyUsageOID.TIME_STAMPING]:
        raise TimestampFailed("the token's certificate is not a TSA's: its extended key usage must be "
                              "timeStamping alone, marked critical (RFC 3161 §2.3)")


def _time_stamping(_policy: Any, _certificate: Any, usage: x509.ExtendedKeyUsage | None) -> None:
    if usage is None or x509.ExtendedKeyUsageOID.TIME_STAMPING not in usage:
        raise ValueError("not a timeStamping certificate")


def _chain(certificate: Any, certificates: list[Any], at: datetime, trust: Sequence[x509.Certificate]) -> bool:
    """Whether the signer chains to a trust anchor at the token's time (the token's other certificates may be
    intermediates); TimestampFailed when it does not. An anchor may be the TSA's own certificate."""
    leaf = _load(certificate)
    if any(leaf == anchor for anchor in trust):
        return True
    intermediates = [_load(c) for c in certificates if c.dump() != certificate.dump()]
    leaf_policy = ExtensionPolicy.permit_all().require_present(x509.ExtendedKeyUsage, Criticality.CRITICAL,
                                                               _time_stamping)
    verifier = (PolicyBuilder().store(Store(list(trust))).time(at)
                .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=leaf_policy)
                .build_client_verifier())
    try:
        verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        raise TimestampFailed(f"the token's certificate ({leaf.subject.rfc4514_string()}) does not chain to the "
                              f"given TSA trust anchor ({exc})") from None
    return True


@dataclass(frozen=True)
class TimestampAuthority:
    """A TSA named in configuration (FIELDCASE_TSA_URL), asked over HTTP (RFC 3161 §3.4), with the anchors its
    tokens must chain to (FIELDCASE_TSA_CERT; none: any TSA certificate is taken at its word)."""

    url: str
    timeout: float = 10.0
    trust: tuple[x509.Certificate, ...] = ()

    def stamp(self, message: bytes, imprint: Imprint = SHA256_IMPRINT) -> tuple[bytes, TokenFacts]:
        """A checked token over the `imprint` digest of `message` (SHA-256 unless told); TimestampFailed if the TSA
        is unreachable, refuses (a TSA that takes no SM3 imprints refuses an SM head's: badAlg), or answers with
        anything that does not check. Make no call with a transaction open: this waits on the network for up to
        `timeout` seconds."""
        query, nonce = request_for(message, imprint)
        try:
            answer = requests.post(self.url, data=query, headers={"Content-Type": QUERY_TYPE}, timeout=self.timeout)
        except requests.RequestException as exc:
            raise TimestampFailed(f"the TSA at {self.url} did not answer ({type(exc).__name__})") from None
        if answer.status_code != 200:
            raise TimestampFailed(f"the TSA at {self.url} answered HTTP {answer.status_code}")
        return token_from_reply(answer.content, nonce, message, self.trust, imprint)


def authority_for(settings: Any) -> TimestampAuthority | None:
    """The deployment's TSA (backend.core.config.Settings), or None when FIELDCASE_TSA_URL is not set."""
    if not settings.tsa_url:
        return None
    path = settings.tsa_cert_path
    trust = load_trust(Path(path).read_bytes()) if path is not None else ()
    return TimestampAuthority(url=settings.tsa_url, timeout=settings.tsa_timeout, trust=trust)
