"""The custody tree head as a checkpoint (c2sp.org/tlog-checkpoint), signed as a note (c2sp.org/signed-note),
and the cosignatures witnesses add to it (c2sp.org/tlog-cosignature, Ed25519 `cosignature/v1`).

A checkpoint is the text

    <origin>\\n<tree size, decimal>\\n<root hash, standard base64>\\n

signed by the custody key as a note: after a blank line, `— <origin> base64(key ID || Ed25519 signature of the
text)`, with key ID = SHA-256(origin || 0x0A || 0x01 || 32-byte public key)[:4]. This signature is made afresh
(Ed25519 is deterministic: the same head gives the same note) and does not replace the JSON head signature.

A witness cosigns a checkpoint by signing `cosignature/v1\\ntime <T>\\n` followed by the checkpoint text, and
adds the line `— <witness> base64(key ID || T as 8 bytes big-endian || signature)` with key ID =
SHA-256(witness || 0x0A || 0x04 || public key)[:4]. Cosignatures are accepted only from the witness keys
configured (FIELDCASE_WITNESS_KEYS), only over exactly the checkpoint of a head this log issued, and stored
so that the checkpoint is served with them.

The SM tree (FIELDCASE_CUSTODY_SUITES=intl,sm) has a checkpoint of its own, a log of its own for any note reader:
origin `<origin>/sm` (never the intl origin, whose root at the same size differs: a witness would see a fork), its
SM3 root, signed with the SM2 key. signed-note assigns no SM2 type, so the line uses type 0xff followed by the
identifier `sm2-sm3/v1` (the spec's way for types it does not assign): key ID = SM3(name || 0x0A || 0xff ||
"sm2-sm3/v1" || 65-byte point)[:4], signature raw r || s (64 bytes), SM2 with SM3 and user ID 1234567812345678
over the note text. No witness cosigns it (no cosignature type in SM2 exists): none is accepted or served.
"""

from __future__ import annotations

import base64
import binascii
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.crypto import INTL, SM, digests
from backend.core.errors import Invalid
from backend.core.models import TreeHead, WitnessCosignature
from media.custody.heads import issued_head, latest_head
from media.custody.keys import Signer, SmSigner
from media.custody.sm_tree import issued_sm_head, latest_sm_head, sm_key

ED25519 = 0x01  # signed-note signature type: Ed25519 over the note text
COSIGNATURE_V1 = 0x04  # tlog-cosignature: timestamped Ed25519 over "cosignature/v1\ntime T\n" || note text
SM2_SM3 = b"\xff" + b"sm2-sm3/v1"  # the SM tree's note signature type: 0xff, then our identifier (signed-note)
SM_ORIGIN_SUFFIX = "/sm"  # the SM tree's origin is the log's origin followed by this
EM_DASH = "\u2014"
MAX_NAME_BYTES = 255  # github.com/transparency-dev/formats refuses longer key names
MAX_NOTE_BYTES = 64 * 1024
MAX_SIGNATURES = 100  # golang.org/x/mod/sumdb/note refuses more; the spec asks that at least 16 be accepted
INT64_MAX = 2**63 - 1  # the largest timestamp a cosignature may carry, and the largest tree size stored
DEFAULT_ORIGIN_PREFIX = "fieldcase.invalid/custody/"


# -- names, key IDs and verifier keys ------------------------------------------------------------------------------

def valid_name(name: str) -> bool:
    """A key name or origin: non-empty, at most 255 bytes, no Unicode space, no `+`, no control character."""
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return (0 < size <= MAX_NAME_BYTES and "+" not in name
            and not any(ch.isspace() or unicodedata.category(ch) in ("Cc", "Zs", "Zl", "Zp") for ch in name))


def key_id(name: str, signature_type: int, public_raw: bytes) -> bytes:
    """signed-note's key ID: SHA-256(name || 0x0A || signature type || public key)[:4]."""
    return digests.sha256(name.encode("utf-8") + b"\n" + bytes([signature_type]) + public_raw)[:4]


def vkey(name: str, signature_type: int, public_raw: bytes) -> str:
    """A verifier key: `<name>+<hex key ID>+<base64(signature type || public key)>`."""
    return (f"{name}+{key_id(name, signature_type, public_raw).hex()}+"
            f"{base64.b64encode(bytes([signature_type]) + public_raw).decode()}")


def origin_for(settings: Any, signer: Signer) -> str:
    """The log's origin (and its note key name): FIELDCASE_CUSTODY_ORIGIN, else `fieldcase.invalid/custody/<key id>`.

    The default is the same on every process of a deployment (they share the key) and differs between
    deployments, but it changes when the key is rotated: set the origin before witnesses follow the log.
    """
    origin = getattr(settings, "custody_origin", "") or DEFAULT_ORIGIN_PREFIX + signer.key_id
    if not valid_name(origin):
        raise RuntimeError(f"FIELDCASE_CUSTODY_ORIGIN {origin!r} is not a valid checkpoint origin: it must be "
                           "1-255 bytes with no spaces, control characters or '+'")
    return origin


def sm_origin_for(settings: Any, signer: Signer) -> str:
    """The SM tree's checkpoint origin (and note key name): the log's origin followed by `/sm`."""
    origin = origin_for(settings, signer) + SM_ORIGIN_SUFFIX
    if not valid_name(origin):
        raise RuntimeError(f"FIELDCASE_CUSTODY_ORIGIN: {origin!r}, the SM tree's origin, is longer than "
                           f"{MAX_NAME_BYTES} bytes")
    return origin


def sm_key_id(name: str, public_point: bytes) -> bytes:
    """The SM tree's note key ID: SM3(name || 0x0A || 0xff || "sm2-sm3/v1" || 65-byte point)[:4]."""
    return SM.digest(name.encode("utf-8") + b"\n" + SM2_SM3 + public_point)[:4]


def sm_verifier_key(settings: Any, signer: Signer) -> str:
    """The SM checkpoint's vkey: `<origin>/sm+<hex key ID>+<base64(0xff || "sm2-sm3/v1" || point)>`."""
    sm = sm_key(signer)
    name = sm_origin_for(settings, signer)
    return f"{name}+{sm_key_id(name, sm.public_raw).hex()}+{base64.b64encode(SM2_SM3 + sm.public_raw).decode()}"


def sm_signature_line(sm: SmSigner, name: str, body: str) -> str:
    """The SM tree's signature of its checkpoint: key ID, then SM2's raw r || s over the note text."""
    return signature_line(name, sm_key_id(name, sm.public_raw) + SM.sign(sm.private_key, sm.public_raw,
                                                                           body.encode()))


def log_verifier_key(settings: Any, signer: Signer) -> str:
    """The vkey witnesses and clients configure to verify this log's checkpoints (signature type 0x01)."""
    return vkey(origin_for(settings, signer), ED25519, signer.public_raw)


@dataclass(frozen=True)
class WitnessKey:
    name: str
    key_id: bytes  # the cosignature/v1 key ID: type 0x04
    public_key: bytes  # raw, 32 bytes
    vkey: str


def parse_witness_key(text_: str) -> WitnessKey:
    """A witness's vkey: type 0x04 (Ed25519 cosignature/v1), or a plain Ed25519 one (0x01), which is taken as the
    same key signing cosignature/v1 (with the 0x04 key ID), as github.com/transparency-dev/formats does.
    The vkey's own key ID must be the one its name, type and key give."""
    name, _, rest = text_.partition("+")
    hex_id, _, key64 = rest.partition("+")
    try:
        raw = base64.b64decode(key64, validate=True)
        stated = bytes.fromhex(hex_id)
    except (binascii.Error, ValueError):
        raise ValueError(f"witness key {text_!r}: not <name>+<hex key ID>+<base64 key>") from None
    if not valid_name(name) or len(stated) != 4 or len(raw) != 33:
        raise ValueError(f"witness key {text_!r}: not <name>+<8 hex digits>+<base64 of 33 bytes>")
    if raw[0] not in (ED25519, COSIGNATURE_V1):
        raise ValueError(f"witness key {text_!r}: signature type 0x{raw[0]:02x}, not Ed25519 (0x01 or 0x04)")
    if key_id(name, raw[0], raw[1:]) != stated:
        raise ValueError(f"witness key {text_!r}: its key ID does not match its name and key")
    return WitnessKey(name=name, key_id=key_id(name, COSIGNATURE_V1, raw[1:]),
                      public_key=raw[1:], vkey=text_)


@lru_cache(maxsize=8)
def _witnesses(vkeys: tuple[str, ...]) -> dict[tuple[str, bytes], WitnessKey]:
    keys: dict[tuple[str, bytes], WitnessKey] = {}
    for text_ in vkeys:
        try:
            key = parse_witness_key(text_)
        except ValueError as exc:
            raise RuntimeError(f"FIELDCASE_WITNESS_KEYS: {exc}") from None
        keys[(key.name, key.key_id)] = key
    return keys


def witness_keys(settings: Any) -> dict[tuple[str, bytes], WitnessKey]:
    """The configured witnesses, by (name, cosignature key ID)."""
    configured = getattr(settings, "witness_keys", ()) or ()
    if isinstance(configured, str):
        configured = configured.split(",")
    return _witnesses(tuple(k.strip() for k in configured if k.strip()))


# -- the checkpoint and its note ----------------------------------------------------------------------------------

def checkpoint_body(origin: str, tree_size: int, root_hash_hex: str) -> str:
    """The note text: origin, tree size in decimal, root hash in standard base64, each ending in a newline."""
    return f"{origin}\n{tree_size}\n{base64.b64encode(bytes.fromhex(root_hash_hex)).decode()}\n"


def signature_line(name: str, signature: bytes) -> str:
    """`— <name> <base64(key ID || signature)>` and a newline; `signature` starts with the 4-byte key ID."""
    return f"{EM_DASH} {name} {base64.b64encode(signature).decode()}\n"


def log_signature_line(signer: Signer, origin: str, body: str) -> str:
    """The log's own signature of a checkpoint: Ed25519 over the note text, key ID of type 0x01."""
    return signature_line(origin, key_id(origin, ED25519, signer.public_raw)
                          + INTL.sign(signer.private_key, signer.public_raw, body.encode()))


def cosignature_message(body: str | bytes, timestamp: int) -> bytes:
    """What an Ed25519 cosignature/v1 signs: `cosignature/v1`, `time <T>`, then the whole checkpoint text."""
    text_ = body.encode("utf-8") if isinstance(body, str) else body
    return f"cosignature/v1\ntime {timestamp}\n".encode() + text_


def _cosignature_line(row: WitnessCosignature) -> str:
    return signature_line(row.witness, bytes.fromhex(row.key_hash) + row.timestamp.to_bytes(8, "big") + row.signature)


def _cosignatures(session: Session, origin: str, tree_size: int) -> list[WitnessCosignature]:
    query = select(WitnessCosignature).where(WitnessCosignature.origin == origin,
                                             WitnessCosignature.tree_size == tree_size)
    return list(session.scalars(query.order_by(WitnessCosignature.id)))


def checkpoint_note(session: Session, signer: Signer, settings: Any, tree_size: int | None = None, *,
                    now: datetime, suite: str = "intl") -> str:
    """The signed checkpoint of the tree as it is now (its head issued and stored on request, as for
    `GET /custody/tree-head`), or of the stored head at `tree_size`, with every witness cosignature received for it.
    `suite="sm"`: the SM tree's, under its own origin, SM2-signed, with no cosignature."""
    if suite == "sm":
        return _sm_checkpoint_note(session, signer, settings, tree_size, now=now)
    origin = origin_for(settings, signer)
    if tree_size is None:
        head = latest_head(session, signer, now=now)
        size, root = head["tree_size"], head["root_hash"]
    else:
        stored = issued_head(session, tree_size)
        size, root = stored.tree_size, stored.root_hash
    body = checkpoint_body(origin, size, root)
    lines = [log_signature_line(signer, origin, body)]
    lines += [_cosignature_line(row) for row in _cosignatures(session, origin, size)]
    return body + "\n" + "".join(lines)


def _sm_checkpoint_note(session: Session, signer: Signer, settings: Any, tree_size: int | None, *,
                        now: datetime) -> str:
    sm = sm_key(signer)
    name = sm_origin_for(settings, signer)
    if tree_size is None:
        head = latest_sm_head(session, signer, now=now)
        size, root = head["tree_size"], head["root_hash"]
    else:
        stored = issued_sm_head(session, tree_size)
        size, root = stored.tree_size, stored.root_hash
    body = checkpoint_body(name, size, root)
    return body + "\n" + sm_signature_line(sm, name, body)


# -- receiving cosignatures ---------------------------------------------------------------------------------------

def _refuse(reason: str, **errors: Any) -> Invalid:
    return Invalid(reason, errors=errors or {"note": [reason]})


def open_note(data: bytes) -> tuple[str, list[tuple[str, bytes]]]:
    """Split a signed note into its text and its (key name, key ID || signature) lines, per signed-note.

    Refuses (422) what is not a well-formed note: not UTF-8, control characters other than newline, no blank
    line before the signatures, a signature line not `— <name> <base64>` of at least 5 bytes, too many of them.
    """
    if len(data) > MAX_NOTE_BYTES:
        raise _refuse(f"the note is longer than {MAX_NOTE_BYTES} bytes")
    try:
        note = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _refuse("the note is not UTF-8") from None
    if any(ord(ch) < 0x20 and ch != "\n" for ch in note):
        raise _refuse("the note contains control characters other than newline")
    split = note.rfind("\n\n")
    if split < 0:
        raise _refuse("not a signed note: no blank line separates the text from the signatures")
    text_, block = note[:split + 1], note[split + 2:]
    if not block or not block.endswith("\n"):
        raise _refuse("not a signed note: no signature lines, or the last one does not end in a newline")
    signatures = []
    for number, line in enumerate(block[:-1].split("\n"), start=1):
        prefix, _, rest = line.partition(" ")
        name, _, b64 = rest.partition(" ")
        try:
            signature = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            signature = b""
        if prefix != EM_DASH or not valid_name(name) or len(signature) < 5:
            raise _refuse(f"signature line {number} is not '— <key name> <base64 signature>'")
        signatures.append((name, signature))
    if len(signatures) > MAX_SIGNATURES:
        raise _refuse(f"the note has more than {MAX_SIGNATURES} signatures")
    return text_, signatures


def _issued_head(session: Session, origin: str, text_: str) -> TreeHead:
    """The stored head whose checkpoint is exactly `text_`, or a 422 saying why there is none."""
    lines = text_.split("\n")
    if lines[0] != origin:
        raise _refuse(f"not a checkpoint of this log: its origin is {lines[0][:300]!r}, this log's is {origin!r}")
    if len(lines) != 4 or not lines[1].isascii() or not lines[1].isdigit() or len(lines[1]) > 19:
        raise _refuse("not a checkpoint this log issues: the text must be exactly origin, tree size, root hash")
    size = int(lines[1])
    if lines[1] != str(size):
        raise _refuse("not a checkpoint this log issues: the tree size has leading zeroes")
    head = session.get(TreeHead, size) if size <= INT64_MAX else None
    if head is None:
        raise _refuse(f"this log issued no checkpoint at tree size {lines[1]}", tree_size=["never issued"])
    if text_ != checkpoint_body(origin, head.tree_size, head.root_hash):
        raise _refuse(f"the checkpoint at tree size {size} is not the one this log issued (its root hash differs)",
                      root_hash=["not the root this log issued at this size"])
    return head


def _own_keys(signer: Signer, origin: str) -> dict[bytes, bytes]:
    """This log's raw note keys by key ID: the current custody key and the retired ones (heads outlive a rotation)."""
    return {key_id(origin, ED25519, raw): raw for raw in signer.verification_keys().values()}


def signature_holds(public_raw: bytes, signature: bytes, message: bytes) -> bool:
    """A note's or a cosignature's Ed25519 signature, as a yes or no (the caller names what failed)."""
    return INTL.verify(public_raw, message, signature)


def _check_line(name: str, signature: bytes, text_: str, origin: str, own: dict[bytes, bytes],
                witnesses: dict[tuple[str, bytes], WitnessKey]) -> tuple[str, WitnessKey | None, int, bytes]:
    """(problem or "", the witness, its timestamp, its Ed25519 signature) for one signature line."""
    kid, rest = signature[:4], signature[4:]
    if name == origin and kid in own:  # the log's own signature, as served: checked, not stored
        ok = len(rest) == 64 and signature_holds(own[kid], rest, text_.encode())
        return ("" if ok else f"the signature of {name} (this log) does not verify"), None, 0, b""
    witness = witnesses.get((name, kid))
    if witness is None:
        if any(w.name == name for w in witnesses.values()):
            return f"{name}+{kid.hex()} is not the configured key of witness {name}", None, 0, b""
        return f"unknown witness {name}: not one of the configured witness keys", None, 0, b""
    if len(rest) != 8 + 64:
        return f"the signature of {name} is not a cosignature/v1 (8-byte timestamp, 64-byte signature)", None, 0, b""
    timestamp, ed25519 = int.from_bytes(rest[:8], "big"), rest[8:]
    if timestamp > INT64_MAX:
        return f"the cosignature of {name} has a timestamp above 2^63 - 1", None, 0, b""
    if not signature_holds(witness.public_key, ed25519, cosignature_message(text_, timestamp)):
        return f"the cosignature of {name} does not verify over this checkpoint", None, 0, b""
    return "", witness, timestamp, ed25519


def accept_cosignatures(session: Session, signer: Signer, settings: Any, note: bytes, *,
                        now: datetime) -> dict[str, Any]:
    """Store the witness cosignatures on a checkpoint note this log issued (`POST /custody/checkpoint/cosignatures`).

    The note must be the checkpoint of a stored head, exactly; every signature line must be this log's own
    (verified) or a configured witness's Ed25519 cosignature/v1 that verifies, and at least one must be a
    witness's. Anything else refuses the whole note (422) and stores nothing. A witness key that already
    cosigned this checkpoint keeps its stored cosignature (`already_stored`): posting again changes nothing.
    """
    origin = origin_for(settings, signer)
    witnesses = witness_keys(settings)
    text_, lines = open_note(note)
    head = _issued_head(session, origin, text_)
    own = _own_keys(signer, origin)
    problems: list[str] = []
    accepted: dict[bytes, tuple[WitnessKey, int, bytes]] = {}
    for name, signature in lines:
        problem, witness, timestamp, ed25519 = _check_line(name, signature, text_, origin, own, witnesses)
        if problem:
            problems.append(problem)
        elif witness is not None:
            accepted.setdefault(witness.key_id, (witness, timestamp, ed25519))
    if problems:
        raise _refuse(problems[0], signatures=problems)
    if not accepted:
        raise _refuse("the note carries no witness cosignature", signatures=["no witness cosignature"])
    stored = {row.key_hash: row for row in _cosignatures(session, origin, head.tree_size)}
    answers = []
    for witness, timestamp, ed25519 in accepted.values():
        row = stored.get(witness.key_id.hex())
        status = "already_stored"
        if row is None:
            row = WitnessCosignature(origin=origin, tree_size=head.tree_size, witness=witness.name,
                                     key_hash=witness.key_id.hex(), timestamp=timestamp, signature=ed25519,
                                     received_at=now)
            session.add(row)
            status = "stored"
        answers.append({"witness": row.witness, "key_hash": row.key_hash, "timestamp": row.timestamp,
                        "status": status})
    session.flush()
    return {"origin": origin, "tree_size": head.tree_size, "cosignatures": answers}
