"""Offline verification of an evidence package (`fieldcase verify-package`): no server, no database.

Everything is checked from the ZIP alone, plus (optionally) the custody key
given by the person verifying:

- every record's Ed25519 signature with its device's key from the manifest
  (header `alg` `EdDSA` or `Ed25519`, `kid` the device), its `seq`, and its hash;
- every device chain: each `seq` between the first and last included record
  is either included or listed by hash, and each included record's `prev` is
  the hash of the one before (released gaps excepted);
- each evidence item against its signed `evidence.capture` declaration (each
  digest it declares, `sha256`, `sm3` or both), and each file's SHA-256 (and
  SM3, when the item carries one, from the same read) and size against the item;
- that every file the custody log shows verified is in the package, unless
  the log also proves its deletion under retention (a `deleted` event with the
  item's hash): the manifest's own `status` is not signed, so only a proven
  event excuses a missing file;
- every custody event's inclusion proof against the signed tree head, and
  the head's signature. A key from the package itself proves only that the
  package is self-consistent (whoever forged it could have made the key),
  so the report says which key was used;
- the SM tree, when the package carries one (`sm_tree.py`): its SM2-signed
  head at the tree head's size, and an SM3 inclusion proof of every leaf
  proven above, against its root;
- the head's RFC 3161 timestamp token, when it has one (`timestamp.py`): over
  the head's signed bytes, signed by a timeStamping certificate, chained to
  the TSA anchor given (`--tsa-cert`); the report names the TSA and its time;
- the sealed index (`index.py`): every member's SHA-256 and size, signed with
  the custody key, and in a package with the SM tree every member's SM3 too,
  sealed with the SM2 key the SM tree head is checked with.

Strict as the server is (PROTOCOL "Records and push, as built", "Custody log,
as built"): every base64url in the package (record parts, keys, signatures) is
canonical (URL-safe alphabet, no padding, unused trailing bits zero), so no
second spelling of a signature or key passes; every hash is 64 lower-case hex
digits; proofs follow RFC 9162 to the letter (media.custody.proofs).

Reads files in chunks: memory does not grow with their size.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from cryptography import x509

from media.package_verify.corrections import check_corrections
from media.package_verify.evidence import check_evidence
from media.package_verify.facts import check_facts, check_institution, check_membership
from media.package_verify.heads import check_tree_head, custody_key, head_tree
from media.package_verify.index import check_index
from media.package_verify.members import Members
from media.package_verify.records import check_records, device_keys
from media.package_verify.report import PackageReport
from media.package_verify.server_facts import check_case_facts
from media.package_verify.sm_tree import check_sm_tree
from media.package_verify.spelling import key_id, load_key
from media.package_verify.timestamp import check_head_timestamp

__all__ = ["PackageReport", "key_id", "load_key", "verify_package"]


def verify_package(source: str | Path | IO[bytes], public_key: str | None = None, *,
                   tsa_trust: Sequence[x509.Certificate] = (), sm_public_key: str | None = None) -> PackageReport:
    """Check a package; `tsa_trust` are the anchors its tree head's RFC 3161 timestamp must chain to,
    `sm_public_key` the SM2 key its SM tree head and SM2 seal must be signed with (when it carries them)."""
    report = PackageReport()
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        report.problems.append(f"not a readable ZIP file: {exc}")
        return report
    with zf:
        try:
            manifest = json.loads(zf.read("manifest.json").decode("utf-8"))
        except KeyError:
            report.problems.append("manifest.json is missing from the package")
            return report
        except (ValueError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
            report.problems.append(f"manifest.json cannot be read: {exc}")
            return report
        if not isinstance(manifest, dict) or manifest.get("format") != "fieldcase-evidence-package":
            report.problems.append("manifest.json is not a fieldcase evidence package manifest")
            return report
        try:
            _verify(zf, manifest, public_key, tsa_trust, report, sm_public_key)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            report.problems.append(f"the manifest is malformed ({type(exc).__name__}: {exc})")
    return report


def _verify(zf: zipfile.ZipFile, manifest: dict[str, Any], public_key: str | None,
            tsa_trust: Sequence[x509.Certificate], report: PackageReport, sm_public_key: str | None = None) -> None:
    members = Members(zf, sm3="sm" in manifest["custody"])  # sealed in SM2 too: every member's SM3 in its one read
    key = custody_key(manifest, public_key, report)
    keys = device_keys(manifest["devices"], report)
    tree = head_tree(manifest["custody"]["tree_head"], report)
    signed = check_records(manifest["records"], manifest["devices"], keys, tree, report)
    check_evidence(members, manifest, signed, tree, report)
    check_membership(manifest, signed, report)
    corrected = check_corrections(manifest, signed, report)
    check_facts(manifest, signed, report, corrected)
    check_institution(manifest, signed, report, corrected)
    check_case_facts(manifest, tree, report)
    check_tree_head(manifest, key, bool(public_key), report)
    check_sm_tree(manifest, sm_public_key, report)
    check_head_timestamp(manifest, tsa_trust, report)
    check_index(members, manifest, key, report, sm_public_key)
