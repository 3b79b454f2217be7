"""media/custody/merkle.py against the RFC: published vectors, an independent verifier, small trees, read counts.

The judge is tests/rfc6962.py, written from RFC 6962 §2.1 and RFC 9162
§2.1.3.2/§2.1.4.2 without looking at media/custody/merkle.py. Every proof is compared
byte for byte with the RFC's literal recursive definition, verified by the
RFC 9162 algorithms, and must stop verifying when anything is changed.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.custody import merkle, proofs
from tests import rfc6962

# --- published vectors ---------------------------------------------------------------------------------------------
# The eight leaves of the RFC 6962 reference implementation's merkle_tree_test
# (certificate-transparency), and its root for each size. The same values are
# carried by the Go verifiers (google/trillian, transparency-dev/merkle
# proof/verify_test.go); they are also re-derived below by the independent
# naive MTH, so a typo here cannot pass silently.

CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]

CT_ROOTS = [  # index = tree size
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]

# (leaf index, tree size, path); the Go vectors number leaves from 1, these from 0.
CT_INCLUSION = [
    (0, 1, []),
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]

# (first, second, proof)
CT_CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]


# --- a node store as the database will hold it ---------------------------------------------------------------------


class Store:
    """One dict entry per stored node, filled only through merkle.new_nodes, as the custody table will be."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.data: list[bytes] = []

    @property
    def size(self) -> int:
        return len(self.data)

    def append(self, entry: bytes) -> None:
        index = self.size
        get, reads = self.reader(limit=index)
        rows = merkle.new_nodes(index, merkle.leaf_hash(entry), get)
        assert reads == merkle.nodes_needed_for_append(index)
        for level, position, value in rows:
            assert (level, position) not in self.nodes, "a stored node is written once, never updated"
            self.nodes[(level, position)] = value
        self.data.append(entry)

    def reader(self, limit: int) -> tuple[Callable[[int, int], bytes], set[tuple[int, int]]]:
        """A `get` that records what it reads and refuses nodes that reach past leaf `limit`."""
        reads: set[tuple[int, int]] = set()

        def get(level: int, index: int) -> bytes:
            assert (index + 1) << level <= limit, f"read ({level}, {index}) beyond tree size {limit}"
            reads.add((level, index))
            return self.nodes[(level, index)]

        return get, reads


def build(entries: list[bytes]) -> Store:
    store = Store()
    for entry in entries:
        store.append(entry)
    return store


def flip(value: bytes, position: int = 0) -> bytes:
    changed = bytearray(value)
    changed[position % len(changed)] ^= 0x01
    return bytes(changed)


def ceil_log2(n: int) -> int:
    return (n - 1).bit_length()


SMALL = 70
SMALL_ENTRIES = [f"custody event {i}".encode() * (i % 3) for i in range(SMALL)]  # includes empty entries


@pytest.fixture(scope="module")
def small() -> Store:
    return build(SMALL_ENTRIES)


@pytest.fixture(scope="module")
def small_roots() -> list[bytes]:
    return [rfc6962.mth(SMALL_ENTRIES[:n]) for n in range(SMALL + 1)]


# --- vectors -------------------------------------------------------------------------------------------------------


def test_the_independent_reference_reproduces_the_published_roots():
    for n, expected in enumerate(CT_ROOTS):
        assert rfc6962.mth(CT_LEAVES[:n]).hex() == expected


def test_hashes_match_the_published_vectors():
    assert merkle.EMPTY_ROOT.hex() == CT_ROOTS[0]
    assert merkle.leaf_hash(b"").hex() == CT_ROOTS[1]
    assert merkle.node_hash(merkle.leaf_hash(b""), merkle.leaf_hash(b"\x00")).hex() == CT_ROOTS[2]


def test_roots_match_the_published_vectors():
    store = build(CT_LEAVES)
    hashes = [merkle.leaf_hash(entry) for entry in CT_LEAVES]
    for n, expected in enumerate(CT_ROOTS):
        assert merkle.root(hashes[:n]).hex() == expected
        assert merkle.tree_root(n, store.reader(n)[0]).hex() == expected


@pytest.mark.parametrize(("index", "size", "expected"), CT_INCLUSION)
def test_inclusion_proofs_match_the_published_vectors(index, size, expected):
    store = build(CT_LEAVES)
    got = merkle.inclusion_proof(index, size, store.reader(size)[0])
    assert [h.hex() for h in got] == expected
    root = bytes.fromhex(CT_ROOTS[size])
    assert rfc6962.verify_inclusion(merkle.leaf_hash(CT_LEAVES[index]), index, size, got, root)


@pytest.mark.parametrize(("first", "second", "expected"), CT_CONSISTENCY)
def test_consistency_proofs_match_the_published_vectors(first, second, expected):
    store = build(CT_LEAVES)
    got = merkle.consistency_proof(first, second, store.reader(second)[0])
    assert [h.hex() for h in got] == expected
    assert rfc6962.verify_consistency(first, second, bytes.fromhex(CT_ROOTS[first]),
                                      bytes.fromhex(CT_ROOTS[second]), got)


# --- storage -------------------------------------------------------------------------------------------------------


def test_the_store_holds_exactly_the_complete_aligned_subtrees():
    store = Store()
    for n in range(1, SMALL + 1):
        store.append(SMALL_ENTRIES[n - 1])
        expected = {(level, i) for level in range(n.bit_length()) for i in range(n >> level)}
        assert set(store.nodes) == expected
        assert len(store.nodes) == merkle.stored_node_count(n)
    for (level, i), value in store.nodes.items():
        assert value == rfc6962.mth(SMALL_ENTRIES[i << level:(i + 1) << level])


def test_appending_adds_at_most_log_n_nodes_and_reads_only_their_left_siblings():
    store = Store()
    for index in range(300):
        get, reads = store.reader(index)
        rows = merkle.new_nodes(index, merkle.leaf_hash(b"%d" % index), get)
        assert len(rows) == 1 + (index ^ (index + 1)).bit_length() - 1  # the leaf + one per trailing 1-bit
        assert len(rows) <= 1 + ceil_log2(index + 1)
        assert reads == merkle.nodes_needed_for_append(index)
        store.nodes.update({(level, i): value for level, i, value in rows})
        store.data.append(b"%d" % index)


# --- exhaustive small trees ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", range(0, SMALL + 1))
def test_root_from_stored_nodes_is_the_rfc_mth(small, small_roots, n):
    get, reads = small.reader(n)
    assert merkle.tree_root(n, get) == small_roots[n]
    assert reads == merkle.nodes_needed_for_root(n)
    assert len(reads) == n.bit_count()
    assert merkle.root([merkle.leaf_hash(e) for e in SMALL_ENTRIES[:n]]) == small_roots[n]


@pytest.mark.parametrize("n", range(1, SMALL + 1))
def test_every_inclusion_proof_verifies_and_nothing_else_does(small, small_roots, n):
    root = small_roots[n]
    for m in range(n):
        get, reads = small.reader(n)
        proof = merkle.inclusion_proof(m, n, get)
        assert proof == rfc6962.path(m, SMALL_ENTRIES[:n])
        assert len(proof) <= ceil_log2(n)
        needed = merkle.nodes_needed_for_inclusion(m, n)
        assert reads == needed
        assert len(needed) <= 2 * ceil_log2(n) + 2

        leaf = merkle.leaf_hash(SMALL_ENTRIES[m])
        assert rfc6962.verify_inclusion(leaf, m, n, proof, root)

        for j, element in enumerate(proof):
            for position in (0, 17, 31):
                tampered = proof[:j] + [flip(element, position)] + proof[j + 1:]
                assert not rfc6962.verify_inclusion(leaf, m, n, tampered, root)
        for position in (0, 31):
            assert not rfc6962.verify_inclusion(flip(leaf, position), m, n, proof, root)
            assert not rfc6962.verify_inclusion(leaf, m, n, proof, flip(root, position))
        for other in range(n):
            if other != m:
                assert not rfc6962.verify_inclusion(leaf, other, n, proof, root)
        # Not tested: the same proof under another tree size. A path of the same
        # shape verifies for any size with that shape (leaf 0 of 3 and of 4 have
        # the same path layout); what binds the size is the signed tree head,
        # which signs the size together with the root.
        if proof:
            assert not rfc6962.verify_inclusion(leaf, m, n, proof[:-1], root)
            assert not rfc6962.verify_inclusion(leaf, m, n, proof[1:], root)
        assert not rfc6962.verify_inclusion(leaf, m, n, [*proof, root], root)
        assert not rfc6962.verify_inclusion(leaf, m, n, [root, *proof], root)


@pytest.mark.parametrize("n", range(1, SMALL + 1))
def test_every_consistency_proof_verifies_and_nothing_else_does(small, small_roots, n):
    second_root = small_roots[n]
    for m in range(1, n + 1):
        first_root = small_roots[m]
        get, reads = small.reader(n)
        proof = merkle.consistency_proof(m, n, get)
        assert proof == rfc6962.proof(m, SMALL_ENTRIES[:n])
        assert len(proof) <= ceil_log2(n) + 1
        needed = merkle.nodes_needed_for_consistency(m, n)
        assert reads == needed
        assert len(needed) <= 2 * ceil_log2(n) + 2

        assert rfc6962.verify_consistency(m, n, first_root, second_root, proof)

        for j, element in enumerate(proof):
            for position in (0, 17, 31):
                tampered = proof[:j] + [flip(element, position)] + proof[j + 1:]
                assert not rfc6962.verify_consistency(m, n, first_root, second_root, tampered)
        for position in (0, 31):
            assert not rfc6962.verify_consistency(m, n, flip(first_root, position), second_root, proof)
            assert not rfc6962.verify_consistency(m, n, first_root, flip(second_root, position), proof)
        for other in range(1, n + 1):
            if other != m:
                assert not rfc6962.verify_consistency(other, n, first_root, second_root, proof)
        # As for inclusion, another `second` with the same proof layout verifies;
        # the signed tree head binds size and root together.
        if proof:
            assert not rfc6962.verify_consistency(m, n, first_root, second_root, proof[:-1])
            assert not rfc6962.verify_consistency(m, n, first_root, second_root, proof[1:])
        assert not rfc6962.verify_consistency(m, n, first_root, second_root, [*proof, second_root])
        assert not rfc6962.verify_consistency(m, n, first_root, second_root, [first_root, *proof])


# --- larger trees --------------------------------------------------------------------------------------------------

LARGE = 4096
RANDOM = random.Random(6962)
LARGE_ENTRIES = [RANDOM.randbytes(RANDOM.randrange(0, 48)) for _ in range(LARGE)]
LARGE_SIZES = [127, 128, 129, 1000, 1023, 1024, 1025, 4095, 4096, *RANDOM.sample(range(100, LARGE), 4)]


@pytest.fixture(scope="module")
def large() -> Store:
    return build(LARGE_ENTRIES)


@pytest.mark.parametrize("n", LARGE_SIZES)
def test_larger_trees_agree_with_the_reference(large, n):
    entries = LARGE_ENTRIES[:n]
    root = rfc6962.mth(entries)
    assert merkle.tree_root(n, large.reader(n)[0]) == root

    rng = random.Random(n)
    for m in {0, 1, n // 2, n - 2, n - 1, *rng.sample(range(n), 8)}:
        get, reads = large.reader(n)
        proof = merkle.inclusion_proof(m, n, get)
        assert proof == rfc6962.path(m, entries)
        assert reads == merkle.nodes_needed_for_inclusion(m, n)
        leaf = merkle.leaf_hash(entries[m])
        assert rfc6962.verify_inclusion(leaf, m, n, proof, root)
        assert not rfc6962.verify_inclusion(leaf, m, n, [flip(proof[0]), *proof[1:]], root)

    for m in {1, 2, n // 2, n - 1, n, *rng.sample(range(1, n + 1), 8)}:
        get, reads = large.reader(n)
        proof = merkle.consistency_proof(m, n, get)
        assert proof == rfc6962.proof(m, entries)
        assert reads == merkle.nodes_needed_for_consistency(m, n)
        first_root = rfc6962.mth(LARGE_ENTRIES[:m])
        assert rfc6962.verify_consistency(m, n, first_root, root, proof)
        if proof:
            assert not rfc6962.verify_consistency(m, n, first_root, root, [*proof[:-1], flip(proof[-1])])


# --- cost: O(log n) reads of stored nodes --------------------------------------------------------------------------

MILLION = 1_000_000
UNIFORM_ENTRY = b"uniform leaf"


@cache
def uniform_mth(n: int) -> bytes:
    """RFC MTH of n copies of one entry; cheap because equal-sized subtrees of equal leaves hash alike."""
    if n == 1:
        return rfc6962.hash_leaf(UNIFORM_ENTRY)
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + uniform_mth(k) + uniform_mth(n - k)).digest()


class LazyTree:
    """A stored tree of `size` equal leaves that nobody materialised: get() computes a node on demand and counts."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.reads: list[tuple[int, int]] = []

    def get(self, level: int, index: int) -> bytes:
        assert (index + 1) << level <= self.size, f"({level}, {index}) is not stored in a tree of {self.size}"
        self.reads.append((level, index))
        return uniform_mth(1 << level)


@pytest.mark.parametrize("n", [MILLION, MILLION - 1, 2**20 - 1, 2**20, 2**20 + 1, 2**19 + 3])
def test_a_million_leaf_tree_costs_logarithmic_reads(n):
    bound = 2 * math.ceil(math.log2(n)) + 2

    tree = LazyTree(n)
    root = merkle.tree_root(n, tree.get)
    assert root == uniform_mth(n)
    assert set(tree.reads) == merkle.nodes_needed_for_root(n)
    assert len(tree.reads) == n.bit_count() <= bound

    rng = random.Random(n)
    leaf = merkle.leaf_hash(UNIFORM_ENTRY)
    for m in {0, 1, n // 2, n - 2, n - 1, 2**19 - 1, 2**19, *rng.sample(range(n), 20)}:
        tree = LazyTree(n)
        needed = merkle.nodes_needed_for_inclusion(m, n)
        assert len(needed) <= bound
        proof = merkle.inclusion_proof(m, n, tree.get)
        assert set(tree.reads) == needed
        assert len(tree.reads) == len(needed), "each needed node is read once"
        assert rfc6962.verify_inclusion(leaf, m, n, proof, root)

    for m in {1, 2, 3, n // 2, n - 1, n, 2**19 - 1, 2**19 + 1, *rng.sample(range(1, n + 1), 20)}:
        tree = LazyTree(n)
        needed = merkle.nodes_needed_for_consistency(m, n)
        assert len(needed) <= bound
        proof = merkle.consistency_proof(m, n, tree.get)
        assert set(tree.reads) == needed
        assert len(tree.reads) == len(needed), "each needed node is read once"
        assert rfc6962.verify_consistency(m, n, uniform_mth(m), root, proof)


def test_the_read_bounds_hold_for_every_pair_up_to_300():
    """Tighter than the 2·ceil(log2 n) + 2 asked for: one fold on the right edge plus one node per level."""
    for n in range(1, 301):
        levels = ceil_log2(n)
        assert len(merkle.nodes_needed_for_root(n)) <= levels + 1
        for m in range(n):
            assert len(merkle.nodes_needed_for_inclusion(m, n)) <= 2 * levels
        for m in range(1, n + 1):
            assert len(merkle.nodes_needed_for_consistency(m, n)) <= 2 * levels


def test_one_batched_fetch_serves_a_whole_proof(small):
    """The database pattern: fetch the needed keys in one query, then compute from a plain dict."""
    n, m = 53, 37
    keys = merkle.nodes_needed_for_inclusion(m, n) | merkle.nodes_needed_for_root(n)
    fetched = {key: small.nodes[key] for key in keys}  # SELECT ... WHERE (level, index) IN (:keys)
    get = lambda level, index: fetched[(level, index)]  # noqa: E731
    proof = merkle.inclusion_proof(m, n, get)
    assert rfc6962.verify_inclusion(merkle.leaf_hash(SMALL_ENTRIES[m]), m, n, proof, merkle.tree_root(n, get))


# --- refusals ------------------------------------------------------------------------------------------------------


def test_out_of_range_requests_are_refused(small):
    get = small.reader(SMALL)[0]
    for index, size in [(0, 0), (5, 5), (6, 5), (-1, 5)]:
        with pytest.raises(ValueError):
            merkle.inclusion_proof(index, size, get)
        with pytest.raises(ValueError):
            merkle.nodes_needed_for_inclusion(index, size)
    for first, second in [(0, 5), (6, 5), (0, 0), (-1, 3)]:
        with pytest.raises(ValueError):
            merkle.consistency_proof(first, second, get)
        with pytest.raises(ValueError):
            merkle.nodes_needed_for_consistency(first, second)
    with pytest.raises(ValueError):
        merkle.tree_root(-1, get)
    with pytest.raises(ValueError):
        merkle.inclusion_proof(True, 2, get)


def test_ranges_outside_the_rfc_recursion_are_refused(small):
    get = small.reader(SMALL)[0]
    assert merkle.subtree_hash(4, 7, get) == rfc6962.mth(SMALL_ENTRIES[4:7])
    assert merkle.subtree_hash(8, 16, get) == rfc6962.mth(SMALL_ENTRIES[8:16])
    for start, end in [(2, 7), (1, 6), (3, 3), (5, 4)]:
        with pytest.raises(ValueError):
            merkle.subtree_hash(start, end, get)


def test_corrupt_stored_nodes_and_malformed_hashes_are_refused(small):
    with pytest.raises(ValueError):
        merkle.tree_root(3, lambda level, index: b"short")
    with pytest.raises(ValueError):
        merkle.node_hash(b"\x00" * 31, b"\x00" * 32)
    with pytest.raises(ValueError):
        merkle.root([b"\x00" * 33])
    with pytest.raises(ValueError):
        merkle.new_nodes(0, b"not a hash", small.reader(0)[0])


# --- the verifiers (media/custody/proofs.py): strict, as PROTOCOL "Custody log, as built" says -------------------
# `fieldcase verify-package` and `fieldcase custody verify` trust no server: they refuse what is not a proof
# in the RFC's exact shape, and say why, instead of hashing whatever they were given.

H = hashlib.sha256(b"a leaf").digest()


def test_given_real_proofs_when_the_custody_verifiers_check_them_then_they_judge_as_the_rfc_reference(
        small, small_roots):
    for n in range(1, 34):
        get, root = small.reader(n)[0], small_roots[n]
        for m in range(n):
            proof, leaf = merkle.inclusion_proof(m, n, get), merkle.leaf_hash(SMALL_ENTRIES[m])
            assert proofs.check_inclusion(leaf, m, n, proof, root) is None
            for candidate in ([*proof, root], proof[:-1], [flip(p) for p in proof], proof[::-1]):
                assert proofs.verify_inclusion(leaf, m, n, candidate, root) == \
                    rfc6962.verify_inclusion(leaf, m, n, candidate, root)
        for m in range(1, n + 1):
            proof = merkle.consistency_proof(m, n, get)
            assert proofs.check_consistency(m, n, small_roots[m], root, proof) is None
            for candidate in ([*proof, root], proof[:-1], proof[1:], [flip(p) for p in proof], [root, *proof]):
                assert proofs.verify_consistency(m, n, small_roots[m], root, candidate) == \
                    rfc6962.verify_consistency(m, n, small_roots[m], root, candidate)


def test_the_expected_proof_lengths_are_those_of_the_rfc_definitions():
    for n in range(1, 200):
        for m in range(n):
            assert proofs.inclusion_proof_length(m, n) == len(merkle._inclusion_ranges(m, n))
        for m in range(1, n):
            assert proofs.consistency_proof_length(m, n) == len(merkle._consistency_ranges(m, n))


@pytest.mark.parametrize("leaf, root, why", [
    (b"", b"", "the leaf hash is empty"),
    (H, b"", "the root hash is empty"),
    (H[:31], H[:31], "the leaf hash is 31 bytes, not a 32-byte hash"),
    (H + b"\x00", H + b"\x00", "the leaf hash is 33 bytes, not a 32-byte hash"),
    (H.hex(), H.hex(), "the leaf hash is not bytes"),
], ids=["empty-leaf-and-root", "empty-root", "short", "long", "hex-text"])
def test_given_a_one_leaf_tree_whose_leaf_and_root_are_not_32_byte_hashes_when_checked_then_it_is_refused(
        leaf, root, why):
    """A one-leaf tree's root is its leaf hash: a verifier that only compares would accept b"" == b""."""
    assert proofs.check_inclusion(leaf, 0, 1, [], root) == why
    assert not proofs.verify_inclusion(leaf, 0, 1, [], root)


@pytest.mark.parametrize("bad", [b"", H[:16], H + H, "ab" * 32, None], ids=["empty", "short", "long", "hex", "none"])
def test_given_a_proof_holding_something_other_than_a_32_byte_hash_when_checked_then_it_is_refused(small, bad):
    get = small.reader(8)[0]
    root, leaf = merkle.tree_root(8, get), merkle.leaf_hash(SMALL_ENTRIES[5])
    proof = merkle.inclusion_proof(5, 8, get)
    assert proofs.check_inclusion(leaf, 5, 8, [*proof[:1], bad, *proof[2:]], root).startswith("proof hash 1 is ")
    consistency = merkle.consistency_proof(3, 8, get)
    assert proofs.check_consistency(3, 8, merkle.tree_root(3, get), root, [bad, *consistency[1:]]) \
        .startswith("proof hash 0 is ")
    assert proofs.check_consistency(8, 8, bad, bad, []).startswith("the first root hash is ")
    assert proofs.check_consistency(0, 8, merkle.EMPTY_ROOT, bad, []).startswith("the second root hash is ")


def test_given_equal_empty_roots_of_equal_sizes_when_checked_then_they_are_refused():
    """Equal sizes compare roots: two empty (or two short) "roots" are equal, and still no hashes."""
    assert proofs.check_consistency(5, 5, b"", b"", []) == "the first root hash is empty"
    assert proofs.check_consistency(5, 5, H[:4], H[:4], []) == "the first root hash is 4 bytes, not a 32-byte hash"
    assert proofs.check_consistency(5, 5, H, H, []) is None


def test_given_a_leaf_index_outside_the_tree_when_checked_then_it_is_refused(small):
    get = small.reader(8)[0]
    root, proof = merkle.tree_root(8, get), merkle.inclusion_proof(7, 8, get)
    leaf = merkle.leaf_hash(SMALL_ENTRIES[7])
    assert proofs.check_inclusion(leaf, 8, 8, proof, root) == \
        "leaf index 8 is not in a tree of 8 leaves (leaf_index >= tree_size)"
    assert proofs.check_inclusion(leaf, 9, 8, proof, root).startswith("leaf index 9 is not in a tree of 8 leaves")
    assert proofs.check_inclusion(leaf, 0, 0, [], merkle.EMPTY_ROOT).startswith("leaf index 0 is not in a tree of 0")
    # Not an integer: True would silently mean leaf 1, "1" used to raise TypeError.
    one = merkle.leaf_hash(SMALL_ENTRIES[1])
    assert proofs.verify_inclusion(one, 1, 8, merkle.inclusion_proof(1, 8, get), root)
    for index, size in [(True, 8), (1, 8.0), ("1", 8), (-1, 8), (1, None)]:
        assert proofs.check_inclusion(one, index, size, merkle.inclusion_proof(1, 8, get), root) == \
            "the leaf index and the tree size must be non-negative integers"


def test_given_an_inclusion_proof_of_the_wrong_length_when_checked_then_it_is_refused_saying_how_long_it_must_be(
        small):
    get = small.reader(6)[0]
    root, leaf = merkle.tree_root(6, get), merkle.leaf_hash(SMALL_ENTRIES[4])
    proof = merkle.inclusion_proof(4, 6, get)
    assert len(proof) == 2
    assert proofs.check_inclusion(leaf, 4, 6, [*proof, root], root) == \
        "the proof has 3 hashes; leaf 4 of a tree of 6 needs 2"
    assert proofs.check_inclusion(leaf, 4, 6, proof[:1], root) == "the proof has 1 hash; leaf 4 of a tree of 6 needs 2"
    assert proofs.check_inclusion(leaf, 4, 6, [flip(proof[0]), proof[1]], root) == \
        "the proof does not lead to the root hash"


def test_given_the_empty_tree_when_checked_against_any_later_head_then_only_an_empty_proof_is_consistent(
        small, small_roots):
    """RFC 9162 §2.1.4.2 starts at 0 < first: the empty tree is a prefix of every tree, with nothing to prove."""
    for n in (0, 1, 2, 5, 8, 70):
        assert proofs.check_consistency(0, n, merkle.EMPTY_ROOT, small_roots[n], []) is None
        assert proofs.check_consistency(0, n, merkle.EMPTY_ROOT, small_roots[n], [small_roots[n]]) in (
            "a consistency proof from the empty tree must be empty, this one has 1 hash",
            "a consistency proof of equal sizes must be empty, this one has 1 hash")
    assert proofs.check_consistency(0, 5, small_roots[5], small_roots[5], []) == \
        "the first root hash is not the empty tree's (SHA-256 of nothing) though the first tree is empty"
    assert not proofs.verify_consistency(0, 5, b"", small_roots[5], [])


def test_given_equal_sizes_when_checked_then_the_proof_must_be_empty_and_the_roots_equal(small_roots):
    root = small_roots[6]
    assert proofs.check_consistency(6, 6, root, root, []) is None
    assert proofs.check_consistency(6, 6, root, root, [root]) == \
        "a consistency proof of equal sizes must be empty, this one has 1 hash"
    assert proofs.check_consistency(6, 6, root, small_roots[5], []) == \
        "the two trees have 6 leaves each but different roots"


def test_given_a_first_tree_larger_than_the_second_when_checked_then_it_is_refused(small, small_roots):
    proof = merkle.consistency_proof(3, 6, small.reader(6)[0])
    assert proofs.check_consistency(6, 3, small_roots[6], small_roots[3], proof) == \
        "the first tree (6 leaves) is larger than the second (3)"
    assert proofs.check_consistency(6, 3, small_roots[6], small_roots[3], []).startswith("the first tree (6 leaves)")
    for first, second in [(-1, 3), (True, 3), (1, "3")]:
        assert proofs.check_consistency(first, second, small_roots[1], small_roots[3], proof) == \
            "tree sizes must be non-negative integers"


def test_given_a_consistency_proof_of_the_wrong_length_when_checked_then_it_is_refused(small, small_roots):
    get = small.reader(7)[0]
    proof = merkle.consistency_proof(6, 7, get)
    assert len(proof) == 3
    assert proofs.check_consistency(6, 7, small_roots[6], small_roots[7], [*proof, proof[0]]) == \
        "the proof has 4 hashes; from 6 to 7 leaves needs 3"
    assert proofs.check_consistency(6, 7, small_roots[6], small_roots[7], []) == \
        "the proof has 0 hashes; from 6 to 7 leaves needs 3"
    assert proofs.check_consistency(6, 7, small_roots[6], small_roots[7], [flip(proof[0]), *proof[1:]]) == \
        "the proof does not lead to the first root hash"


_SIZES = st.one_of(st.integers(-2, 40), st.booleans(), st.none(), st.floats(0, 40), st.text(max_size=2))
_HASHES = st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=40), st.none(), st.text(max_size=64))


@settings(max_examples=300, deadline=None)
@given(index=_SIZES, size=_SIZES, leaf=_HASHES, root=_HASHES, proof=st.lists(_HASHES, max_size=8))
def test_given_anything_as_an_inclusion_proof_when_checked_then_the_answer_is_a_reason_or_none_never_a_crash(
        index, size, leaf, root, proof):
    why = proofs.check_inclusion(leaf, index, size, proof, root)
    assert why is None or isinstance(why, str)
    if why is None:  # then the RFC's own algorithm, with the reference's own type checks, agrees
        assert rfc6962.verify_inclusion(leaf, index, size, proof, root)


@settings(max_examples=300, deadline=None)
@given(first=_SIZES, second=_SIZES, first_root=_HASHES, second_root=_HASHES, proof=st.lists(_HASHES, max_size=8))
def test_given_anything_as_a_consistency_proof_when_checked_then_the_answer_is_a_reason_or_none_never_a_crash(
        first, second, first_root, second_root, proof):
    why = proofs.check_consistency(first, second, first_root, second_root, proof)
    assert why is None or isinstance(why, str)
    if why is None and first != 0:  # from size 0 the reference refuses even the empty proof (see its docstring)
        assert rfc6962.verify_consistency(first, second, first_root, second_root, proof)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, SMALL), data=st.data())
def test_given_a_real_proof_with_hashes_added_removed_or_changed_when_checked_then_the_reference_agrees(
        small, small_roots, n, data):
    get = small.reader(n)[0]
    m = data.draw(st.integers(0, n - 1))
    proof = merkle.inclusion_proof(m, n, get)
    leaf = merkle.leaf_hash(SMALL_ENTRIES[m])
    changed = data.draw(st.lists(st.sampled_from([*proof, small_roots[n], leaf, bytes(32)]), max_size=len(proof) + 2))
    assert proofs.verify_inclusion(leaf, m, n, changed, small_roots[n]) == \
        rfc6962.verify_inclusion(leaf, m, n, changed, small_roots[n])
    first = data.draw(st.integers(1, n))
    consistency = merkle.consistency_proof(first, n, get)
    changed = data.draw(st.lists(st.sampled_from([*consistency, small_roots[first], small_roots[n], bytes(32)]),
                                 max_size=len(consistency) + 2))
    assert proofs.verify_consistency(first, n, small_roots[first], small_roots[n], changed) == \
        rfc6962.verify_consistency(first, n, small_roots[first], small_roots[n], changed)
