"""Verifying RFC 6962 proofs (the algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2).

Used where no server is trusted: `fieldcase verify-package` and `custody verify`.

Strict on purpose (PROTOCOL "Custody log, as built"): every hash is exactly 32
bytes (an empty or short leaf, root or proof hash is refused, never hashed
into something); an inclusion proof needs 0 <= leaf_index < tree_size and
exactly the number of hashes the RFC's PATH has for that leaf; a consistency
proof needs first <= second, is empty when first is 0 or first == second
(equal sizes need equal roots; the empty tree's root is SHA-256 of nothing),
and otherwise has exactly the number of hashes the RFC's PROOF has. The
`check_*` functions say why a proof is refused; `verify_*` answer a bool.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from backend.core.crypto import INTL, digests
from media.custody.merkle import SHA256_TREE, TreeHashing

HASH_SIZE = 32
_DIGEST_NAMES = {"sha256": "SHA-256", "sm3": "SM3"}
EMPTY_ROOT = SHA256_TREE.empty_root
"""MTH({}) = SHA-256 of the empty string (RFC 6962 §2.1): the only root a tree of size 0 has."""


_sha256 = INTL.digest  # bound once: a proof's walk hashes a node per step


def _node(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right)


def _hash_problem(value: object, what: str) -> str | None:
    if not isinstance(value, bytes | bytearray | memoryview):
        return f"{what} is not bytes"
    if len(value) == 0:
        return f"{what} is empty"
    if len(value) != HASH_SIZE:
        return f"{what} is {len(value)} bytes, not a {HASH_SIZE}-byte hash"
    return None


def _hashes_problem(proof: Sequence[bytes], *named: tuple[object, str]) -> str | None:
    for value, what in named:
        if problem := _hash_problem(value, what):
            return problem
    for position, value in enumerate(proof):
        if problem := _hash_problem(value, f"proof hash {position}"):
            return problem
    return None


def _hashes(count: int) -> str:
    return f"{count} hash" if count == 1 else f"{count} hashes"


def _is_size(value: object) -> bool:
    """A tree size or leaf index: a non-negative int (bool is refused: True would silently mean 1)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def inclusion_proof_length(index: int, size: int) -> int:
    """How many hashes PATH(index, D[size]) has (0 <= index < size): the levels below the point where the
    leaf's path and the tree's last leaf part, plus one per complete subtree on the right edge above it."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def consistency_proof_length(first: int, second: int) -> int:
    """How many hashes PROOF(first, D[second]) has (0 < first < second).

    The verifier walks the inclusion path of leaf first - 1 in the second tree, from the top of the
    complete subtree that leaf ends (2^shift leaves) instead of from the leaf; that subtree's hash is
    the proof's first element, unless it is the whole first tree (first a power of two), which the
    verifier already has.
    """
    shift = (first & -first).bit_length() - 1
    return inclusion_proof_length(first - 1, second) - shift + (first != 1 << shift)


def _node_of(tree: TreeHashing) -> Callable[[bytes, bytes], bytes]:
    """The unchecked node hash of `tree` (the lengths are checked before the walk): SHA-256's own, fast."""
    return _node if tree is SHA256_TREE else tree.node_hash


def check_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes, *,
                    tree: TreeHashing = SHA256_TREE) -> str | None:
    """Why the inclusion proof is refused, or None when it holds (RFC 9162 §2.1.3.2); `tree` is the digest the
    tree is made of (SHA-256, or SM3 for the custody log's SM tree)."""
    node = _node_of(tree)
    if not isinstance(proof, Sequence) or isinstance(proof, bytes | bytearray | str):
        return "the proof is not a list of hashes"
    if problem := _hashes_problem(proof, (leaf_hash, "the leaf hash"), (root, "the root hash")):
        return problem
    if not _is_size(size) or not _is_size(index):
        return "the leaf index and the tree size must be non-negative integers"
    if index >= size:
        return f"leaf index {index} is not in a tree of {size} leaves (leaf_index >= tree_size)"
    expected = inclusion_proof_length(index, size)
    if len(proof) != expected:
        return f"the proof has {_hashes(len(proof))}; leaf {index} of a tree of {size} needs {expected}"
    fn, sn, r = index, size - 1, bytes(leaf_hash)
    for p in proof:
        if sn == 0:
            return "the proof is longer than the path"  # unreachable after the length check; kept as the RFC's step
        if fn & 1 or fn == sn:
            r = node(bytes(p), r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, bytes(p))
        fn >>= 1
        sn >>= 1
    if sn != 0 or not digests.equal(r, bytes(root)):
        return "the proof does not lead to the root hash"
    return None


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes, *,
                     tree: TreeHashing = SHA256_TREE) -> bool:
    return check_inclusion(leaf_hash, index, size, proof, root, tree=tree) is None


def check_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                      proof: Sequence[bytes], *, tree: TreeHashing = SHA256_TREE) -> str | None:
    """Why the consistency proof is refused, or None when it holds (RFC 9162 §2.1.4.2).

    The RFC's algorithm covers 0 < first < second. Its edges, as RFC 6962's PROOF and common verifiers
    define them: from size 0 (the empty tree is a prefix of every tree) and between equal sizes
    (SUBPROOF(n, D[n], true) = {}) the proof is empty; for equal sizes the roots are equal; a size-0
    root is SHA-256 of nothing (SM3 of nothing in the SM tree). first > second is refused.
    """
    node = _node_of(tree)
    if not isinstance(proof, Sequence) or isinstance(proof, bytes | bytearray | str):
        return "the proof is not a list of hashes"
    if problem := _hashes_problem(proof, (first_root, "the first root hash"), (second_root, "the second root hash")):
        return problem
    if not _is_size(first) or not _is_size(second):
        return "tree sizes must be non-negative integers"
    if first > second:
        return f"the first tree ({first} leaves) is larger than the second ({second})"
    if first == 0 and not digests.equal(bytes(first_root), tree.empty_root):
        return (f"the first root hash is not the empty tree's ({_DIGEST_NAMES.get(tree.digest_name, tree.digest_name)}"
                " of nothing) though the first tree is empty")
    if first == second or first == 0:
        if proof:
            why = "of equal sizes" if first == second else "from the empty tree"
            return f"a consistency proof {why} must be empty, this one has {_hashes(len(proof))}"
        if first == second and not digests.equal(bytes(first_root), bytes(second_root)):
            return f"the two trees have {first} leaves each but different roots"
        return None
    expected = consistency_proof_length(first, second)
    if len(proof) != expected:
        return f"the proof has {_hashes(len(proof))}; from {first} to {second} leaves needs {expected}"
    path = [bytes(p) for p in proof]
    if first & (first - 1) == 0:  # a power of two: the first root is the proof's implicit first node
        path = [bytes(first_root), *path]
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return "the proof is longer than the path"  # unreachable after the length check; kept as the RFC's step
        if fn & 1 or fn == sn:
            fr = node(c, fr)
            sr = node(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        return "the proof is shorter than the path"
    if not digests.equal(fr, bytes(first_root)):
        return "the proof does not lead to the first root hash"
    if not digests.equal(sr, bytes(second_root)):
        return "the proof does not lead to the second root hash"
    return None


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       proof: Sequence[bytes], *, tree: TreeHashing = SHA256_TREE) -> bool:
    return check_consistency(first, second, first_root, second_root, proof, tree=tree) is None
