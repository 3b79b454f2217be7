"""The custody log (PROTOCOL §8): every event that touches evidence is a leaf of one Merkle tree.

Events are queued on the session and appended in a `before_commit` hook, the
way the change feed is: leaf indexes are handed out under a lock held only
for the append itself (a transaction-level advisory lock on PostgreSQL;
SQLite serialises writers), so two requests never share an index and a
failed transaction leaves no hole. The tree is stored as the hashes of its
complete subtrees (media.custody.merkle), so a root or a proof is O(log n) reads.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import func, select, text, tuple_
from sqlalchemy.orm import Session

from backend.core import commit_queue
from backend.core.bulk import insert_rows
from backend.core.config import secret_file
from backend.core.errors import Invalid, NotFound
from backend.core.json_text import is_unicode_text
from backend.core.models import CustodyEvent, MerkleNode, TreeHead, utcnow
from backend.core.times import utc_millis
from backend.core.uow import Services
from media.custody import merkle

PENDING = "fieldcase.pending_custody"
CUSTODY_LOCK_KEY = 0x6663_6375_7374  # "fccust"
HEAD_EVERY = 256
ISSUE_HEAD_JOB = "issue_tree_head"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_SAFE_INTEGER = 2**53 - 1


def _plain(value: Any) -> bool:
    """Whether JCS of `value` is exactly the standard library's sorted, compact, unescaped-Unicode JSON.

    It is for strings (minimal escapes, lower-case hex: the same rules), ASCII keys (so code-point
    and UTF-16 order agree), integers a double holds exactly, booleans and null. Anything else
    (floats above all) goes through the full RFC 8785 implementation.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not is_unicode_text(item):
                return False
        elif item is None or isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if abs(item) > _SAFE_INTEGER:
                return False
        elif isinstance(item, dict):
            if not all(isinstance(k, str) and k.isascii() for k in item):
                return False
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        else:
            return False
    return True


def canonical(obj: Any) -> bytes:
    """RFC 8785 (JCS) canonical JSON: the exact bytes that are hashed and signed.

    Custody leaves are written at push rates; for the plain values they hold the standard
    library's encoder gives the same bytes much faster (`tests/media/test_custody.py` checks the two
    agree), and everything else takes the full implementation.
    """
    if _plain(obj):
        return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return rfc8785.dumps(obj)


def key_id_of(public_raw: bytes) -> str:
    """A key's id: the first 16 hex digits of SHA-256 of its raw 32 bytes (PROTOCOL §8)."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def _public_from_b64(text_: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(text_ + "=" * (-len(text_) % 4)))


@dataclass(frozen=True)
class Signer:
    """The current tree-head key, and the public halves of the keys it replaced (`retired`: key id, base64url).

    Heads are stored with the id of the key that signed them; after a rotation
    the old heads stay verifiable with the retired public keys.
    """

    private_key: Ed25519PrivateKey
    retired: tuple[tuple[str, str], ...] = ()

    @property
    def public_raw(self) -> bytes:
        return self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def key_id(self) -> str:
        return key_id_of(self.public_raw)

    @property
    def public_key(self) -> str:
        return b64url(self.public_raw)

    def sign(self, data: bytes) -> str:
        return b64url(self.private_key.sign(data))

    def public_keys(self) -> dict[str, str]:
        """Every key id this deployment has signed heads with, to its base64url public key (current last)."""
        return {**dict(self.retired), self.key_id: self.public_key}

    def public_key_for(self, key_id: str) -> str | None:
        return self.public_keys().get(key_id)

    def verification_keys(self) -> dict[str, Ed25519PublicKey]:
        return {kid: _public_from_b64(pub) for kid, pub in self.public_keys().items()}


def read_keyring(path: Path | None) -> list[dict[str, str]]:
    """The retired public keys kept at `path` (JSON `{"keys": [{"key_id", "public_key", "retired_at"}]}`)."""
    if path is None or not Path(path).exists():
        return []
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    keys = data.get("keys", []) if isinstance(data, dict) else []
    for entry in keys:
        raw = base64.urlsafe_b64decode(entry["public_key"] + "=" * (-len(entry["public_key"]) % 4))
        if len(raw) != 32 or key_id_of(raw) != entry["key_id"]:
            raise RuntimeError(f"custody keyring {path}: entry {entry.get('key_id')!r} does not match its key")
    return keys


def load_signer(instance_dir: Path | None = None, *, key_file: Path | None = None,
                keyring_file: Path | None = None) -> Signer:
    """The tree-head key (generated, 0600, on first run) with the retired keys of the keyring beside it.

    By default both live in the instance folder; a deployment of several
    hosts points FIELDCASE_CUSTODY_KEY_FILE and FIELDCASE_CUSTODY_KEYRING at
    one shared copy (see docs/deployment.md), so every API process and worker
    signs with the same key.
    """
    if key_file is None:
        if instance_dir is None:
            raise ValueError("load_signer needs an instance folder or a key file")
        key_file = Path(instance_dir) / "custody-signing.key"
    if keyring_file is None and instance_dir is not None:
        keyring_file = Path(instance_dir) / "custody-keyring.json"
    seed = secret_file(Path(key_file), 32)[:32]
    retired = tuple((k["key_id"], k["public_key"]) for k in read_keyring(keyring_file))
    return Signer(Ed25519PrivateKey.from_private_bytes(seed), retired=retired)


def signer_for(settings: Any) -> Signer:
    """The signer a process of this deployment uses (backend.core.config.Settings)."""
    return load_signer(key_file=settings.custody_key_path, keyring_file=settings.custody_keyring_path)


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def rotate_key(key_file: Path, keyring_file: Path) -> tuple[str, str]:
    """Replace the signing key; the old public key goes to the keyring first. Returns (old id, new id).

    The keyring is written before the key file, so at no moment can a head
    exist whose key is neither current nor on the keyring. Processes keep
    signing with the key they loaded until restarted; both keys verify.
    The old private key is not kept: signed heads need only its public half.
    """
    key_file, keyring_file = Path(key_file), Path(keyring_file)
    old = load_signer(key_file=key_file, keyring_file=keyring_file)
    keys = read_keyring(keyring_file)
    if old.key_id not in {k["key_id"] for k in keys}:
        keys.append({"key_id": old.key_id, "public_key": old.public_key, "retired_at": utc_millis(utcnow())})
    keyring_file.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(keyring_file, json.dumps({"keys": keys}, indent=2).encode() + b"\n", 0o644)
    _write_atomically(key_file, secrets.token_bytes(32), 0o600)
    new = load_signer(key_file=key_file, keyring_file=keyring_file)
    return old.key_id, new.key_id


def head_payload(tree_size: int, root_hash: str, timestamp: str) -> bytes:
    return canonical({"tree_size": tree_size, "root_hash": root_hash, "timestamp": timestamp})


def verify_head(public_key: Ed25519PublicKey, head: dict[str, Any]) -> bool:
    try:
        signature = base64.urlsafe_b64decode(head["signature"] + "=" * (-len(head["signature"]) % 4))
        public_key.verify(signature, head_payload(head["tree_size"], head["root_hash"], head["timestamp"]))
        return True
    except Exception:  # noqa: BLE001 - any failure to verify is a failed verification
        return False


def record(session: Session, action: str, evidence_id: str | None, actor: str, *,
           at: datetime | None = None, **details: Any) -> None:
    """Queue a custody event; it becomes a leaf when the transaction commits, or never."""
    leaf = {"action": action, "evidence_id": evidence_id, "actor": actor, "at": utc_millis(at or utcnow()),
            **{k: v for k, v in details.items() if v is not None}}
    commit_queue.enqueue(session, PENDING, (leaf, canonical(leaf).decode()))  # encoded here, not under the lock


def _size(session: Session) -> int:
    last = session.scalar(select(func.max(CustodyEvent.leaf_index)))
    return 0 if last is None else last + 1


def _nodes(session: Session, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    keys = sorted(set(keys))
    found: dict[tuple[int, int], bytes] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        rows = session.execute(select(MerkleNode.level, MerkleNode.index, MerkleNode.hash)
                               .where(tuple_(MerkleNode.level, MerkleNode.index).in_(chunk)))
        found.update({(r.level, r.index): bytes(r.hash) for r in rows})
    return found


def _getter(nodes: dict[tuple[int, int], bytes]):
    def get(level: int, index: int) -> bytes:
        try:
            return nodes[(level, index)]
        except KeyError:
            raise LookupError(f"merkle node ({level}, {index}) is missing from the store") from None
    return get


@commit_queue.on_commit(order=10)  # before the feed (20): one lock order in every process
def _append(session: Session, services: Services) -> None:
    leaves = commit_queue.take(session, PENDING)
    if not leaves:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CUSTODY_LOCK_KEY})
    start = _size(session)
    needed = set().union(*(merkle.nodes_needed_for_append(i) for i in range(start, start + len(leaves))))
    nodes = _nodes(session, needed)
    get = _getter(nodes)
    event_rows, node_rows = [], []
    for offset, (leaf, text_) in enumerate(leaves):
        index = start + offset
        for level, idx, digest in merkle.new_nodes(index, merkle.leaf_hash(text_.encode()), get):
            nodes[(level, idx)] = digest
            node_rows.append({"level": level, "index": idx, "hash": digest})
        event_rows.append({"leaf_index": index, "evidence_id": leaf.get("evidence_id"), "action": leaf["action"],
                           "actor": leaf["actor"], "at": datetime.fromisoformat(leaf["at"].replace("Z", "+00:00")),
                           "leaf": text_})
    insert_rows(session, CustodyEvent, event_rows)
    insert_rows(session, MerkleNode, node_rows)
    end = start + len(leaves)
    if start // HEAD_EVERY != end // HEAD_EVERY:
        runner, signer = services.jobs, services.signer
        if runner is not None and runner.deferred:
            # A worker signs it: the append (and the lock it holds) stays short. The nodes a head of this
            # size needs are complete subtrees, stored for good, so the head can be made after the commit.
            runner.submit(session, ISSUE_HEAD_JOB, end)
        elif signer is not None:
            _issue(session, signer, end, nodes)


def _issue(session: Session, signer: Signer, size: int, nodes: dict[tuple[int, int], bytes] | None = None) -> TreeHead:
    existing = session.get(TreeHead, size)
    if existing is not None:
        return existing
    if size == 0:
        root = merkle.EMPTY_ROOT
    else:
        have = nodes or {}
        missing = merkle.nodes_needed_for_root(size) - set(have)
        have = {**have, **_nodes(session, missing)}
        root = merkle.tree_root(size, _getter(have))
    timestamp = utc_millis(utcnow())
    head = TreeHead(tree_size=size, root_hash=root.hex(), timestamp=timestamp, key_id=signer.key_id,
                    signature=signer.sign(head_payload(size, root.hex(), timestamp)))
    session.add(head)
    session.flush()
    return head


def head_dict(head: TreeHead) -> dict[str, Any]:
    return {"tree_size": head.tree_size, "root_hash": head.root_hash, "timestamp": head.timestamp,
            "signature": head.signature, "key_id": head.key_id}


def issue_head(session: Session, signer: Signer, size: int) -> dict[str, Any]:
    """Issue (and store) the head at `size` unless one exists; what the periodic tree-head job runs."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CUSTODY_LOCK_KEY})
    if not 0 <= size <= _size(session):
        raise Invalid(f"no tree of size {size} yet", errors={"tree_size": ["out of range"]})
    return head_dict(_issue(session, signer, size))


def latest_head(session: Session, signer: Signer) -> dict[str, Any]:
    """Issue (and store) a head for the tree as it is now, unless one exists for this size."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CUSTODY_LOCK_KEY})
    return head_dict(_issue(session, signer, _size(session)))


def stored_head(session: Session, tree_size: int) -> dict[str, Any]:
    head = session.get(TreeHead, tree_size)
    if head is None:
        raise NotFound(f"no tree head was issued at size {tree_size}")
    return head_dict(head)


def _check_size(session: Session, size: int, what: str) -> None:
    current = _size(session)
    if size < 1 or size > current:
        raise Invalid(f"{what} must be between 1 and the tree's size, {current}", errors={what: ["out of range"]})


def inclusion(session: Session, leaf_index: int, tree_size: int) -> dict[str, Any]:
    _check_size(session, tree_size, "tree_size")
    if not 0 <= leaf_index < tree_size:
        raise Invalid("leaf_index must be below tree_size", errors={"leaf_index": ["out of range"]})
    nodes = _nodes(session, merkle.nodes_needed_for_inclusion(leaf_index, tree_size))
    proof = merkle.inclusion_proof(leaf_index, tree_size, _getter(nodes))
    return {"leaf_index": leaf_index, "tree_size": tree_size, "proof": [p.hex() for p in proof]}


def consistency(session: Session, first: int, second: int) -> dict[str, Any]:
    _check_size(session, second, "second")
    if not 1 <= first <= second:
        raise Invalid("first must be between 1 and second", errors={"first": ["out of range"]})
    nodes = _nodes(session, merkle.nodes_needed_for_consistency(first, second))
    proof = merkle.consistency_proof(first, second, _getter(nodes))
    return {"first": first, "second": second, "proof": [p.hex() for p in proof]}


def event_dict(row: CustodyEvent) -> dict[str, Any]:
    return {"leaf_index": row.leaf_index, "leaf": row.leaf, **json.loads(row.leaf)}


def events_for(session: Session, evidence_id: str) -> list[dict[str, Any]]:
    rows = session.scalars(select(CustodyEvent).where(CustodyEvent.evidence_id == evidence_id)
                           .order_by(CustodyEvent.leaf_index))
    return [event_dict(r) for r in rows]


@dataclass
class VerifyReport:
    leaves: int = 0
    heads: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _frontier_root(frontier: list[tuple[int, bytes]]) -> bytes:
    """Root of the tree whose complete subtrees are `frontier` (largest first), by the RFC's split rule."""
    acc = frontier[-1][1]
    for _, digest in reversed(frontier[:-1]):
        acc = merkle.node_hash(digest, acc)
    return acc


def verify_log(session: Session, public_key: Ed25519PublicKey | Mapping[str, Ed25519PublicKey], *,
               batch: int = 5000) -> VerifyReport:
    """Recompute the tree from the stored events alone and hold it against the nodes and the signed heads.

    Streams the events once, keeping only the right frontier of the tree in
    memory; each event's canonical form, columns and leaf hash are checked,
    every stored head's root and signature, and consistency between heads.
    `public_key` is one key for every head, or a keyring (key id to key):
    then each head is checked with the key its `key_id` names.
    """
    report = VerifyReport()
    heads = list(session.scalars(select(TreeHead).order_by(TreeHead.tree_size)))
    head_at = {h.tree_size: h for h in heads}
    frontier: list[tuple[int, bytes]] = []  # (subtree size, hash), sizes strictly decreasing
    expected = 0
    roots: dict[int, bytes] = {}
    for row, stored in _stream(session, batch):
        if row.leaf_index != expected:
            report.problems.append(f"leaf {expected}: missing (the next stored event is leaf {row.leaf_index})")
            expected = row.leaf_index
        problem = _check_event(row)
        if problem:
            report.problems.append(f"leaf {row.leaf_index}: {problem}")
        digest = merkle.leaf_hash(row.leaf.encode())
        if stored != digest:
            report.problems.append(f"leaf {row.leaf_index}: its hash does not match the tree (altered or moved)")
        frontier.append((1, digest))
        while len(frontier) > 1 and frontier[-1][0] == frontier[-2][0]:
            (size, right), (_, left) = frontier.pop(), frontier.pop()
            frontier.append((size * 2, merkle.node_hash(left, right)))
        expected += 1
        report.leaves += 1
        if expected in head_at:
            roots[expected] = _frontier_root(frontier)
    previous = None
    for head in heads:
        report.heads += 1
        key = public_key.get(head.key_id) if isinstance(public_key, Mapping) else public_key
        if key is None:
            report.problems.append(f"tree head {head.tree_size}: signed with key {head.key_id}, not in the keyring")
        elif not verify_head(key, head_dict(head)):
            report.problems.append(f"tree head {head.tree_size}: bad signature")
        if head.tree_size == 0:
            continue
        root = roots.get(head.tree_size)
        if root is None:
            report.problems.append(f"tree head {head.tree_size}: the log has only {expected} leaves")
        elif root.hex() != head.root_hash:
            report.problems.append(f"tree head {head.tree_size}: the events do not give its root")
        if previous is not None and root is not None:
            proof = consistency(session, previous.tree_size, head.tree_size)["proof"]
            if not _consistent(previous, head, [bytes.fromhex(p) for p in proof]):
                report.problems.append(f"tree heads {previous.tree_size} and {head.tree_size}: not consistent")
        previous = head
    return report


def _consistent(first: TreeHead, second: TreeHead, proof: list[bytes]) -> bool:
    from media.custody.proofs import verify_consistency

    return verify_consistency(first.tree_size, second.tree_size, bytes.fromhex(first.root_hash),
                              bytes.fromhex(second.root_hash), proof)


def _stream(session: Session, batch: int) -> Iterator[tuple[CustodyEvent, bytes | None]]:
    """Events in leaf order with their stored leaf-level hashes, a batch at a time (constant memory)."""
    after = -1
    while True:
        rows = list(session.scalars(select(CustodyEvent).where(CustodyEvent.leaf_index > after)
                                    .order_by(CustodyEvent.leaf_index).limit(batch)))
        if not rows:
            return
        hashes = dict(session.execute(select(MerkleNode.index, MerkleNode.hash).where(
            MerkleNode.level == 0, MerkleNode.index.between(rows[0].leaf_index, rows[-1].leaf_index))).all())
        for row in rows:
            stored = hashes.get(row.leaf_index)
            yield row, bytes(stored) if stored is not None else None
        after = rows[-1].leaf_index
        session.expunge_all()


def _check_event(row: CustodyEvent) -> str | None:
    try:
        leaf = json.loads(row.leaf)
    except ValueError:
        return "the leaf is not JSON"
    if canonical(leaf).decode() != row.leaf:
        return "the leaf is not in canonical form"
    for column in ("action", "evidence_id", "actor"):
        if leaf.get(column) != getattr(row, column):
            return f"column {column} disagrees with the leaf"
    return None
