"""The custody log's stored trees (PROTOCOL §8): their nodes, sizes, roots and audit proofs.

Every leaf of the log is a leaf of the intl tree (RFC 6962, SHA-256: `merkle_nodes`), and, with
FIELDCASE_CUSTODY_SUITES=intl,sm, of the SM tree too (the same shape with SM3: `sm_merkle_nodes`). A tree is stored
as the hashes of its complete subtrees (media.custody.merkle), so a root or a proof is O(log n) reads. This module
is what both trees share: reading and writing those nodes, how many leaves the log and the SM tree hold, a root from
the stored nodes, and the proofs served from them. What appends to the trees is elsewhere, under CUSTODY_LOCK_KEY:
the commit hook (media.custody.log) and the SM tree's catch-up and build (media.custody.sm_tree).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from backend.core.bulk import insert_rows
from backend.core.errors import Invalid
from backend.core.models import CustodyEvent, MerkleNode, SmMerkleNode
from media.custody import merkle

CUSTODY_LOCK_KEY = 0x6663_6375_7374  # "fccust"
SUITES = ("intl", "sm")  # the trees a log may be kept in (FIELDCASE_CUSTODY_SUITES)


@dataclass(frozen=True)
class _Tree:
    hashing: merkle.TreeHashing
    nodes: type[MerkleNode] | type[SmMerkleNode]


TREES = {"intl": _Tree(merkle.SHA256_TREE, MerkleNode), "sm": _Tree(merkle.SM3_TREE, SmMerkleNode)}


def _tree(suite: str) -> _Tree:
    try:
        return TREES[suite]
    except KeyError:
        raise Invalid(f"no custody tree in suite {suite!r}: {' or '.join(SUITES)}",
                      errors={"suite": ["unknown suite"]}) from None


def log_size(session: Session) -> int:
    last = session.scalar(select(func.max(CustodyEvent.leaf_index)))
    return 0 if last is None else last + 1


def sm_size(session: Session) -> int:
    """How many leaves the SM tree holds: one past its highest level-0 node (an index-only read of its key)."""
    last = session.scalar(select(func.max(SmMerkleNode.index)).where(SmMerkleNode.level == 0))
    return 0 if last is None else last + 1


def read_nodes(session: Session, keys: Iterable[tuple[int, int]],
               model: type[MerkleNode] | type[SmMerkleNode] = MerkleNode) -> dict[tuple[int, int], bytes]:
    keys = sorted(set(keys))
    found: dict[tuple[int, int], bytes] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        rows = session.execute(select(model.level, model.index, model.hash)
                               .where(tuple_(model.level, model.index).in_(chunk)))
        found.update({(r.level, r.index): bytes(r.hash) for r in rows})
    return found


def getter(nodes: dict[tuple[int, int], bytes]):
    def get(level: int, index: int) -> bytes:
        try:
            return nodes[(level, index)]
        except KeyError:
            raise LookupError(f"merkle node ({level}, {index}) is missing from the store") from None
    return get


def needed_for_appends(start: int, count: int) -> set[tuple[int, int]]:
    return set().union(*(merkle.nodes_needed_for_append(i) for i in range(start, start + count)))


def extend(session: Session, tree: _Tree, start: int, texts: list[str],
           nodes: dict[tuple[int, int], bytes] | None = None) -> dict[tuple[int, int], bytes]:
    """Append leaves `start`, `start` + 1, ... (their exact texts) to `tree`'s stored nodes; the nodes read and
    written, for a head's root. `nodes`: the stored ones the append reads, when the caller has them already."""
    if nodes is None:
        nodes = read_nodes(session, needed_for_appends(start, len(texts)), tree.nodes)
    get = getter(nodes)
    rows = []
    for offset, text_ in enumerate(texts):
        for level, idx, digest in merkle.new_nodes(start + offset, tree.hashing.leaf_hash(text_.encode()), get,
                                                   tree=tree.hashing):
            nodes[(level, idx)] = digest
            rows.append({"level": level, "index": idx, "hash": digest})
    insert_rows(session, tree.nodes, rows)
    return nodes


def leaf_texts(session: Session, start: int, end: int) -> list[str]:
    return list(session.scalars(select(CustodyEvent.leaf).where(CustodyEvent.leaf_index >= start,
                                                                CustodyEvent.leaf_index < end)
                                .order_by(CustodyEvent.leaf_index)))


def stored_root(session: Session, tree: _Tree, size: int, nodes: dict[tuple[int, int], bytes] | None) -> bytes:
    have = nodes or {}
    missing = merkle.nodes_needed_for_root(size) - set(have)
    have = {**have, **read_nodes(session, missing, tree.nodes)}
    return merkle.tree_root(size, getter(have), tree=tree.hashing)


def _check_size(session: Session, size: int, what: str, suite: str = "intl") -> None:
    if suite == "intl":
        current = log_size(session)
        if size < 1 or size > current:
            raise Invalid(f"{what} must be between 1 and the tree's size, {current}", errors={what: ["out of range"]})
        return
    current = sm_size(session)
    if size < 1 or size > current:
        raise Invalid(f"{what} must be between 1 and the SM tree's size, {current}"
                      + (f" (the log has {log_size(session)} leaves: `fieldcase custody build-sm-tree` brings the SM "
                         "tree in step)" if current < log_size(session) else ""), errors={what: ["out of range"]})


def inclusion(session: Session, leaf_index: int, tree_size: int, suite: str = "intl") -> dict[str, Any]:
    """PATH(leaf_index, D[tree_size]) in the tree of `suite` (intl: SHA-256; sm: SM3), hashes in hex."""
    tree = _tree(suite)
    _check_size(session, tree_size, "tree_size", suite)
    if not 0 <= leaf_index < tree_size:
        raise Invalid("leaf_index must be below tree_size", errors={"leaf_index": ["out of range"]})
    nodes = read_nodes(session, merkle.nodes_needed_for_inclusion(leaf_index, tree_size), tree.nodes)
    proof = merkle.inclusion_proof(leaf_index, tree_size, getter(nodes), tree=tree.hashing)
    return {"leaf_index": leaf_index, "tree_size": tree_size, "proof": [p.hex() for p in proof]}


def consistency(session: Session, first: int, second: int, suite: str = "intl") -> dict[str, Any]:
    """PROOF(first, D[second]) in the tree of `suite`, hashes in hex."""
    tree = _tree(suite)
    _check_size(session, second, "second", suite)
    if not 1 <= first <= second:
        raise Invalid("first must be between 1 and second", errors={"first": ["out of range"]})
    nodes = read_nodes(session, merkle.nodes_needed_for_consistency(first, second), tree.nodes)
    proof = merkle.consistency_proof(first, second, getter(nodes), tree=tree.hashing)
    return {"first": first, "second": second, "proof": [p.hex() for p in proof]}
