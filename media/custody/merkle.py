"""The Merkle tree of the custody log (PROTOCOL §8), hashed exactly as RFC 6962 §2.1.

A custody log is only worth something if people who do not trust the server
can check it with tools the server did not write. So every hash here is the
RFC's, not a variant of it: leaf `SHA-256(0x00 || leaf)`, node
`SHA-256(0x01 || left || right)`, the empty tree `SHA-256("")`, and the split
at the largest power of two *smaller* than n (not the midpoint). The proofs
are the RFC's audit paths PATH(m, D[n]) (§2.1.1) and PROOF(m, D[n]) (§2.1.2),
in the RFC's order, so any RFC 6962 / RFC 9162 verifier accepts them.

Storage design, chosen so that nothing ever scans the log:

- The caller stores the hash of every *complete, aligned* subtree: node
  (level L, index i) covers leaves [i·2^L, (i+1)·2^L); level 0 holds the leaf
  hashes. Such a node never changes once its last leaf exists, so rows are
  written once and never updated. `new_nodes` gives the rows to write when a
  leaf is appended: the leaf itself and the (at most log n) nodes the leaf
  completes, each computed from the stored left sibling.
- Every subtree hash MTH(D[a:b]) the RFC algorithms need is either one stored
  node or, on the right edge of a tree whose size is not a power of two, a
  fold of the stored nodes of the binary decomposition of [a, b) with the
  split rule. So a root, an inclusion proof or a consistency proof reads
  O(log n) stored nodes.
- The functions read through an abstract accessor `get(level, index)`, and
  `nodes_needed_for_*` name beforehand exactly the keys a computation will
  read, so a database caller fetches them in ONE query
  (`WHERE (level, index) IN (...)`) and passes a dict-backed `get`.

Nothing here touches the database or Flask: it is plain arithmetic, testable
exhaustively and reusable by the offline package verifier.

The same shape serves the custody log's second tree (FIELDCASE_CUSTODY_SUITES=intl,sm; PROTOCOL "Custody log in
the national algorithms"): every function that hashes takes `tree`, the `TreeHashing` to use, SHA-256 (the RFC's,
the default) or `SM3_TREE`, which is RFC 6962 with SM3 (GB/T 32905) in place of SHA-256: leaf
`SM3(0x00 || leaf)`, node `SM3(0x01 || left || right)`, the empty tree `SM3("")`. Both digests are 32 bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from backend.core.crypto import INTL, SM

# Bound once: a hash is made per leaf and per node, so the suite's method is not looked up at every call.
_sha256, _sm3 = INTL.digest, SM.digest

HASH_SIZE = 32
"""Every hash is a SHA-256 digest; anything else in a proof or the store is corruption."""

EMPTY_ROOT = _sha256(b"")
"""MTH({}) = SHA-256 of the empty string (RFC 6962 §2.1)."""

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"

NodeKey = tuple[int, int]
"""(level, index): the complete aligned subtree covering leaves [index·2^level, (index+1)·2^level)."""

NodeGetter = Callable[[int, int], bytes]
"""Reads one stored complete-aligned-subtree hash; level 0 are the leaf hashes."""


# --- hashing -------------------------------------------------------------------------------------------------------


def leaf_hash(leaf: bytes) -> bytes:
    """SHA-256(0x00 || leaf): the prefix keeps a leaf from ever passing for an interior node (second preimages)."""
    return _sha256(LEAF_PREFIX + bytes(leaf))


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right), refusing children that are not 32-byte hashes.

    A short or long child would still hash to *something*; checking here turns a
    corrupt stored row or a malformed proof into an error instead of a wrong root.
    """
    _check_hash(left, "left child")
    _check_hash(right, "right child")
    return _sha256(NODE_PREFIX + left + right)  # bytes + any bytes-like is bytes: no copies of the children first


def _sm3_leaf_hash(leaf: bytes) -> bytes:
    return _sm3(LEAF_PREFIX + bytes(leaf))


def _sm3_node_hash(left: bytes, right: bytes) -> bytes:
    _check_hash(left, "left child")
    _check_hash(right, "right child")
    return _sm3(NODE_PREFIX + left + right)


@dataclass(frozen=True)
class TreeHashing:
    """The hash a tree is made of: RFC 6962's shape (the 0x00 / 0x01 prefixes, the split rule) over one digest."""

    suite: str  # the algorithm suite whose digest it is (backend.core.crypto): "intl" or "sm"
    digest_name: str  # "sha256" or "sm3", as packages spell it
    leaf_hash: Callable[[bytes], bytes]
    node_hash: Callable[[bytes, bytes], bytes]
    empty_root: bytes


SHA256_TREE = TreeHashing("intl", "sha256", leaf_hash, node_hash, EMPTY_ROOT)
SM3_TREE = TreeHashing("sm", "sm3", _sm3_leaf_hash, _sm3_node_hash, _sm3(b""))
TREES = {t.suite: t for t in (SHA256_TREE, SM3_TREE)}


def root(leaf_hashes: Sequence[bytes], *, tree: TreeHashing = SHA256_TREE) -> bytes:
    """MTH of a tree given all its leaf hashes, in memory, in O(n) time and O(log n) space.

    For callers that hold the leaves anyway (tests, the offline package
    verifier, rebuilding the node table). It keeps a stack of the complete
    aligned subtrees seen so far — the same nodes `new_nodes` stores — and folds
    them right to left at the end, which is the RFC's recursion on the right edge.
    """
    stack: list[bytes] = []
    for index, hashed in enumerate(leaf_hashes):
        _check_hash(hashed, f"leaf hash {index}")
        current, position = bytes(hashed), index
        while position & 1:  # the leaf completes the aligned subtree whose left half is on the stack
            current = tree.node_hash(stack.pop(), current)
            position >>= 1
        stack.append(current)
    if not stack:
        return tree.empty_root
    current = stack.pop()
    while stack:
        current = tree.node_hash(stack.pop(), current)
    return current


# --- storage -------------------------------------------------------------------------------------------------------


def new_nodes(index: int, leaf_hash: bytes, get: NodeGetter, *,
              tree: TreeHashing = SHA256_TREE) -> list[tuple[int, int, bytes]]:
    """The rows (level, index, hash) to store when appending leaf number `index` to a tree of `index` leaves.

    The leaf itself is (0, index). If `index` is odd, the leaf completes node
    (1, index // 2), whose left half (0, index - 1) is already stored; if that
    node's index is odd too, it completes the one above, and so on: one new
    node per trailing 1-bit of `index`, each read is `nodes_needed_for_append`.
    """
    _check_index(index, "index")
    _check_hash(leaf_hash, "leaf hash")
    rows = [(0, index, bytes(leaf_hash))]
    current, level, position = bytes(leaf_hash), 0, index
    while position & 1:
        current = tree.node_hash(_read(get, level, position - 1), current)
        level += 1
        position >>= 1
        rows.append((level, position, current))
    return rows


def nodes_needed_for_append(index: int) -> set[NodeKey]:
    """The stored left siblings `new_nodes(index, ...)` reads: one per trailing 1-bit of `index`."""
    _check_index(index, "index")
    needed: set[NodeKey] = set()
    level, position = 0, index
    while position & 1:
        needed.add((level, position - 1))
        level += 1
        position >>= 1
    return needed


def stored_node_count(size: int) -> int:
    """How many rows a tree of `size` leaves has stored: sum of floor(size / 2^L) = 2·size - popcount(size)."""
    _check_index(size, "size")
    return 2 * size - size.bit_count()


# --- subtree hashes ------------------------------------------------------------------------------------------------


def subtree_hash(start: int, end: int, get: NodeGetter, *, tree: TreeHashing = SHA256_TREE) -> bytes:
    """MTH(D[start:end]) from stored nodes, reading exactly `_subtree_keys(start, end)`.

    Valid for every range that occurs in the RFC's recursion for any tree size
    (and, more generally, for any range whose first split part is aligned):
    a power-of-two-wide aligned range is one stored node; any other range is
    split at k, the largest power of two smaller than its width, and — because
    `start` is a multiple of k — its left part is the stored node (log2 k,
    start / k) while its right part recurses. Those are the binary digits of
    the width, largest first, so the fold reads at most log2(width) + 1 nodes.
    """
    keys = _subtree_keys(start, end)
    current = _read(get, *keys[-1])
    for level, position in reversed(keys[:-1]):
        current = tree.node_hash(_read(get, level, position), current)
    return current


def tree_root(size: int, get: NodeGetter, *, tree: TreeHashing = SHA256_TREE) -> bytes:
    """MTH(D[0:size]) from stored nodes: one read per 1-bit of `size` (EMPTY_ROOT for size 0)."""
    _check_index(size, "size")
    if size == 0:
        return tree.empty_root
    return subtree_hash(0, size, get, tree=tree)


def nodes_needed_for_root(size: int) -> set[NodeKey]:
    """The keys `tree_root(size, get)` reads: the complete aligned subtrees of the binary decomposition of size."""
    _check_index(size, "size")
    return set(_subtree_keys(0, size)) if size else set()


# --- inclusion proofs (RFC 6962 §2.1.1) ----------------------------------------------------------------------------


def inclusion_proof(index: int, size: int, get: NodeGetter, *, tree: TreeHashing = SHA256_TREE) -> list[bytes]:
    """PATH(index, D[0:size]): the audit path proving leaf `index` is in the tree of `size` leaves.

    Ordered as the RFC builds it, the sibling nearest the leaf first and the
    top-level sibling last; its length is the leaf's depth, <= ceil(log2 size).
    """
    return [subtree_hash(start, end, get, tree=tree) for start, end in _inclusion_ranges(index, size)]


def nodes_needed_for_inclusion(index: int, size: int) -> set[NodeKey]:
    """The keys `inclusion_proof(index, size, get)` reads (at most 2·ceil(log2 size) of them).

    Every sibling below the top-level one lies inside a power-of-two subtree and
    is one aligned node; only a sibling on the tree's right edge is a fold, and a
    path has at most one of those.
    """
    return _keys_of(_inclusion_ranges(index, size))


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges [start, end) whose MTH make up PATH(index, D[0:size]), in proof order.

    RFC 6962: for n > 1 and k the largest power of two < n,
    PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])      if m < k,
                    PATH(m - k, D[k:n]) : MTH(D[0:k])  if m >= k,
    and PATH(0, {d(0)}) = {}. Walked top-down with absolute offsets, then
    reversed, since each level's sibling goes *after* the deeper path.
    """
    _check_index(size, "size")
    _check_index(index, "index")
    if index >= size:
        raise ValueError(f"leaf index {index} is not in a tree of {size} leaves")
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()
    return ranges


# --- consistency proofs (RFC 6962 §2.1.2) --------------------------------------------------------------------------


def consistency_proof(first: int, second: int, get: NodeGetter, *,
                      tree: TreeHashing = SHA256_TREE) -> list[bytes]:
    """PROOF(first, D[0:second]): proves the tree of `first` leaves is a prefix of the tree of `second` leaves.

    Requires 1 <= first <= second. The RFC defines PROOF for 0 < m < n; for
    first == second it returns the empty proof, which is what
    SUBPROOF(n, D[n], true) gives and what common verifiers accept (equal
    sizes are consistent when the roots are equal). Size 0 has no proof: the
    empty tree is a prefix of everything, there is nothing to prove. Length
    <= ceil(log2 second) + 1.
    """
    return [subtree_hash(start, end, get, tree=tree) for start, end in _consistency_ranges(first, second)]


def nodes_needed_for_consistency(first: int, second: int) -> set[NodeKey]:
    """The keys `consistency_proof(first, second, get)` reads (at most 2·ceil(log2 second) of them)."""
    return _keys_of(_consistency_ranges(first, second))


def _consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTH make up PROOF(first, D[0:second]), in proof order.

    RFC 6962: PROOF(m, D[n]) = SUBPROOF(m, D[n], true), where
    SUBPROOF(m, D[m], true) = {}, SUBPROOF(m, D[m], false) = {MTH(D[m])}, and
    for m < n, k the largest power of two < n:
    SUBPROOF(m, D[n], b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])          if m <= k,
                           SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])  if m > k.
    The boolean records whether the subtree reached is the old root itself
    (which the verifier already has) or a subtree it must be told.
    """
    _check_index(first, "first")
    _check_index(second, "second")
    if not 1 <= first <= second:
        raise ValueError(f"a consistency proof needs 1 <= first <= second, got first={first}, second={second}")
    ranges: list[tuple[int, int]] = []
    start, end, remaining, is_old_root = 0, second, first, True
    while True:
        width = end - start
        if remaining == width:
            if not is_old_root:
                ranges.append((start, end))
            break
        k = _split(width)
        if remaining <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
            remaining -= k
            is_old_root = False
    ranges.reverse()
    return ranges


# --- helpers -------------------------------------------------------------------------------------------------------


def _split(width: int) -> int:
    """The RFC's k: the largest power of two strictly smaller than width (width >= 2)."""
    return 1 << ((width - 1).bit_length() - 1)


def _subtree_keys(start: int, end: int) -> list[NodeKey]:
    """The stored nodes MTH(D[start:end]) is built from, left to right (largest first).

    Raises ValueError for a range the RFC recursion never produces, i.e. one
    whose left part under the split rule is not an aligned stored node:
    hashing it would need leaves the store does not summarise.
    """
    _check_index(start, "start")
    _check_index(end, "end")
    if start >= end:
        raise ValueError(f"empty or reversed leaf range [{start}, {end})")
    keys: list[NodeKey] = []
    while True:
        width = end - start
        if width & (width - 1) == 0 and start % width == 0:
            level = width.bit_length() - 1
            keys.append((level, start >> level))
            return keys
        k = _split(width)
        if start % k:
            raise ValueError(f"[{start}, {end}) is not a subtree of the RFC 6962 recursion")
        level = k.bit_length() - 1
        keys.append((level, start >> level))
        start += k


def _keys_of(ranges: Iterable[tuple[int, int]]) -> set[NodeKey]:
    needed: set[NodeKey] = set()
    for start, end in ranges:
        needed.update(_subtree_keys(start, end))
    return needed


def _read(get: NodeGetter, level: int, index: int) -> bytes:
    """One stored node, checked: a row of the wrong length means a corrupt table, not a hash to trust."""
    value = get(level, index)
    if not isinstance(value, bytes | bytearray | memoryview) or len(value) != HASH_SIZE:
        raise ValueError(f"stored node ({level}, {index}) is not a {HASH_SIZE}-byte hash")
    return bytes(value)


def _check_hash(value: object, what: str) -> None:
    if not isinstance(value, bytes | bytearray | memoryview) or len(value) != HASH_SIZE:
        raise ValueError(f"{what} must be a {HASH_SIZE}-byte hash")


def _check_index(value: object, what: str) -> None:
    """Sizes and indices are non-negative ints; bool is refused because True would silently mean 1."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
