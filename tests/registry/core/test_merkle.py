"""RFC 9162 Merkle math: known answers from a naive reference, external CT vectors, and tamper checks."""

import functools
import hashlib
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.core.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MemoryStore,
    MissingNodeError,
    NodeId,
    TreeRangeError,
    consistency_node_ids,
    consistency_proof,
    inclusion_node_ids,
    inclusion_proof,
    leaf_hash,
    node_hash,
    perfect_nodes,
    root_from,
    root_node_ids,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from tests.registry.core import rfc9162_reference as ref

SMALL_SIZES = range(1, 65)
LARGE_SIZES = (1000, 1025)
MAX_SIZE = 5000

ENTRIES = [f"audit-entry-{i}".encode() for i in range(MAX_SIZE)]
LEAVES = [leaf_hash(entry) for entry in ENTRIES]
OTHER_HASH = hashlib.sha256(b"not in any tree").digest()


@functools.cache
def store_of(size: int) -> MemoryStore:
    """A store holding exactly ``size`` leaves, so any request for a later node comes back missing."""
    return MemoryStore(LEAVES[:size])


@functools.cache
def big_store() -> MemoryStore:
    return MemoryStore(LEAVES)


@functools.cache
def ref_root(size: int) -> bytes:
    return ref.mth(ENTRIES[:size])


@functools.cache
def ref_path(index: int, size: int) -> list[bytes]:
    return ref.path(index, ENTRIES[:size])


@functools.cache
def ref_proof(first: int, second: int) -> list[bytes]:
    return ref.proof(first, ENTRIES[:second])


def sample_positions(size: int) -> list[int]:
    """Both ends, both sides of every power of two, and an even spread, for sizes too big to sweep."""
    picks = {0, 1, size - 2, size - 1, *range(0, size, 97)}
    power = 1
    while power < size:
        picks |= {power - 1, power, power + 1}
        power *= 2
    return sorted(p for p in picks if 0 <= p < size)


def assert_inside(node_ids: Sequence[NodeId], size: int) -> None:
    """Every id names a perfect subtree already complete in a tree of ``size`` leaves."""
    for level, index in node_ids:
        assert level >= 0
        assert index >= 0
        assert (index + 1) << level <= size, f"node ({level}, {index}) reaches past leaf {size - 1}"


def flip_bit(digest: bytes, bit: int) -> bytes:
    bit %= 8 * len(digest)
    return digest[: bit // 8] + bytes([digest[bit // 8] ^ (1 << (bit % 8))]) + digest[bit // 8 + 1 :]


def path_length(index: int, size: int) -> int:
    """Length of PATH(index, D[size]), counted from the RFC's recursion."""
    if size == 1:
        return 0
    k = ref._largest_power_of_two_below(size)
    return 1 + (path_length(index, k) if index < k else path_length(index - k, size - k))


def proof_length(first: int, second: int, whole: bool = True) -> int:
    """Length of PROOF(first, D[second]), counted from the RFC's SUBPROOF recursion."""
    if first == second:
        return 0 if whole else 1
    k = ref._largest_power_of_two_below(second)
    if first <= k:
        return 1 + proof_length(first, k, whole)
    return 1 + proof_length(first - k, second - k, False)


# --------------------------------------------------------------------------------------------------
# External vectors: the RFC 6962 test tree from the Certificate Transparency test data, as published in
# transparency-dev/merkle (testonly/constants.go, proof/verify_test.go). Leaf inputs, then the root at
# every size; proofs are (leaf index or first size, tree size, hashes).

CT_LEAF_INPUTS = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    bytes.fromhex(h)
    for h in (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
CT_INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CT_CONSISTENCY = [
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
CT_LEAVES = [leaf_hash(data) for data in CT_LEAF_INPUTS]


class TestHashing:
    def test_empty_root_is_sha256_of_the_empty_string(self) -> None:
        assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    def test_leaf_hash_prefixes_a_zero_byte(self) -> None:
        assert leaf_hash(b"entry") == hashlib.sha256(b"\x00entry").digest()

    def test_node_hash_prefixes_a_one_byte_then_left_then_right(self) -> None:
        left, right = LEAVES[0], LEAVES[1]
        assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
        assert node_hash(left, right) != node_hash(right, left)


class TestCertificateTransparencyVectors:
    @pytest.mark.parametrize("size", range(9))
    def test_every_root_of_the_rfc6962_test_tree_matches(self, size: int) -> None:
        assert root_of(CT_LEAVES[:size]) == CT_ROOTS[size]
        assert MemoryStore(CT_LEAVES[:size]).root() == CT_ROOTS[size]
        assert ref.mth(CT_LEAF_INPUTS[:size]) == CT_ROOTS[size]

    @pytest.mark.parametrize(("index", "size", "expected"), CT_INCLUSION)
    def test_published_inclusion_proofs_are_built_and_verified(
        self, index: int, size: int, expected: list[str]
    ) -> None:
        proof = MemoryStore(CT_LEAVES[:size]).inclusion_proof(index)
        assert [digest.hex() for digest in proof] == expected
        assert verify_inclusion(CT_LEAVES[index], index, size, proof, CT_ROOTS[size])

    @pytest.mark.parametrize(("first", "second", "expected"), CT_CONSISTENCY)
    def test_published_consistency_proofs_are_built_and_verified(
        self, first: int, second: int, expected: list[str]
    ) -> None:
        proof = MemoryStore(CT_LEAVES[:second]).consistency_proof(first)
        assert [digest.hex() for digest in proof] == expected
        assert verify_consistency(first, second, CT_ROOTS[first], CT_ROOTS[second], proof)


class TestRootOf:
    def test_empty_tree_has_the_empty_root(self) -> None:
        assert root_of([]) == EMPTY_ROOT

    @pytest.mark.parametrize("size", [*SMALL_SIZES, *LARGE_SIZES, 4097])
    def test_root_equals_the_reference_mth(self, size: int) -> None:
        assert root_of(LEAVES[:size]) == ref_root(size)

    def test_root_depends_on_leaf_order(self) -> None:
        assert root_of([LEAVES[1], LEAVES[0], LEAVES[2]]) != root_of(LEAVES[:3])


class TestRootNodeIds:
    def test_empty_tree_needs_no_nodes_and_has_the_empty_root(self) -> None:
        assert root_node_ids(0) == []
        assert root_from(0, {}) == EMPTY_ROOT

    @pytest.mark.parametrize("size", [*SMALL_SIZES, *LARGE_SIZES])
    def test_ids_are_one_complete_node_per_set_bit_and_fold_to_the_reference_root(self, size: int) -> None:
        ids = root_node_ids(size)
        assert_inside(ids, size)
        assert len(ids) == size.bit_count()
        assert sum(1 << level for level, _ in ids) == size
        assert root_from(size, store_of(size).get_nodes(ids)) == ref_root(size)

    @pytest.mark.parametrize("size", [-1, 1.5, "3"])
    def test_a_size_that_is_not_a_count_is_refused(self, size: object) -> None:
        with pytest.raises(TreeRangeError) as raised:
            root_node_ids(size)  # type: ignore[arg-type]
        assert raised.value.size == size

    def test_a_missing_node_is_named(self) -> None:
        nodes = store_of(7).get_nodes(root_node_ids(7))
        del nodes[1, 2]
        with pytest.raises(MissingNodeError) as raised:
            root_from(7, nodes)
        assert raised.value.node_ids == ((1, 2),)


class TestInclusionProof:
    @pytest.mark.parametrize("size", SMALL_SIZES)
    def test_every_proof_equals_the_reference_path(self, size: int) -> None:
        for index in range(size):
            ids = inclusion_node_ids(index, size)
            assert_inside(ids, size)
            assert len(ids) <= 2 * size.bit_length()
            proof = inclusion_proof(index, size, store_of(size).get_nodes(ids))
            assert proof == ref_path(index, size), f"index {index}"

    @pytest.mark.parametrize("size", LARGE_SIZES)
    def test_proofs_in_larger_trees_equal_the_reference_path(self, size: int) -> None:
        for index in sample_positions(size):
            ids = inclusion_node_ids(index, size)
            assert_inside(ids, size)
            assert len(ids) <= 2 * size.bit_length()
            assert store_of(size).inclusion_proof(index) == ref_path(index, size)

    @pytest.mark.parametrize(("index", "size"), [(0, 0), (5, 5), (6, 5), (-1, 5), (True, 5)])
    def test_an_index_outside_the_tree_is_refused_with_the_numbers(self, index: int, size: int) -> None:
        with pytest.raises(TreeRangeError, match="outside a tree") as raised:
            inclusion_node_ids(index, size)
        assert isinstance(raised.value, ValueError)
        assert (raised.value.index, raised.value.size) == (index, size)
        with pytest.raises(TreeRangeError):
            inclusion_proof(index, size, {})

    def test_a_missing_node_is_named_rather_than_a_wrong_proof_returned(self) -> None:
        ids = inclusion_node_ids(3, 13)
        nodes = store_of(13).get_nodes(ids)
        del nodes[ids[-1]]
        with pytest.raises(MissingNodeError) as raised:
            inclusion_proof(3, 13, nodes)
        assert raised.value.node_ids == (ids[-1],)


class TestConsistencyProof:
    @pytest.mark.parametrize("second", SMALL_SIZES)
    def test_every_proof_equals_the_reference_proof(self, second: int) -> None:
        for first in range(1, second):
            ids = consistency_node_ids(first, second)
            assert_inside(ids, second)
            assert len(ids) <= 2 * second.bit_length()
            proof = consistency_proof(first, second, store_of(second).get_nodes(ids))
            assert proof == ref_proof(first, second), f"first {first}"

    @pytest.mark.parametrize("second", LARGE_SIZES)
    def test_proofs_in_larger_trees_equal_the_reference_proof(self, second: int) -> None:
        for first in sample_positions(second)[1:]:
            ids = consistency_node_ids(first, second)
            assert_inside(ids, second)
            assert len(ids) <= 2 * second.bit_length()
            assert store_of(second).consistency_proof(first) == ref_proof(first, second)

    @pytest.mark.parametrize("size", [1, 2, 7, 64])
    def test_a_tree_is_consistent_with_itself_by_an_empty_proof(self, size: int) -> None:
        assert consistency_node_ids(size, size) == []
        assert consistency_proof(size, size, {}) == []

    @pytest.mark.parametrize(("first", "second"), [(0, 5), (0, 0), (6, 5), (-1, 5), (2, -1)])
    def test_sizes_that_are_not_a_prefix_and_a_tree_are_refused(self, first: int, second: int) -> None:
        with pytest.raises(TreeRangeError, match="no consistency proof") as raised:
            consistency_node_ids(first, second)
        assert (raised.value.first, raised.value.second) == (first, second)
        with pytest.raises(TreeRangeError):
            consistency_proof(first, second, {})


class TestVerifyInclusion:
    @pytest.mark.parametrize("size", SMALL_SIZES)
    def test_reference_proofs_verify_and_any_flipped_bit_is_rejected(self, size: int) -> None:
        root = ref_root(size)
        for index in range(size):
            proof = ref_path(index, size)
            assert verify_inclusion(LEAVES[index], index, size, proof, root)
            for position, element in enumerate(proof):
                tampered = [*proof[:position], flip_bit(element, 37 * position + index), *proof[position + 1 :]]
                assert not verify_inclusion(LEAVES[index], index, size, tampered, root)
            assert not verify_inclusion(flip_bit(LEAVES[index], 7), index, size, proof, root)
            assert not verify_inclusion(LEAVES[index], index, size, proof, flip_bit(root, 7))

    @pytest.mark.parametrize("size", range(1, 33))
    def test_a_proof_for_one_index_proves_no_other(self, size: int) -> None:
        root = ref_root(size)
        for index in range(size):
            proof = ref_path(index, size)
            for other in range(-1, size + 1):
                if other != index:
                    assert not verify_inclusion(LEAVES[index], other, size, proof, root), (index, other)

    @pytest.mark.parametrize("size", range(1, 33))
    def test_a_wrong_size_that_changes_the_proof_shape_is_rejected(self, size: int) -> None:
        root = ref_root(size)
        for index in range(size):
            proof = ref_path(index, size)
            for other in range(2 * size + 1):
                if other <= index or path_length(index, other) != len(proof):
                    assert not verify_inclusion(LEAVES[index], index, other, proof, root), (index, other)

    @pytest.mark.parametrize("size", SMALL_SIZES)
    def test_truncated_or_extended_proofs_are_rejected(self, size: int) -> None:
        root = ref_root(size)
        for index in range(size):
            proof = ref_path(index, size)
            leaf = LEAVES[index]
            for forged in ([*proof, root], [*proof, OTHER_HASH], [root, *proof], [leaf, *proof]):
                assert not verify_inclusion(leaf, index, size, forged, root)
            if proof:
                for forged in (proof[:-1], proof[1:], [*proof, proof[-1]]):
                    assert not verify_inclusion(leaf, index, size, forged, root)

    def test_a_single_leaf_tree_needs_an_empty_proof(self) -> None:
        assert verify_inclusion(LEAVES[0], 0, 1, [], LEAVES[0])
        assert not verify_inclusion(LEAVES[0], 0, 1, [LEAVES[0]], node_hash(LEAVES[0], LEAVES[0]))

    @pytest.mark.parametrize(
        ("leaf", "index", "size", "proof", "root"),
        [
            pytest.param(LEAVES[0], 0, 0, [], EMPTY_ROOT, id="empty-tree"),
            pytest.param(LEAVES[0], 1, 1, [], LEAVES[0], id="index-equals-size"),
            pytest.param(LEAVES[0], -1, 1, [], LEAVES[0], id="negative-index"),
            pytest.param(LEAVES[0], 0, -1, [], LEAVES[0], id="negative-size"),
            pytest.param(LEAVES[0], "0", 1, [], LEAVES[0], id="index-not-an-int"),
            pytest.param(LEAVES[0], 0, 1.0, [], LEAVES[0], id="size-not-an-int"),
            pytest.param(LEAVES[0][:31], 0, 1, [], LEAVES[0][:31], id="short-leaf-and-root"),
            pytest.param(LEAVES[0] + b"\x00", 0, 1, [], LEAVES[0] + b"\x00", id="long-leaf-and-root"),
            pytest.param(LEAVES[0], 0, 2, [LEAVES[1][:31]], ref_root(2), id="short-element"),
            pytest.param(LEAVES[0], 0, 2, [LEAVES[1].hex()], ref_root(2), id="element-not-bytes"),
            pytest.param(LEAVES[0], 0, 2, LEAVES[1], ref_root(2), id="proof-is-bytes"),
            pytest.param(LEAVES[0], 0, 2, None, ref_root(2), id="proof-is-none"),
            pytest.param(None, 0, 1, [], LEAVES[0], id="leaf-is-none"),
        ],
    )
    def test_malformed_input_is_rejected_without_raising(
        self, leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes
    ) -> None:
        assert verify_inclusion(leaf, index, size, proof, root) is False


class TestVerifyConsistency:
    @pytest.mark.parametrize("second", SMALL_SIZES)
    def test_reference_proofs_verify_and_any_flipped_bit_is_rejected(self, second: int) -> None:
        second_root = ref_root(second)
        for first in range(1, second):
            first_root = ref_root(first)
            proof = ref_proof(first, second)
            assert verify_consistency(first, second, first_root, second_root, proof)
            for position, element in enumerate(proof):
                tampered = [*proof[:position], flip_bit(element, 37 * position + first), *proof[position + 1 :]]
                assert not verify_consistency(first, second, first_root, second_root, tampered)

    @pytest.mark.parametrize("second", SMALL_SIZES)
    def test_wrong_roots_are_rejected(self, second: int) -> None:
        second_root = ref_root(second)
        for first in range(1, second):
            first_root = ref_root(first)
            proof = ref_proof(first, second)
            assert not verify_consistency(first, second, flip_bit(first_root, 3), second_root, proof)
            assert not verify_consistency(first, second, first_root, flip_bit(second_root, 3), proof)
            assert not verify_consistency(first, second, second_root, first_root, proof)

    @pytest.mark.parametrize("second", SMALL_SIZES)
    def test_truncated_or_extended_proofs_are_rejected(self, second: int) -> None:
        second_root = ref_root(second)
        for first in range(1, second):
            first_root = ref_root(first)
            proof = ref_proof(first, second)
            forgeries = [
                proof[:-1],
                proof[1:],
                [*proof, second_root],
                [*proof, OTHER_HASH],
                [first_root, *proof],
                [proof[0], *proof],
                [],
            ]
            for forged in forgeries:
                assert not verify_consistency(first, second, first_root, second_root, forged)

    @pytest.mark.parametrize("second", range(2, 33))
    def test_wrong_sizes_that_change_the_proof_shape_are_rejected(self, second: int) -> None:
        second_root = ref_root(second)
        for first in range(1, second):
            first_root = ref_root(first)
            proof = ref_proof(first, second)
            for other in range(2 * second + 1):
                if other == first:
                    continue
                if not 0 < other < second or proof_length(other, second) != len(proof):
                    assert not verify_consistency(other, second, first_root, second_root, proof)
            for other in range(2 * second + 1):
                if other == second:
                    continue
                if not first < other or proof_length(first, other) != len(proof):
                    assert not verify_consistency(first, other, first_root, second_root, proof)

    def test_equal_sizes_are_consistent_only_with_equal_roots_and_an_empty_proof(self) -> None:
        root = ref_root(5)
        assert verify_consistency(5, 5, root, root, [])
        assert not verify_consistency(5, 5, root, ref_root(6), [])
        assert not verify_consistency(5, 5, root, root, [root])

    @pytest.mark.parametrize(
        ("first", "second", "first_root", "second_root", "proof"),
        [
            pytest.param(0, 0, EMPTY_ROOT, EMPTY_ROOT, [], id="both-empty"),
            pytest.param(0, 3, EMPTY_ROOT, ref_root(3), [], id="from-the-empty-tree"),
            pytest.param(3, 2, ref_root(3), ref_root(2), [], id="first-after-second"),
            pytest.param(-1, 2, ref_root(1), ref_root(2), [LEAVES[1]], id="negative-first"),
            pytest.param(1, 2, ref_root(1)[:31], ref_root(2), [LEAVES[1]], id="short-first-root"),
            pytest.param(1, 2, ref_root(1), None, [LEAVES[1]], id="second-root-none"),
            pytest.param(1, 2, ref_root(1), ref_root(2), [LEAVES[1] + b"!"], id="long-element"),
            pytest.param(1, 2, ref_root(1), ref_root(2), [None], id="element-none"),
            pytest.param(1, 2, ref_root(1), ref_root(2), LEAVES[1], id="proof-is-bytes"),
            pytest.param(1, 2, ref_root(1), ref_root(2), 7, id="proof-is-an-int"),
            pytest.param(1, "2", ref_root(1), ref_root(2), [LEAVES[1]], id="size-not-an-int"),
        ],
    )
    def test_malformed_input_is_rejected_without_raising(
        self, first: int, second: int, first_root: bytes, second_root: bytes, proof: list[bytes]
    ) -> None:
        assert verify_consistency(first, second, first_root, second_root, proof) is False


def completed_by(size: int) -> list[NodeId]:
    """The perfect nodes whose last leaf is leaf ``size - 1``: those appending it must report."""
    ids = []
    level = 0
    while size % (1 << level) == 0:
        ids.append((level, (size >> level) - 1))
        level += 1
    return ids


class TestCompactRange:
    def test_a_new_range_is_the_empty_tree(self) -> None:
        compact = CompactRange()
        assert compact.size == 0
        assert compact.root() == EMPTY_ROOT

    def test_root_after_every_append_equals_the_reference_root(self) -> None:
        compact = CompactRange()
        for size in SMALL_SIZES:
            compact.append(LEAVES[size - 1])
            assert compact.size == size
            assert compact.root() == ref_root(size), f"size {size}"

    def test_append_reports_exactly_the_nodes_it_completes_with_their_hashes(self) -> None:
        compact = CompactRange()
        for size in SMALL_SIZES:
            completed = compact.append(LEAVES[size - 1])
            assert [node.node_id for node in completed] == completed_by(size)
            for node in completed:
                begin = node.index << node.level
                assert node.hash == ref.mth(ENTRIES[begin : begin + (1 << node.level)])

    @pytest.mark.parametrize("size", range(65))
    def test_from_store_resumes_with_one_fetch_of_complete_nodes(self, size: int) -> None:
        calls: list[Sequence[NodeId]] = []

        def get_nodes(node_ids: Sequence[NodeId]) -> Mapping[NodeId, bytes]:
            calls.append(list(node_ids))
            return store_of(size).get_nodes(node_ids)

        resumed = CompactRange.from_store(size, get_nodes)
        assert len(calls) <= 1
        for node_ids in calls:
            assert_inside(node_ids, size)
        assert resumed.size == size
        assert resumed.root() == ref_root(size)

        continuous = CompactRange()
        continuous.extend(LEAVES[:size])
        for next_size in range(size + 1, 65):
            assert resumed.append(LEAVES[next_size - 1]) == continuous.append(LEAVES[next_size - 1])
            assert resumed.root() == ref_root(next_size)

    def test_from_store_names_nodes_the_store_lost(self) -> None:
        def lossy(node_ids: Sequence[NodeId]) -> Mapping[NodeId, bytes]:
            return {node_id: OTHER_HASH for node_id in node_ids if node_id != (0, 12)}

        with pytest.raises(MissingNodeError) as raised:
            CompactRange.from_store(13, lossy)
        assert raised.value.node_ids == ((0, 12),)

    def test_from_store_refuses_a_negative_size(self) -> None:
        with pytest.raises(TreeRangeError):
            CompactRange.from_store(-1, store_of(1).get_nodes)

    @pytest.mark.parametrize("bad", [b"", LEAVES[0][:31], LEAVES[0] + b"\x00", LEAVES[0].hex()])
    def test_append_refuses_anything_but_a_32_byte_hash_and_stays_unchanged(self, bad: bytes) -> None:
        compact = CompactRange()
        compact.extend(LEAVES[:3])
        with pytest.raises(ValueError, match="32 bytes"):
            compact.append(bad)
        assert compact.size == 3
        assert compact.root() == ref_root(3)

    def test_extend_reports_the_nodes_of_every_leaf_in_order(self) -> None:
        one_by_one = CompactRange()
        expected = [node for leaf in LEAVES[:11] for node in one_by_one.append(leaf)]
        assert CompactRange().extend(LEAVES[:11]) == expected

    @settings(max_examples=60, deadline=None)
    @given(batches=st.lists(st.integers(0, 40), min_size=1, max_size=6))
    def test_extend_rows_completes_the_same_nodes_as_appending_one_by_one(self, batches: list[int]) -> None:
        batched, one_by_one = CompactRange(), CompactRange()
        for count in batches:
            leaves = LEAVES[batched.size : batched.size + count]
            rows = batched.extend_rows(leaves)
            expected = [(node.level, node.index, node.hash) for leaf in leaves for node in one_by_one.append(leaf)]
            assert sorted(rows) == sorted(expected)
            assert len(set(rows)) == len(rows)
            assert batched.size == one_by_one.size
            assert batched.root() == one_by_one.root() == ref_root(batched.size)
        # The state left behind is the compact range itself: resuming from it appends like a fresh range.
        assert batched.append(LEAVES[batched.size]) == one_by_one.append(LEAVES[one_by_one.size])

    def test_extend_rows_refuses_a_bad_leaf_and_stays_unchanged(self) -> None:
        compact = CompactRange()
        compact.extend_rows(LEAVES[:5])
        with pytest.raises(ValueError, match="32 bytes"):
            compact.extend_rows([LEAVES[5], LEAVES[6][:31]])
        assert compact.size == 5
        assert compact.root() == ref_root(5)

    def test_a_copy_grows_independently(self) -> None:
        compact = CompactRange()
        compact.extend(LEAVES[:5])
        twin = compact.copy()
        twin.append(LEAVES[5])
        assert (compact.size, compact.root()) == (5, ref_root(5))
        assert (twin.size, twin.root()) == (6, ref_root(6))


class TestPerfectNodes:
    @pytest.mark.parametrize("size", [0, 1, 2, 3, 7, 8, 13, 64])
    def test_yields_every_node_a_complete_store_holds(self, size: int) -> None:
        nodes = list(perfect_nodes(LEAVES[:size]))
        assert sorted(nodes) == sorted(CompactRange().extend(LEAVES[:size]))
        assert_inside([node.node_id for node in nodes], size)
        for node in nodes:
            begin = node.index << node.level
            assert node.hash == ref.mth(ENTRIES[begin : begin + (1 << node.level)])


class TestMemoryStore:
    def test_questions_about_sizes_beyond_the_log_are_refused(self) -> None:
        store = store_of(10)
        with pytest.raises(TreeRangeError, match="beyond"):
            store.root(11)
        with pytest.raises(TreeRangeError, match="beyond"):
            store.inclusion_proof(0, 11)
        with pytest.raises(TreeRangeError, match="beyond"):
            store.consistency_proof(3, 11)
        with pytest.raises(TreeRangeError):
            store.root(-1)

    def test_defaults_answer_for_the_whole_log(self) -> None:
        store = store_of(10)
        assert store.size == 10
        assert store.root() == store.root(10) == ref_root(10)
        assert store.inclusion_proof(4) == store.inclusion_proof(4, 10)
        assert store.consistency_proof(4) == store.consistency_proof(4, 10)

    def test_get_nodes_leaves_out_what_it_does_not_hold(self) -> None:
        assert store_of(2).get_nodes([(0, 0), (0, 2), (1, 0), (1, 1)]) == {
            (0, 0): LEAVES[0],
            (1, 0): ref_root(2),
        }


sizes_and_positions = st.integers(1, MAX_SIZE).flatmap(
    lambda size: st.tuples(st.just(size), st.integers(0, size - 1), st.integers(1, size))
)


class TestRandomLargeTrees:
    """Sizes up to 5000, drawn at random: the same answers as the reference, through the stored-node path."""

    @settings(max_examples=25, deadline=None, database=None)
    @given(sizes_and_positions)
    def test_roots_and_proofs_equal_the_reference_and_verify(self, case: tuple[int, int, int]) -> None:
        size, index, first = case
        entries = ENTRIES[:size]
        root = ref.mth(entries)
        store = big_store()
        assert root_of(LEAVES[:size]) == root
        assert store.root(size) == root

        inclusion = store.inclusion_proof(index, size)
        assert_inside(inclusion_node_ids(index, size), size)
        assert inclusion == ref.path(index, entries)
        assert verify_inclusion(LEAVES[index], index, size, inclusion, root)

        consistency = store.consistency_proof(first, size)
        assert_inside(consistency_node_ids(first, size), size)
        assert consistency == (ref.proof(first, entries) if first < size else [])
        assert verify_consistency(first, size, ref_root(first), root, consistency)

    @settings(max_examples=40, deadline=None, database=None)
    @given(sizes_and_positions)
    def test_a_range_resumed_from_the_store_grows_to_the_reference_root(self, case: tuple[int, int, int]) -> None:
        size, _, first = case
        resumed = CompactRange.from_store(first, big_store().get_nodes)
        completed = resumed.extend(LEAVES[first:size])
        assert resumed.root() == root_of(LEAVES[:size])
        ids = [node.node_id for node in completed]
        assert big_store().get_nodes(ids) == {node.node_id: node.hash for node in completed}
