"""An independent RFC 6962 / RFC 9162 reference, written from the RFC text alone, to judge media/custody/merkle.py by.

It deliberately shares no code with media/custody/merkle.py (and must never import
it): if both were wrong in the same way, tests comparing them would pass. So
the generators below are the RFC's recursive definitions, transcribed
literally over the data entries D[n] (slow, O(n) per call, obviously right),
and the verifiers are the step-by-step algorithms of RFC 9162 §2.1.3.2
("Verifying an Inclusion Proof") and §2.1.4.2 ("Verifying Consistency
between Two Tree Heads"), which use only the proof, the sizes and the roots.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

_LEN = 32


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _children(left: bytes, right: bytes) -> bytes:
    """HASH(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right)


def _k(n: int) -> int:
    """RFC 6962 §2.1: "k be the largest power of two smaller than n (i.e., k < n <= 2k)"."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def hash_leaf(entry: bytes) -> bytes:
    """MTH({d(0)}) = SHA-256(0x00 || d(0))."""
    return _sha256(b"\x00" + entry)


def mth(leaves: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash of the data entries, by the recursive definition of RFC 6962 §2.1.

    MTH({}) = SHA-256(); MTH({d(0)}) = SHA-256(0x00 || d(0));
    MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])).
    """
    n = len(leaves)
    if n == 0:
        return _sha256(b"")
    if n == 1:
        return hash_leaf(leaves[0])
    k = _k(n)
    return _children(mth(leaves[:k]), mth(leaves[k:]))


def path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 6962 §2.1.1, literally."""
    n = len(leaves)
    if not 0 <= m < n:
        raise ValueError("PATH needs 0 <= m < n")
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return path(m, leaves[:k]) + [mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [mth(leaves[:k])]


def proof(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) of RFC 6962 §2.1.2, literally (0 < m <= n)."""
    if not 0 < m <= len(leaves):
        raise ValueError("PROOF needs 0 < m <= n")
    return _subproof(m, leaves, True)


def _subproof(m: int, leaves: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [mth(leaves)]
    k = _k(n)
    if m <= k:
        return _subproof(m, leaves[:k], b) + [mth(leaves[k:])]
    return _subproof(m - k, leaves[k:], False) + [mth(leaves[:k])]


def _all_hashes(*values: object) -> bool:
    return all(isinstance(v, bytes) and len(v) == _LEN for v in values)


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2, step by step (leaf_index, tree_size, hash = the leaf's hash, inclusion_path)."""
    proof = list(proof)
    if not _all_hashes(leaf_hash, root, *proof):
        return False
    # 1. leaf_index >= tree_size fails.
    if not 0 <= index < size:
        return False
    # 2. fn = leaf_index, sn = tree_size - 1.  3. r = hash.
    fn, sn = index, size - 1
    r = leaf_hash
    # 4. For each value p in the inclusion_path array:
    for p in proof:
        # a. If sn is 0, stop and fail.
        if sn == 0:
            return False
        # b. If LSB(fn) is set, or if fn is equal to sn:
        if fn & 1 or fn == sn:
            r = _children(p, r)
            # ii. If LSB(fn) is not set, right-shift both until either LSB(fn) is set or fn is 0.
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _children(r, p)
        # c. Finally, right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1
    # 5. sn must be 0 and r must equal root_hash.
    return sn == 0 and hmac.compare_digest(r, root)


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2, step by step (first, second, first_hash, second_hash, consistency_path).

    The RFC's algorithm covers 0 < first < second. For first == second the
    only consistent answer is an empty proof and equal roots (RFC 6962's
    SUBPROOF(n, D[n], true) = {}); first == 0 < second has no proof at all
    and is refused, as any claimed proof of it would prove nothing.
    """
    path_ = list(proof)
    if not _all_hashes(first_root, second_root, *path_):
        return False
    if first == second and first >= 0:
        return not path_ and hmac.compare_digest(first_root, second_root)
    if not 0 < first < second:
        return False
    # 1. An empty consistency_path fails.
    if not path_:
        return False
    # 2. If first is an exact power of 2, prepend first_hash.
    if first & (first - 1) == 0:
        path_ = [first_root, *path_]
    # 3. fn = first - 1, sn = second - 1.
    fn, sn = first - 1, second - 1
    # 4. If LSB(fn) is set, right-shift both until LSB(fn) is not set.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. fr = sr = the first value of consistency_path.
    fr = sr = path_[0]
    # 6. For each subsequent value c:
    for c in path_[1:]:
        # If sn is 0, stop and fail.
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = _children(c, fr)
            sr = _children(c, sr)
            # If LSB(fn) is not set, right-shift both until either LSB(fn) is set or fn is 0.
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _children(sr, c)
        # Finally, right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1
    # 7. fr == first_hash, sr == second_hash, and sn == 0.
    return sn == 0 and hmac.compare_digest(fr, first_root) and hmac.compare_digest(sr, second_root)
