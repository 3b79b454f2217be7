"""The records of a package: every signature with its device's key, and every device's hash chain.

Each device is listed with its `alg` (PROTOCOL "Evidence packages, as built"): `EdDSA` for an Ed25519 device (also
when the field is absent, as in packages made before SM2 devices), `SM2SM3` for an SM2 device. Its records must
carry an alg of that suite, their signatures are checked in it, and their chain hashes are its digest of the JWS
(`sync.jws.record_hash`: SHA-256, or SM3).
"""

from __future__ import annotations

import binascii
from typing import Any

from backend.core.crypto import INTL, Suite, suite_for_alg
from media.package_verify.facts import ALL, SUBJECTS, Signed
from media.package_verify.heads import inclusion_holds
from media.package_verify.report import PackageReport
from media.package_verify.spelling import Refused, b64d, json_object, load_key
from sync.jws import RECORD_ALGS, DeviceKey, load_device_key, record_hash

ZERO_HASH = "0" * 64


def device_suite(device: Any) -> Suite | None:
    """The suite a manifest's device names by its `alg`; Ed25519's when it names none; None for an unknown alg."""
    alg = device.get("alg") if isinstance(device, dict) else None
    return INTL if alg is None else suite_for_alg(alg)


def _load(device: dict[str, Any], suite: Suite) -> DeviceKey:
    """ValueError, saying why, for a key not spelled canonically, or not a point of its suite's curve (an Ed25519 key
    of small order too: no phone could enrol one, and a forged signature can hold under it)."""
    if suite is INTL:
        raw = load_key(device["public_key"])
        return DeviceKey(INTL, raw, INTL.verifier(raw))
    text = device["public_key"]
    b64d(text)  # Refused, saying why, unless canonical base64url
    return load_device_key(text, suite, canonical=True)


def device_keys(devices: dict[str, Any], report: PackageReport) -> dict[str, DeviceKey]:
    keys = {}
    report.devices = len(devices)
    for device_id, device in devices.items():
        suite = device_suite(device)
        if suite is None:
            report.problems.append(f"device {device_id}: its alg {device.get('alg')!r} is not one the protocol "
                                   f"defines ({', '.join(RECORD_ALGS)}), so none of its records can be checked")
            continue
        try:
            keys[device_id] = _load(device, suite)
        except (ValueError, TypeError, binascii.Error) as exc:
            report.problems.append(f"device {device_id}: its public key is not a valid {suite.signature_name} key "
                                   f"({str(exc).removeprefix('public_key ')})")
    return keys


def verify_jws(text: object, key: DeviceKey) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and payload of a compact JWS whose signature holds with its device's key, in its device's suite.

    Refused when the JWS is not spelled as PROTOCOL §3 allows for its device (three canonical base64url parts, a
    JSON object header whose `alg` is one of the device's suite: EdDSA or Ed25519, or SM2SM3; a 64-byte
    signature): its signature is then not checked. ValueError when the signature does not hold.
    """
    if not isinstance(text, str) or not text.isascii():
        raise Refused("a compact JWS is an ASCII string")
    parts = text.split(".")
    if len(parts) != 3 or not all(parts):
        raise Refused("not a compact JWS (header.payload.signature)")
    raw = []
    for name, part in zip(("header", "payload", "signature"), parts, strict=True):
        try:
            raw.append(b64d(part))
        except Refused as exc:
            raise Refused(f"its {name} is {exc}") from None
    header_raw, payload_raw, signature = raw
    header, payload = json_object(header_raw, "header"), json_object(payload_raw, "payload")
    suite = key.suite
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in suite.jws_algs:
        raise Refused(f"header alg is {alg!r}, not {' or '.join(suite.jws_algs)}")
    if len(signature) != 64:
        raise Refused(f"its signature is {len(signature)} bytes, not the 64 of {suite.signature_name}")
    signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
    if not key.verifier(signing_input, signature):
        raise ValueError("bad signature")
    return header, payload


def check_records(records: list[dict[str, Any]], devices: dict[str, Any], keys: dict[str, DeviceKey],
                  tree: tuple[int, bytes] | None, report: PackageReport) -> Signed:
    """Check each record and each device chain; answer what the records whose signatures hold say, by type and
    subject (the inspection, finding or evidence item each is about: `facts.SUBJECTS`)."""
    report.records = len(records)
    chains: dict[str, dict[int, tuple[str, str | None]]] = {d: {} for d in devices}
    listed: dict[str, dict[int, str]] = {d: {} for d in devices}  # the hashes the manifest lists
    signed: Signed = {}
    for rec in records:
        device_id, seq, text = rec["device"], rec["seq"], rec["jws"]
        where = f"record {device_id}#{seq}"
        ascii_text = text.encode("ascii", "replace").decode("ascii")
        digest = record_hash(ascii_text, device_suite(devices.get(device_id)) or INTL)
        if digest != rec["hash"]:
            report.problems.append(f"{where}: its JWS does not hash to the listed hash (the record was altered)")
        if device_id not in devices:
            report.problems.append(f"{where}: its device is not in the manifest, so it cannot be checked")
            continue
        prev = None
        if device_id in keys:
            try:
                header, payload = verify_jws(text, keys[device_id])
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
                subject = SUBJECTS.get(payload.get("type"))  # type: ignore[arg-type]
                if isinstance(payload.get("body"), dict):
                    said = {"at": payload.get("at"), "device": device_id, "body": payload["body"],
                            "type": payload.get("type"), "op": payload.get("op")}
                    signed.setdefault(ALL, {})[where] = said
                    if subject:
                        signed.setdefault(payload["type"], {})[str(payload["body"].get(subject))] = said
        if seq in chains[device_id]:
            report.problems.append(f"{where}: listed twice")
        chains[device_id][seq] = (digest, prev)
        listed[device_id][seq] = rec["hash"]
    for device_id, device in devices.items():
        check_chain(device_id, device, chains[device_id], report)
        check_device_head(device_id, device, listed[device_id], tree, report)
    return signed


def check_chain(device_id: str, device: dict[str, Any], included: dict[int, tuple[str, str | None]],
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


def check_device_head(device_id: str, device: dict[str, Any], included: dict[int, str],
                      tree: tuple[int, bytes] | None, report: PackageReport) -> None:
    """The chain runs to where the custody log witnessed it end (a `device_head` leaf, proven): a chain cut
    short, here or in the server's ledger, no longer reaches that leaf's record. Included records are taken at
    their listed hash (a JWS that does not hash to it is reported on its own)."""
    where = f"device {device_id}"
    head = device.get("head")
    if not isinstance(head, dict):
        report.problems.append(f"{where}: no custody leaf witnesses where its chain ends, so a cut in it could not "
                               "be seen")
        return
    try:
        leaf = json_object(head["leaf"].encode("utf-8"), "device_head leaf")
    except (Refused, AttributeError) as exc:
        report.problems.append(f"{where}: its device_head leaf cannot be read ({exc})")
        return
    if leaf.get("action") != "device_head" or leaf.get("device") != device_id:
        report.problems.append(f"{where}: its head leaf is not a device_head leaf of this device")
        return
    if tree is None or not inclusion_holds(head, f"{where}: head", leaf, tree, report):
        return
    seq, record_hash = leaf.get("seq"), leaf.get("record_hash")
    if device["last_seq"] != seq:
        report.problems.append(f"{where}: its chain is listed to seq {device['last_seq']}, but the custody log "
                               f"witnessed it end at seq {seq}: records were cut from the end or added after it")
        return
    others = {o["seq"]: o["hash"] for o in device["other_records"]}
    if included.get(seq, others.get(seq)) != record_hash:
        report.problems.append(f"{where}: the record at seq {seq} is not the one the custody log witnessed as its "
                               "head (another record, or none)")
