"""The restored custody log held against a tree head kept outside its database (`fieldcase restore-check`).

`custody verify` cannot see a restore that lost the newest events: the log it finds is whole, only shorter, and
the heads that would have said there was more were lost with it (with fewer than 256 events since the last
periodic head there may be none). What a restore cannot take back is a head kept elsewhere: the JSON of
`GET /custody/tree-head` or the checkpoint note of `GET /custody/checkpoint`, fetched to another site by a cron job
before the failure; lacking one, the newest checkpoint a witness cosigned (weaker: kept in the same database, it
catches a log rewritten since the witness saw it, not one cut short with it).

The reference must verify with this log's keys (the JSON head's signature, or the note signature under this
log's origin; a cosignature with a configured witness key), so that a head of another deployment, or an edited one,
is refused rather than compared. Then, S its size and R the restored log's:

- S > R: the restore lost S - R events after tree size R. No consistency proof from the restored log to the
  reference can be made: the leaves it needs are gone.
- S <= R: the restored log's first S events must give the reference's root, the RFC 6962 tree hash recomputed from
  the events in one streaming pass (not from the stored nodes, which a restore brings back with the events). Then
  every head of the restored log, which `custody verify` holds against the same events, extends the reference.
  Another root: the restored log diverges from it (another deployment's database, or a log rewritten since).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.casework.system_audit.report import Problem
from backend.casework.system_audit.tree import log_size
from backend.core.errors import DomainError
from backend.core.models import CustodyEvent, TreeHead, WitnessCosignature
from media.custody import checkpoint, merkle
from media.custody.keys import verify_head

BATCH = 5000


class Refused(ValueError):
    """The saved head cannot be compared: not a head or checkpoint, or not signed by this log."""


@dataclass(frozen=True)
class Reference:
    """A tree head from outside the restored log: what it was, its size and root (hex)."""

    source: str  # "saved head", "saved checkpoint" or "witnessed checkpoint"
    tree_size: int
    root_hash: str
    signed_by: str  # the log key's id, or the witness's name

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "tree_size": self.tree_size, "root_hash": self.root_hash,
                "signed_by": self.signed_by}


def read_saved(data: bytes, keys: Mapping[str, bytes], origins: Collection[str]) -> Reference:
    """The saved head, either form, once its signature verifies with one of this log's keys (current or retired)."""
    if data.lstrip().startswith(b"{"):
        return _json_head(data, keys)
    return _checkpoint(data, keys, origins)


def _json_head(data: bytes, keys: Mapping[str, bytes]) -> Reference:
    try:
        head = json.loads(data)
        size, root, key_id = head["tree_size"], head["root_hash"], head["key_id"]
        bytes.fromhex(root)
    except (ValueError, KeyError, TypeError):
        raise Refused("the saved head is not the JSON of GET /custody/tree-head (tree_size, root_hash, timestamp, "
                      "signature, key_id)") from None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0 or len(root) != 64 \
            or not isinstance(key_id, str):
        raise Refused("the saved head's tree_size, root_hash or key_id is not one a head can have")
    key = keys.get(key_id)
    if key is None:
        raise Refused(f"the saved head is signed with key {key_id}, which is not this log's (nor on its keyring): "
                      "a head of another deployment proves nothing about this one")
    if not verify_head(key, head):
        raise Refused("the saved head's signature does not verify: it was edited after it was saved")
    return Reference("saved head", size, root.lower(), key_id)


def _checkpoint(data: bytes, keys: Mapping[str, bytes], origins: Collection[str]) -> Reference:
    try:
        text, signatures = checkpoint.open_note(data)
    except DomainError as exc:
        raise Refused(f"the saved head is neither the JSON of GET /custody/tree-head nor a checkpoint note of "
                      f"GET /custody/checkpoint: {exc.message}") from None
    lines = text.split("\n")
    if len(lines) != 4 or not (lines[1].isascii() and lines[1].isdigit()):
        raise Refused("the saved checkpoint's text is not origin, tree size and root hash")
    origin, size, root64 = lines[0], int(lines[1]), lines[2]
    if origin not in origins:
        raise Refused(f"the saved checkpoint is of the log {origin!r}, not this one")
    for name, signature in signatures:
        if name != origin or len(signature) != 4 + 64:
            continue
        for key_id, raw in keys.items():
            if (signature[:4] == checkpoint.key_id(origin, checkpoint.ED25519, raw)
                    and checkpoint.signature_holds(raw, signature[4:], text.encode())):
                return Reference("saved checkpoint", size, _root_hex(root64), key_id)
    raise Refused("the saved checkpoint carries no signature of this log's key that verifies: it was edited after "
                  "it was saved, or another log signed it")


def _root_hex(root64: str) -> str:
    try:
        root = base64.b64decode(root64, validate=True)
    except (binascii.Error, ValueError):
        root = b""
    if len(root) != 32:
        raise Refused("the saved checkpoint's root hash is not 32 bytes of standard base64")
    return root.hex()


def witnessed(session: Session, witnesses: Mapping[tuple[str, bytes], checkpoint.WitnessKey]
              ) -> tuple[Reference | None, list[Problem]]:
    """The newest checkpoint a configured witness cosigned whose cosignature verifies over the restored head of
    its size; every cosignature newer than it that does not verify is a problem (the head or it was altered)."""
    problems: list[Problem] = []
    rows = session.execute(select(WitnessCosignature, TreeHead.root_hash)
                           .join(TreeHead, TreeHead.tree_size == WitnessCosignature.tree_size)
                           .order_by(WitnessCosignature.tree_size.desc(), WitnessCosignature.id))
    for row, root in rows:
        witness = witnesses.get((row.witness, bytes.fromhex(row.key_hash)))
        if witness is None:
            continue  # a witness no longer configured: its key is not known to check it with
        body = checkpoint.checkpoint_body(row.origin, row.tree_size, root)
        message = checkpoint.cosignature_message(body, row.timestamp)
        if checkpoint.signature_holds(witness.public_key, bytes(row.signature), message):
            return Reference("witnessed checkpoint", row.tree_size, root, witness.name), problems
        problems.append(Problem("saved_head", "tree_head", str(row.tree_size),
                                f"the cosignature of witness {row.witness} does not verify over the restored head of "
                                "this size: the head or the cosignature was altered"))
    return None, problems


def compare(session: Session, reference: Reference) -> tuple[dict[str, Any], list[Problem]]:
    """What the restored log is against the reference (`compared_with` of the report), and the problems."""
    size = log_size(session)
    newest = session.scalar(select(TreeHead.tree_size).order_by(TreeHead.tree_size.desc()).limit(1))
    found = {**reference.as_dict(), "restored_tree_size": size, "restored_newest_head": newest, "lost_events": 0}
    subject = str(reference.tree_size)
    if reference.tree_size > size:
        lost = found["lost_events"] = reference.tree_size - size
        return found, [Problem("saved_head", "tree_head", subject,
                               f"the restore lost {lost} events after tree size {size}: the {reference.source} signs "
                               f"a log of {reference.tree_size} events, so no consistency proof from the restored "
                               "log to it can be made (the events it needs are gone)")]
    root = first_root(session, reference.tree_size)
    if root is None:
        return found, [Problem("saved_head", "tree_head", subject,
                               f"the restored log lacks events below tree size {reference.tree_size}: its root there "
                               "cannot be computed")]
    if root.hex() != reference.root_hash:
        return found, [Problem("saved_head", "tree_head", subject,
                               f"the restored log diverges from the {reference.source}: its first "
                               f"{reference.tree_size} events do not give the root the {reference.source} signs "
                               "(another deployment's database, or a log rewritten since)")]
    return found, []


def first_root(session: Session, size: int) -> bytes | None:
    """The RFC 6962 root of the log's first `size` events, streamed (O(log n) memory); None when one is missing."""
    missing = False

    def leaf_hashes() -> Iterator[bytes]:
        nonlocal missing
        expected = 0
        while expected < size:
            rows = session.execute(select(CustodyEvent.leaf_index, CustodyEvent.leaf)
                                   .where(CustodyEvent.leaf_index >= expected, CustodyEvent.leaf_index < size)
                                   .order_by(CustodyEvent.leaf_index).limit(BATCH)).all()
            for index, leaf in rows:
                if index != expected:
                    missing = True
                    return
                yield merkle.leaf_hash(leaf.encode())
                expected += 1
            if not rows:
                missing = True
                return

    root = merkle.root(leaf_hashes())  # it only iterates its argument: a generator keeps the memory flat
    return None if missing else root
