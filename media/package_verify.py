"""Offline verification of an evidence package (`fieldcase verify-package`): no server, no database.

Everything is checked from the ZIP alone, plus (optionally) the custody key
given by the person verifying:

- every record's Ed25519 signature with its device's key from the manifest
  (header `alg` `EdDSA` or `Ed25519`, `kid` the device), its `seq`, and its hash;
- every device chain: each `seq` between the first and last included record
  is either included or listed by hash, and each included record's `prev` is
  the hash of the one before (released gaps excepted);
- each evidence item against its signed `evidence.capture` declaration, and
  each file's SHA-256 and size against the item;
- that every file the custody log shows verified is in the package, unless
  the log also proves its deletion under retention (a `deleted` event with the
  item's hash): the manifest's own `status` is not signed, so only a proven
  event excuses a missing file;
- every custody event's inclusion proof against the signed tree head, and
  the head's signature. A key from the package itself proves only that the
  package is self-consistent (whoever forged it could have made the key),
  so the report says which key was used.

Strict as the server is (PROTOCOL "Records and push, as built", "Custody log,
as built"): every base64url in the package (record parts, keys, signatures) is
canonical (URL-safe alphabet, no padding, unused trailing bits zero), so no
second spelling of a signature or key passes; every hash is 64 lower-case hex
digits; proofs follow RFC 9162 to the letter (media.custody.proofs).

Reads files in chunks: memory does not grow with their size.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from media.custody.proofs import check_inclusion

ZERO_HASH = "0" * 64
CHUNK = 1024 * 1024
RECORD_ALGS = ("EdDSA", "Ed25519")  # RFC 8037, and RFC 9864's fully specified name for the same signature
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
# The last character of 4k+2 (4k+3) base64url characters carries 4 (2) unused bits; canonical text has them zero.
_CANONICAL_LAST = {2: frozenset("AQgw"), 3: frozenset("AEIMQUYcgkosw048")}
_HEX_HASH = re.compile(r"[0-9a-f]{64}")


class Refused(ValueError):
    """Something in the package is not spelled as the protocol allows; what it claims was not checked."""


@dataclass
class PackageReport:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    records: int = 0
    devices: int = 0
    items: int = 0
    files: int = 0
    deleted: int = 0
    events: int = 0
    key_source: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        deleted = f", {self.deleted} deleted under retention" if self.deleted else ""
        return (f"{self.records} records from {self.devices} devices, {self.items} evidence items "
                f"({self.files} files{deleted}), {self.events} custody events")


def _b64d(text: object) -> bytes:
    """Canonical base64url (RFC 7515 §2, RFC 4648 §3.5): the only spelling of its bytes; Refused otherwise."""
    if not isinstance(text, str):
        raise Refused("not a string")
    if not _B64URL.fullmatch(text):
        raise Refused("not base64url (only A-Z a-z 0-9 - _, no padding)")
    rest = len(text) % 4
    if rest == 1:
        raise Refused("not base64url (its length is one more than a multiple of 4)")
    if rest and text[-1] not in _CANONICAL_LAST[rest]:
        raise Refused("not canonical base64url (the unused bits of its last character are not zero)")
    return base64.urlsafe_b64decode(text + "=" * (4 - rest) if rest else text)


def _hash(text: object, what: str) -> bytes:
    """A 32-byte hash, written as 64 lower-case hex digits; Refused (saying why) otherwise."""
    if not isinstance(text, str):
        raise Refused(f"{what} is not a hex string")
    if not text:
        raise Refused(f"{what} is empty")
    if not _HEX_HASH.fullmatch(text):
        if len(text) != 64:
            raise Refused(f"{what} has {len(text)} characters, not the 64 hex digits of a 32-byte hash")
        raise Refused(f"{what} is not lower-case hex")
    return bytes.fromhex(text)


def load_key(text: str) -> Ed25519PublicKey:
    """Canonical base64url of a raw 32-byte Ed25519 public key (see `_typed_key` for one typed by a person)."""
    raw = _b64d(text)
    if len(raw) != 32:
        raise Refused(f"an Ed25519 public key is 32 bytes, not {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def _typed_key(text: str) -> str:
    """A key given on the command line: surrounding blanks, standard base64's `+` and `/` and its `=` padding
    are forgiven there (they cannot make a package pass); its bits must still be spelled canonically."""
    return text.strip().replace("+", "-").replace("/", "_").rstrip("=")


def key_id(text: str) -> str:
    return hashlib.sha256(_b64d(text)).hexdigest()[:16]


def verify_package(source: str | Path | IO[bytes], public_key: str | None = None) -> PackageReport:
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
            _verify(zf, manifest, public_key, report)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            report.problems.append(f"the manifest is malformed ({type(exc).__name__}: {exc})")
    return report


def _verify(zf: zipfile.ZipFile, manifest: dict[str, Any], public_key: str | None, report: PackageReport) -> None:
    keys = _device_keys(manifest["devices"], report)
    captures = _records(manifest["records"], manifest["devices"], keys, report)
    _evidence(zf, manifest, captures, _head_tree(manifest["custody"]["tree_head"], report), report)
    _tree_head(manifest, public_key, report)


def _head_tree(head: dict[str, Any], report: PackageReport) -> tuple[int, bytes] | None:
    """The tree head's size and root, or None (reported) when they are not a size and a 32-byte hash."""
    size = head["tree_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        report.problems.append(f"tree head: its tree_size {size!r} is not a non-negative integer, so no custody "
                               "event can be proven against it")
        return None
    try:
        return size, _hash(head["root_hash"], "its root_hash")
    except Refused as exc:
        report.problems.append(f"tree head (size {size}): refused, {exc}, so no custody event can be proven "
                               "against it")
        return None


def _device_keys(devices: dict[str, Any], report: PackageReport) -> dict[str, Ed25519PublicKey]:
    keys = {}
    report.devices = len(devices)
    for device_id, device in devices.items():
        try:
            keys[device_id] = load_key(device["public_key"])
        except (ValueError, TypeError, binascii.Error) as exc:
            report.problems.append(f"device {device_id}: its public key is not a valid Ed25519 key ({exc})")
    return keys


def _verify_jws(text: object, key: Ed25519PublicKey) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and payload of a compact JWS whose EdDSA signature holds.

    Refused when the JWS is not spelled as PROTOCOL §3 allows (three canonical base64url parts, a JSON
    object header whose `alg` is EdDSA or Ed25519, a 64-byte signature): its signature is then not checked.
    ValueError when the signature does not hold.
    """
    if not isinstance(text, str) or not text.isascii():
        raise Refused("a compact JWS is an ASCII string")
    parts = text.split(".")
    if len(parts) != 3 or not all(parts):
        raise Refused("not a compact JWS (header.payload.signature)")
    raw = []
    for name, part in zip(("header", "payload", "signature"), parts, strict=True):
        try:
            raw.append(_b64d(part))
        except Refused as exc:
            raise Refused(f"its {name} is {exc}") from None
    header_raw, payload_raw, signature = raw
    header, payload = _json_object(header_raw, "header"), _json_object(payload_raw, "payload")
    if header.get("alg") not in RECORD_ALGS:
        raise Refused(f"header alg is {header.get('alg')!r}, not EdDSA or Ed25519")
    if len(signature) != 64:
        raise Refused(f"its signature is {len(signature)} bytes, not the 64 of Ed25519")
    try:
        key.verify(signature, f"{parts[0]}.{parts[1]}".encode("ascii"))
    except InvalidSignature:
        raise ValueError("bad signature") from None
    return header, payload


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Refused(f"its {what} is not JSON ({type(exc).__name__})") from None
    if not isinstance(value, dict):
        raise Refused(f"its {what} is not a JSON object")
    return value


def _records(records: list[dict[str, Any]], devices: dict[str, Any], keys: dict[str, Ed25519PublicKey],
             report: PackageReport) -> dict[str, tuple[str, dict[str, Any]]]:
    """Check each record and each device chain; answer the evidence.capture bodies by evidence id."""
    report.records = len(records)
    chains: dict[str, dict[int, tuple[str, str | None]]] = {d: {} for d in devices}
    captures: dict[str, tuple[str, dict[str, Any]]] = {}
    for rec in records:
        device_id, seq, text = rec["device"], rec["seq"], rec["jws"]
        where = f"record {device_id}#{seq}"
        digest = hashlib.sha256(text.encode("ascii", "replace")).hexdigest()
        if digest != rec["hash"]:
            report.problems.append(f"{where}: its JWS does not hash to the listed hash (the record was altered)")
        if device_id not in devices:
            report.problems.append(f"{where}: its device is not in the manifest, so it cannot be checked")
            continue
        prev = None
        if device_id in keys:
            try:
                header, payload = _verify_jws(text, keys[device_id])
            except Refused as exc:
                report.problems.append(f"{where}: refused, {exc}: it is not a record JWS as the protocol spells "
                                       "one, so its signature was not checked")
            except (ValueError, UnicodeError, binascii.Error) as exc:
                report.problems.append(f"{where}: signature check failed ({exc}): the record is not as the "
                                       "device signed it")
            else:
                prev = payload.get("prev")
                if header.get("kid") != device_id:
                    report.problems.append(f"{where}: signed with kid {header.get('kid')!r}, not its device")
                if payload.get("seq") != seq:
                    report.problems.append(f"{where}: its signed seq is {payload.get('seq')}")
                if payload.get("type") == "evidence.capture" and isinstance(payload.get("body"), dict):
                    captures[str(payload["body"].get("evidence_id"))] = (device_id, payload["body"])
        if seq in chains[device_id]:
            report.problems.append(f"{where}: listed twice")
        chains[device_id][seq] = (digest, prev)
    for device_id, device in devices.items():
        _chain(device_id, device, chains[device_id], report)
    return captures


def _chain(device_id: str, device: dict[str, Any], included: dict[int, tuple[str, str | None]],
           report: PackageReport) -> None:
    first, last = device["first_seq"], device["last_seq"]
    others = {o["seq"]: o["hash"] for o in device["other_records"]}
    gaps = {s for a, b in device.get("gaps", []) for s in range(a, b + 1)}
    if not included:
        report.problems.append(f"device {device_id}: none of its records is in the package")
        return
    for seq in sorted(set(included) | set(others)):
        if not first <= seq <= last:
            report.problems.append(f"device {device_id}: seq {seq} is outside its listed range {first}..{last}")
    for seq in set(included) & set(others):
        report.problems.append(f"device {device_id}: seq {seq} is both included and listed as another record")
    for seq in range(first, last + 1):
        if seq not in included and seq not in others and seq not in gaps:
            report.problems.append(f"device {device_id}: record seq {seq} is missing from the chain "
                                   "(neither included nor listed by hash: a record was removed)")
    for seq, (_, prev) in sorted(included.items()):
        if prev is None:
            continue  # its signature failed: already reported
        if seq == 1:
            expected = ZERO_HASH
        elif seq - 1 in included:
            expected = included[seq - 1][0]
        elif seq - 1 in others:
            expected = others[seq - 1]
        else:
            continue  # the first included record, or right after a released gap: nothing to link to
        if prev != expected:
            report.problems.append(f"device {device_id}: record seq {seq} does not link to seq {seq - 1} "
                                   "(its prev is not that record's hash: the chain is broken)")


def _evidence(zf: zipfile.ZipFile, manifest: dict[str, Any], captures: dict[str, tuple[str, dict[str, Any]]],
              tree: tuple[int, bytes] | None, report: PackageReport) -> None:
    package_id = manifest["package"]["id"]
    listed = set()
    report.items = len(manifest["evidence"])
    for item in manifest["evidence"]:
        eid = item["id"]
        where = f"evidence {item.get('item')} ({eid})"
        declared = captures.get(eid)
        if declared is None:
            report.problems.append(f"{where}: its signed evidence.capture record is not in the package")
        else:
            device_id, body = declared
            for name in ("sha256", "size", "kind", "media_type"):
                if body.get(name) != item[name]:
                    report.problems.append(f"{where}: {name} {item[name]!r} differs from the signed declaration "
                                           f"({body.get(name)!r})")
            if device_id != item["device"]:
                report.problems.append(f"{where}: declared by device {device_id}, not {item['device']}")
        proven = _events(item, where, tree, package_id, report)
        deletion = proven.get("deleted")
        if item.get("file"):
            listed.add(item["file"])
            _file(zf, item, where, report)
            if deletion is not None:
                report.problems.append(f"{where}: the custody log records the deletion of its file, yet the package "
                                       "holds one")
        elif deletion is not None:
            _deleted(item, where, deletion, report)
        elif item["status"] == "deleted":
            report.problems.append(f"{where}: listed as deleted, but no proven 'deleted' custody event says so: "
                                   "its file is missing from the package")
        elif item["status"] == "verified":
            report.problems.append(f"{where}: verified, but its file is not in the package")
        elif "verified" in proven:
            report.problems.append(f"{where}: the custody log shows it verified, but its file is not in the package "
                                   f"(listed as {item['status']!r})")
    for name in zf.namelist():
        if name.startswith("files/") and name not in listed:
            report.problems.append(f"file {name}: in the package but not listed in the manifest")


def _file(zf: zipfile.ZipFile, item: dict[str, Any], where: str, report: PackageReport) -> None:
    name = item["file"]
    try:
        info = zf.getinfo(name)
    except KeyError:
        report.problems.append(f"{where}: its file {name} is missing from the package")
        return
    h, n = hashlib.sha256(), 0
    try:
        with zf.open(info) as fh:
            while block := fh.read(CHUNK):
                h.update(block)
                n += len(block)
    except zipfile.BadZipFile as exc:  # a CRC error: the bytes were changed inside the ZIP
        report.problems.append(f"{where}: file {name} is damaged ({exc}); its bytes were altered")
        return
    report.files += 1
    if h.hexdigest() != item["sha256"]:
        report.problems.append(f"{where}: file {name} has SHA-256 {h.hexdigest()}, not the declared "
                               f"{item['sha256']}: the file was altered")
    if n != item["size"]:
        report.problems.append(f"{where}: file {name} is {n} bytes, not the declared {item['size']}")


def _deleted(item: dict[str, Any], where: str, leaf: dict[str, Any], report: PackageReport) -> None:
    if item["status"] != "deleted":
        report.problems.append(f"{where}: the custody log records the deletion of its file, but it is listed as "
                               f"{item['status']!r}")
        return
    if leaf.get("sha256") != item["sha256"] or leaf.get("size") != item["size"]:
        report.problems.append(f"{where}: its 'deleted' custody event records another hash or size")
        return
    report.deleted += 1
    report.notes.append(f"{where}: its file was deleted under the retention policy at {leaf.get('at')} by "
                        f"{leaf.get('actor')} ({leaf.get('reason')}); its hash and custody history remain")


def _events(item: dict[str, Any], where: str, tree: tuple[int, bytes] | None, package_id: str,
            report: PackageReport) -> dict[str, dict[str, Any]]:
    """Check every event; answer the last proven event of each action that decides whether a file is due."""
    exported = declared = False
    proven: dict[str, dict[str, Any]] = {}
    for event in item["custody_events"]:
        report.events += 1
        index, text = event["leaf_index"], event["leaf"]
        leaf = json.loads(text)
        if leaf.get("evidence_id") != item["id"]:
            report.problems.append(f"{where}: custody event at leaf {index} belongs to {leaf.get('evidence_id')}")
        if tree is not None and _proven(event, where, leaf, tree, report) and leaf.get("evidence_id") == item["id"] \
                and leaf.get("action") in ("verified", "deleted"):
            proven[leaf["action"]] = leaf
        if leaf.get("action") == "declared":
            declared = True
            if leaf.get("sha256") != item["sha256"] or leaf.get("size") != item["size"]:
                report.problems.append(f"{where}: its custody 'declared' event records another hash or size")
        if leaf.get("action") == "exported" and leaf.get("package") == package_id:
            exported = True
    if not declared:
        report.problems.append(f"{where}: its custody 'declared' event is not in the package")
    if not exported:
        report.problems.append(f"{where}: the custody log has no 'exported' event for this package")
    return proven


def _proven(event: dict[str, Any], where: str, leaf: dict[str, Any], tree: tuple[int, bytes],
            report: PackageReport) -> bool:
    """Whether the event's inclusion proof holds against the tree head (RFC 9162 §2.1.3.2); problems reported."""
    size, root = tree
    index, text = event["leaf_index"], event["leaf"]
    what = f"{where}: custody event at leaf {index} ({leaf.get('action')})"
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        report.problems.append(f"{what}: refused, its leaf_index is not a non-negative integer")
        return False
    if not isinstance(event["proof"], list):
        report.problems.append(f"{what}: refused, its proof is not a list of hashes")
        return False
    try:
        proof = [_hash(p, f"proof hash {n}") for n, p in enumerate(event["proof"])]
    except Refused as exc:
        report.problems.append(f"{what}: refused, {exc}: its inclusion proof does not hold against the tree head "
                               f"(size {size})")
        return False
    leaf_hash = hashlib.sha256(b"\x00" + text.encode("utf-8")).digest()
    problem = check_inclusion(leaf_hash, index, size, proof, root)
    if problem:
        report.problems.append(f"{what}: its inclusion proof does not hold against the tree head (size {size}): "
                               f"{problem}")
        return False
    return True


def _tree_head(manifest: dict[str, Any], public_key: str | None, report: PackageReport) -> None:
    custody = manifest["custody"]
    head = custody["tree_head"]
    if public_key:
        report.key_source = "command line"
        typed = _typed_key(public_key)
        try:
            key = load_key(typed)
        except (ValueError, binascii.Error) as exc:
            report.problems.append(f"the public key given on the command line is not a base64url Ed25519 key ({exc})")
            return
        report.notes.append(f"tree head checked against the key given on the command line (key_id {key_id(typed)})")
        if custody.get("public_key") and custody["public_key"] != typed:
            report.notes.append(f"note: the package names another custody key (key_id {custody.get('key_id')})")
    else:
        report.key_source = "package"
        try:
            key = load_key(custody["public_key"])
        except (ValueError, binascii.Error) as exc:
            report.problems.append(f"the custody public key in the package is not a valid Ed25519 key ({exc})")
            return
        report.notes.append(f"WARNING: tree head checked against the key inside the package (key_id "
                            f"{key_id(custody['public_key'])}): this only shows the package is self-consistent, "
                            "not that the server issued it; pass --public-key with the server's published key "
                            "(GET /api/v1/custody/public-key)")
        if key_id(custody["public_key"]) != custody.get("key_id"):
            report.problems.append("the package's custody key_id does not match its public key")
    signed = rfc8785.dumps({"tree_size": head["tree_size"], "root_hash": head["root_hash"],
                            "timestamp": head["timestamp"]})
    try:
        signature = _b64d(head["signature"])
        if len(signature) != 64:
            raise Refused(f"{len(signature)} bytes, not the 64 of Ed25519")
    except Refused as exc:
        report.problems.append(f"tree head (size {head['tree_size']}): refused, its signature is {exc}, so it was "
                               "not checked")
        return
    try:
        key.verify(signature, signed)
    except (InvalidSignature, ValueError):
        report.problems.append(f"tree head (size {head['tree_size']}): its signature does not verify with the "
                               f"{'given' if public_key else 'package'} key (forged or altered head, or another "
                               "server's key)")
