"""A CMS signer's signature under an outside certificate's key (backend.core.crypto.cms_signatures), as a TSA makes it.

Every key, certificate and signature here is made by the `openssl` command line, not by our code, in each kind a
TSA may sign with: RSA (PKCS #1 v1.5 and PSS), ECDSA, DSA, Ed25519 and Ed448. The OpenSSL TSA of
tests/media/test_timestamps.py signs with RSA only; these are the other branches.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from backend.core.crypto import cms_signatures
from tests.tsa import openssl

# cryptography deprecates DSA and warns at each use; a TSA may still sign with it, so the branch is tested.
pytestmark = pytest.mark.filterwarnings("ignore:DSA is deprecated")

DATA = b"the signed attributes of a TimeStampToken, as a SET OF\n"

KEYS = {  # name: the genpkey arguments
    "rsa": ("-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"),
    "ec": ("-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"),
    "ed25519": ("-algorithm", "ED25519"),
    "ed448": ("-algorithm", "ED448"),
}

# (key, CMS signature algorithm as asn1crypto names it, digest, PSS (MGF1 digest, salt length), how OpenSSL signs)
SIGNATURES = [
    ("rsa", "rsassa_pkcs1v15", "sha256", None, ("dgst", "-sha256")),
    ("rsa", "rsassa_pkcs1v15", "sha512", None, ("dgst", "-sha512")),
    ("rsa", "rsassa_pss", "sha256", ("sha256", 32),
     ("dgst", "-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32",
      "-sigopt", "rsa_mgf1_md:sha256")),
    ("rsa", "rsassa_pss", "sha384", ("sha512", 48),
     ("dgst", "-sha384", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:48",
      "-sigopt", "rsa_mgf1_md:sha512")),
    ("ec", "ecdsa", "sha256", None, ("dgst", "-sha256")),
    ("ec", "ecdsa", "sha384", None, ("dgst", "-sha384")),
    ("dsa", "dsa", "sha256", None, ("dgst", "-sha256")),
    ("ed25519", "ed25519", "sha256", None, ("pkeyutl", "-rawin")),
    ("ed448", "ed448", "sha512", None, ("pkeyutl", "-rawin")),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A key and a self-signed certificate of each kind, made by OpenSSL, and the data they sign."""
    path = tmp_path_factory.mktemp("cms_signatures")
    for name, args in KEYS.items():
        openssl("genpkey", *args, "-out", f"{name}.key", cwd=path)
    openssl("genpkey", "-genparam", "-algorithm", "DSA", "-pkeyopt", "pbits:2048", "-pkeyopt", "qbits:256",
            "-out", "dsa.params", cwd=path)
    openssl("genpkey", "-paramfile", "dsa.params", "-out", "dsa.key", cwd=path)
    for name in (*KEYS, "dsa"):
        openssl("req", "-x509", "-key", f"{name}.key", "-subj", f"/CN=test TSA {name}", "-days", "1",
                "-out", f"{name}.pem", cwd=path)
    (path / "data").write_bytes(DATA)
    return path


def key_of(folder: Path, name: str):
    return x509.load_pem_x509_certificate((folder / f"{name}.pem").read_bytes()).public_key()


def signed_by_openssl(folder: Path, name: str, how: tuple[str, ...]) -> bytes:
    command, *options = how
    if command == "dgst":
        openssl("dgst", *options, "-sign", f"{name}.key", "-out", "signature", "data", cwd=folder)
    else:
        openssl("pkeyutl", "-sign", *options, "-inkey", f"{name}.key", "-in", "data", "-out", "signature",
                cwd=folder)
    return (folder / "signature").read_bytes()


@pytest.mark.parametrize(("name", "algorithm", "digest", "pss", "how"), SIGNATURES,
                         ids=[f"{s[1]}-{s[2]}" for s in SIGNATURES])
def test_given_a_signature_openssl_made_then_it_holds_under_the_certificates_key_and_nothing_altered_does(
        folder, name, algorithm, digest, pss, how):
    key, signature = key_of(folder, name), signed_by_openssl(folder, name, how)

    assert cms_signatures.fits(key, algorithm)
    assert cms_signatures.verify(key, algorithm, digest, DATA, signature, pss=pss)
    assert not cms_signatures.verify(key, algorithm, digest, DATA + b"x", signature, pss=pss)
    flipped = bytearray(signature)
    flipped[len(flipped) // 2] ^= 0x01
    assert not cms_signatures.verify(key, algorithm, digest, DATA, bytes(flipped), pss=pss)


def test_given_a_signature_checked_with_other_parameters_than_it_was_made_with_then_it_does_not_hold(folder):
    pkcs1 = signed_by_openssl(folder, "rsa", ("dgst", "-sha256"))
    assert not cms_signatures.verify(key_of(folder, "rsa"), "rsassa_pkcs1v15", "sha384", DATA, pkcs1)

    pss = signed_by_openssl(folder, "rsa", SIGNATURES[2][4])
    assert not cms_signatures.verify(key_of(folder, "rsa"), "rsassa_pss", "sha256", DATA, pss, pss=("sha256", 20))
    assert not cms_signatures.verify(key_of(folder, "rsa"), "rsassa_pkcs1v15", "sha256", DATA, pss)


@pytest.mark.parametrize(("name", "algorithm"), [("rsa", "ecdsa"), ("ec", "rsassa_pkcs1v15"), ("ec", "dsa"),
                                                 ("dsa", "rsassa_pss"), ("ed25519", "ecdsa"), ("rsa", "ed25519"),
                                                 ("rsa", "sm2")])
def test_given_a_key_of_another_kind_than_the_algorithm_then_it_does_not_fit_and_verify_refuses(folder, name,
                                                                                                  algorithm):
    key = key_of(folder, name)

    assert not cms_signatures.fits(key, algorithm)
    with pytest.raises(ValueError, match="makes no"):
        cms_signatures.verify(key, algorithm, "sha256", DATA, b"\x00" * 64)


def test_given_a_digest_other_than_sha2_then_it_is_refused_by_name(folder):
    assert {"sha224", "sha256", "sha384", "sha512"} == cms_signatures.SHA2
    with pytest.raises(KeyError):
        cms_signatures.sha2("sha1", DATA)
    with pytest.raises(KeyError):
        cms_signatures.verify(key_of(folder, "ec"), "ecdsa", "md5", DATA, b"")
    pss = signed_by_openssl(folder, "rsa", SIGNATURES[2][4])
    with pytest.raises(KeyError):
        cms_signatures.verify(key_of(folder, "rsa"), "rsassa_pss", "sha256", DATA, pss, pss=("sha1", 32))


@pytest.mark.parametrize("name", ["sha224", "sha256", "sha384", "sha512"])
def test_given_a_sha2_name_then_the_digest_is_openssls(folder, name):
    expected = openssl("dgst", f"-{name}", "-binary", "data", cwd=folder)

    assert cms_signatures.sha2(name, DATA) == expected
