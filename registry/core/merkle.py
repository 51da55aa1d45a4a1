"""RFC 9162 (Certificate Transparency v2) Merkle tree math for the node's audit log.

Pure functions and small value classes: no I/O, no database. The audit store, the API, the witness and
``rcc-node audit verify`` share this one implementation, so one set of known-answer tests covers them all.

Hashing is RFC 9162 §2.1 exactly: a leaf is ``SHA-256(0x00 || data)``, an interior node
``SHA-256(0x01 || left || right)``, and a tree of n > 1 leaves splits at the largest power of two smaller
than n. The empty tree's hash is ``SHA-256("")``.

**Addressing stored nodes.** The store keeps the hash of every *perfect* (complete) subtree, addressed by
``(level, index)``: level 0 holds the leaf hashes, and node ``(level, index)`` covers the leaves
``[index * 2**level, (index + 1) * 2**level)``. Such a node never changes once its last leaf is appended,
so it can be written once and never updated. Every hash an RFC 9162 proof or tree head needs is the hash
of a subtree ``[begin, end)`` whose start is a multiple of the power of two at or above its width; that
subtree is the right-to-left fold of the perfect nodes given by the binary digits of ``end - begin``. So any
tree head, inclusion proof or consistency proof for a tree of size n needs only O(log n) stored nodes,
none of which reaches past leaf n - 1 (nodes on the ragged right edge are combined on the fly).

Each question comes as a pair: ``*_node_ids`` names the perfect nodes to fetch (one batched query), and
the function of the same name assembles the answer from the ``{(level, index): hash}`` mapping fetched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_sha256 = hashlib.sha256

NodeId: TypeAlias = tuple[int, int]
"""``(level, index)`` of a perfect subtree: it covers leaves ``[index << level, (index + 1) << level)``."""

GetNodes: TypeAlias = Callable[[Sequence[NodeId]], Mapping[NodeId, bytes]]
"""Batched fetch from a node store; may omit ids it does not hold (the caller reports them)."""


@dataclass(frozen=True, slots=True, order=True)
class Node:
    """A perfect subtree's hash with its address, as the store persists it."""

    level: int
    index: int
    hash: bytes

    @property
    def node_id(self) -> NodeId:
        """The ``(level, index)`` key the store files it under."""
        return (self.level, self.index)


class TreeRangeError(ValueError):
    """A proof or tree head was asked for sizes or indices that do not describe a tree (the API's 422).

    The offending numbers stay available as attributes so the caller can report them field by field.
    """

    def __init__(
        self,
        message: str,
        *,
        size: int | None = None,
        index: int | None = None,
        first: int | None = None,
        second: int | None = None,
    ) -> None:
        super().__init__(message)
        self.size = size
        self.index = index
        self.first = first
        self.second = second


class MissingNodeError(LookupError):
    """The node store lacks perfect nodes that a complete store of that size must hold.

    This is a storage fault (lost or unwritten nodes), not bad input: it should surface as a server error.
    """

    def __init__(self, node_ids: Sequence[NodeId]) -> None:
        self.node_ids = tuple(node_ids)
        shown = ", ".join(f"({level}, {index})" for level, index in self.node_ids[:8])
        more = "" if len(self.node_ids) <= 8 else f" and {len(self.node_ids) - 8} more"
        super().__init__(f"Merkle node store is missing {len(self.node_ids)} node(s): {shown}{more}")


def leaf_hash(data: bytes) -> bytes:
    """Hash one log entry's bytes; the 0x00 prefix keeps a leaf from ever passing for an interior node."""
    return _sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash two children; the 0x01 prefix is RFC 9162's domain separation from leaves."""
    return _sha256(_NODE_PREFIX + left + right).digest()


# --------------------------------------------------------------------------------------------------
# Which stored nodes a question needs


def _split(width: int) -> int:
    """The largest power of two strictly smaller than ``width`` (``width`` >= 2): RFC 9162's split point."""
    return 1 << ((width - 1).bit_length() - 1)


def _set_bits_descending(size: int) -> list[int]:
    """The levels of a compact range of ``size`` leaves, largest subtree first (the set bits of ``size``)."""
    return [level for level in range(size.bit_length() - 1, -1, -1) if size >> level & 1]


def _subtree_ids(begin: int, end: int) -> list[NodeId]:
    """Perfect nodes, left to right, whose right fold is the RFC hash of the aligned subtree [begin, end)."""
    ids: list[NodeId] = []
    while begin < end:
        level = (end - begin).bit_length() - 1
        ids.append((level, begin >> level))
        begin += 1 << level
    return ids


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The subtrees whose hashes form PATH(index, D[size]), in proof order (leaf's sibling first)."""
    ranges: list[tuple[int, int]] = []
    begin, end = 0, size
    while end - begin > 1:
        middle = begin + _split(end - begin)
        if index < middle:
            ranges.append((middle, end))
            end = middle
        else:
            ranges.append((begin, middle))
            begin = middle
    ranges.reverse()
    return ranges


def _consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """The subtrees whose hashes form PROOF(first, D[second]) (RFC 9162 SUBPROOF), in proof order."""
    ranges: list[tuple[int, int]] = []
    begin, end = 0, second
    # RFC 9162's flag b: while it holds, the old tree is a left part of the subtree and its root is known
    # to the verifier, so it is left out of the proof.
    whole_old_tree = True
    while first != end:
        middle = begin + _split(end - begin)
        if first <= middle:
            ranges.append((middle, end))
            end = middle
        else:
            ranges.append((begin, middle))
            begin = middle
            whole_old_tree = False
    if not whole_old_tree:
        ranges.append((begin, end))
    ranges.reverse()
    return ranges


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_size(size: int) -> None:
    if not _is_count(size):
        raise TreeRangeError(f"tree size must be a non-negative integer, not {size!r}", size=size)


def _check_inclusion(index: int, size: int) -> None:
    _check_size(size)
    if not _is_count(index) or index >= size:
        raise TreeRangeError(
            f"leaf index {index!r} is outside a tree of size {size} (need 0 <= index < size)",
            index=index,
            size=size,
        )


def _check_consistency(first: int, second: int) -> None:
    if not _is_count(first) or not _is_count(second) or first == 0 or first > second:
        raise TreeRangeError(
            f"no consistency proof from size {first!r} to size {second!r} (need 0 < first <= second)",
            first=first,
            second=second,
        )


def _ids_of(ranges: Iterable[tuple[int, int]]) -> list[NodeId]:
    return [node_id for begin, end in ranges for node_id in _subtree_ids(begin, end)]


def root_node_ids(size: int) -> list[NodeId]:
    """Perfect nodes to fetch for the root of a tree of ``size``: one per set bit of ``size``, left to right.

    They are also a compact range's whole state, so ``CompactRange.from_store`` fetches the same ids.
    """
    _check_size(size)
    return _subtree_ids(0, size)


def inclusion_node_ids(index: int, size: int) -> list[NodeId]:
    """Perfect nodes to fetch for the inclusion proof of leaf ``index`` in a tree of ``size``: O(log size)."""
    _check_inclusion(index, size)
    return _ids_of(_inclusion_ranges(index, size))


def consistency_node_ids(first: int, second: int) -> list[NodeId]:
    """Perfect nodes to fetch for the consistency proof from size ``first`` to ``second`` (O(log second))."""
    _check_consistency(first, second)
    return _ids_of(_consistency_ranges(first, second))


# --------------------------------------------------------------------------------------------------
# Assembling answers from fetched nodes


def _hashes_of(ranges: Sequence[tuple[int, int]], nodes: Mapping[NodeId, bytes]) -> list[bytes]:
    """Each range's RFC hash, folded from stored perfect nodes; every missing node is named at once."""
    per_range = [_subtree_ids(begin, end) for begin, end in ranges]
    missing = [node_id for ids in per_range for node_id in ids if node_id not in nodes]
    if missing:
        raise MissingNodeError(missing)
    hashes: list[bytes] = []
    for ids in per_range:
        acc = nodes[ids[-1]]
        for node_id in reversed(ids[:-1]):
            acc = node_hash(nodes[node_id], acc)
        hashes.append(acc)
    return hashes


def root_from(size: int, nodes: Mapping[NodeId, bytes]) -> bytes:
    """The root of a tree of ``size`` from the nodes named by ``root_node_ids(size)``."""
    _check_size(size)
    if size == 0:
        return EMPTY_ROOT
    return _hashes_of([(0, size)], nodes)[0]


def inclusion_proof(index: int, size: int, nodes: Mapping[NodeId, bytes]) -> list[bytes]:
    """RFC 9162 PATH(index, D[size]) from the nodes named by ``inclusion_node_ids(index, size)``."""
    _check_inclusion(index, size)
    return _hashes_of(_inclusion_ranges(index, size), nodes)


def consistency_proof(first: int, second: int, nodes: Mapping[NodeId, bytes]) -> list[bytes]:
    """RFC 9162 PROOF(first, D[second]) from the nodes named by ``consistency_node_ids(first, second)``.

    RFC 9162 defines the proof for 0 < first < second; for ``first == second`` it is empty, which
    ``verify_consistency`` accepts when the two roots are equal.
    """
    _check_consistency(first, second)
    return _hashes_of(_consistency_ranges(first, second), nodes)


# --------------------------------------------------------------------------------------------------
# Verification (RFC 9162 §2.1.3.2 and §2.1.4.2), for peers' proofs: never raises


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _proof_hashes(proof: object) -> list[bytes] | None:
    """The proof as a list of well-formed hashes, or None when it is anything else."""
    if isinstance(proof, bytes | bytearray | str) or not isinstance(proof, Sequence):
        return None
    elements = list(proof)
    if not all(_is_hash(element) for element in elements):
        return None
    return elements


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Whether ``proof`` shows leaf ``index`` with ``leaf_hash`` in the tree of ``size`` with ``root``.

    RFC 9162 §2.1.3.2 step by step, after checking shapes (hash lengths, 0 <= index < size); malformed input
    gives False, never an exception, because proofs arrive from peers. The size is bound only through the
    root, so take both from the same signed tree head.
    """
    elements = _proof_hashes(proof)
    if elements is None or not (_is_hash(leaf_hash) and _is_hash(root)):
        return False
    if not (_is_count(index) and _is_count(size)) or index >= size:
        return False
    fn, sn = index, size - 1
    r = leaf_hash
    for p in elements:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]) -> bool:
    """Whether ``proof`` shows the tree of ``second`` leaves extends the tree of ``first`` leaves unchanged.

    RFC 9162 §2.1.4.2 step by step for 0 < first < second. Two cases the RFC leaves undefined are decided
    as a witness needs them: ``first == second`` holds exactly when the proof is empty and the roots are
    equal (a peer whose log has not grown must show the same root), and ``first == 0`` is refused, since
    an empty tree proves nothing. Malformed input gives False, never an exception.
    """
    elements = _proof_hashes(proof)
    if elements is None or not (_is_hash(first_root) and _is_hash(second_root)):
        return False
    if not (_is_count(first) and _is_count(second)) or first == 0 or first > second:
        return False
    if first == second:
        return not elements and first_root == second_root
    if not elements:
        return False
    if first & (first - 1) == 0:
        elements.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = elements[0]
    for c in elements[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


# --------------------------------------------------------------------------------------------------
# Whole trees, in one linear pass


def _pair_up(level: Sequence[bytes]) -> list[bytes]:
    """Hash neighbours pairwise (an odd last node is left out): one level up, inlined for speed."""
    prefix, sha256 = _NODE_PREFIX, _sha256
    return [sha256(prefix + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """The root of the tree of ``leaf_hashes``, bottom-up in one linear pass (no recursion, no store).

    Pairing neighbours level by level and carrying an odd last node up unchanged builds exactly RFC 9162's
    tree, whose left part is always the largest perfect subtree. This is what ``audit verify`` uses to
    recompute a whole log: about n hash calls, no per-leaf Python objects beyond one list per level.
    """
    level = list(leaf_hashes)
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        paired = _pair_up(level)
        if len(level) & 1:
            paired.append(level[-1])
        level = paired
    return level[0]


def perfect_nodes(leaf_hashes: Sequence[bytes]) -> Iterator[Node]:
    """Every perfect node of the tree of ``leaf_hashes``, level by level: what a complete store holds.

    Lets ``audit verify`` check a node table against the entries in one pass, or rebuild it.
    """
    level = list(leaf_hashes)
    height = 0
    while level:
        for index, digest in enumerate(level):
            yield Node(height, index, digest)
        level = _pair_up(level)
        height += 1


# --------------------------------------------------------------------------------------------------
# Appending


class CompactRange:
    """The O(log n) state that extends a log of n leaves: the perfect nodes on the tree's left edge.

    One hash per set bit of n (largest subtree first). Appending a leaf merges equal-sized subtrees as
    a binary counter carries, and reports every node it completes so the store can write it once.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []

    @classmethod
    def from_store(cls, size: int, get_nodes: GetNodes) -> CompactRange:
        """Resume a log of ``size`` leaves from its stored nodes, in one batched fetch.

        A restarted node reads O(log size) hashes instead of rereading every leaf.
        """
        ids = root_node_ids(size)
        found = get_nodes(ids) if ids else {}
        missing = [node_id for node_id in ids if node_id not in found]
        if missing:
            raise MissingNodeError(missing)
        compact = cls()
        compact._size = size
        compact._hashes = [found[node_id] for node_id in ids]
        return compact

    @property
    def size(self) -> int:
        """How many leaves the range covers."""
        return self._size

    def copy(self) -> CompactRange:
        """An independent copy, so a sequencer can append a batch and keep it only once it is committed."""
        twin = CompactRange()
        twin._size = self._size
        twin._hashes = list(self._hashes)
        return twin

    def append(self, leaf_hash: bytes) -> list[Node]:
        """Add one leaf; return the nodes it completes, the leaf itself first (level 0), then upwards.

        Amortised O(1) hashes, at most log2(n) + 1 for one append.
        """
        if not _is_hash(leaf_hash):
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes of SHA-256, not {leaf_hash!r:.80}")
        index = self._size
        digest = leaf_hash
        completed = [Node(0, index, digest)]
        level = 0
        carry = index
        while carry & 1:
            digest = node_hash(self._hashes.pop(), digest)
            carry >>= 1
            level += 1
            completed.append(Node(level, carry, digest))
        self._hashes.append(digest)
        self._size = index + 1
        return completed

    def extend(self, leaf_hashes: Iterable[bytes]) -> list[Node]:
        """Append several leaves (one group commit); return every node they complete, in append order."""
        completed: list[Node] = []
        for digest in leaf_hashes:
            completed.extend(self.append(digest))
        return completed

    def extend_rows(self, leaf_hashes: Sequence[bytes]) -> list[tuple[int, int, bytes]]:
        """Append a batch of leaves and return the perfect nodes it completes as ``(level, index, hash)`` rows.

        The same nodes as :meth:`extend`, but level by level (the leaves first) rather than in append order,
        and computed a whole level at a time with the pairing loop of :func:`root_of`: a sequencer appends
        hundreds of leaves per batch, and one ``Node`` object and one Python-level carry loop per node cost
        it several times the hashing itself.
        """
        leaves = list(leaf_hashes)
        if not all(_is_hash(digest) for digest in leaves):
            bad = next(digest for digest in leaves if not _is_hash(digest))
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes of SHA-256, not {bad!r:.80}")
        size = self._size
        new_size = size + len(leaves)
        # The range's hashes by level: the left edge holds one perfect node per set bit of the size.
        edge = dict(zip(_set_bits_descending(size), self._hashes, strict=True))
        rows: list[tuple[int, int, bytes]] = []
        level, start, nodes = 0, size, leaves
        while nodes:
            rows.extend((level, start + offset, digest) for offset, digest in enumerate(nodes))
            if start & 1:  # the first new node is a right child: its left sibling waits on the edge
                nodes = [edge[level], *nodes]
                start -= 1
            # An odd last node has no sibling yet: it becomes (or stays) the edge at this level.
            if len(nodes) & 1:
                edge[level] = nodes[-1]
            else:
                edge.pop(level, None)
            nodes = _pair_up(nodes)
            level += 1
            start >>= 1
        self._hashes = [edge[level] for level in _set_bits_descending(new_size)]
        self._size = new_size
        return rows

    def root(self) -> bytes:
        """The tree head's root hash for the current size: O(log n) hashes."""
        if not self._hashes:
            return EMPTY_ROOT
        acc = self._hashes[-1]
        for digest in reversed(self._hashes[:-1]):
            acc = node_hash(digest, acc)
        return acc


class MemoryStore:
    """Every perfect node in a dict: a complete in-memory log, for tests and for ``audit verify``.

    Answers the same questions a database-backed store answers, through the same id functions, so it
    doubles as the model that a database store is tested against.
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._nodes: dict[NodeId, bytes] = {}
        self._range = CompactRange()
        self.extend(leaf_hashes)

    @property
    def size(self) -> int:
        """How many leaves the log holds."""
        return self._range.size

    def append(self, leaf_hash: bytes) -> None:
        """Add one leaf and store every node it completes."""
        for node in self._range.append(leaf_hash):
            self._nodes[node.node_id] = node.hash

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Add several leaves in order."""
        for digest in leaf_hashes:
            self.append(digest)

    def get_nodes(self, node_ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        """The stored hashes among ``node_ids`` (a ``GetNodes``); absent ids are simply left out."""
        return {node_id: self._nodes[node_id] for node_id in node_ids if node_id in self._nodes}

    def _within(self, size: int) -> int:
        _check_size(size)
        if size > self.size:
            raise TreeRangeError(f"tree size {size} is beyond the log's {self.size} leaves", size=size)
        return size

    def root(self, size: int | None = None) -> bytes:
        """The root at ``size`` leaves (default: all of them)."""
        size = self.size if size is None else self._within(size)
        return root_from(size, self.get_nodes(root_node_ids(size)))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 inclusion proof of leaf ``index`` at ``size`` leaves (default: all of them)."""
        size = self.size if size is None else self._within(size)
        return inclusion_proof(index, size, self.get_nodes(inclusion_node_ids(index, size)))

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        """RFC 9162 consistency proof from ``first`` to ``second`` leaves (default: all of them)."""
        second = self.size if second is None else self._within(second)
        return consistency_proof(first, second, self.get_nodes(consistency_node_ids(first, second)))
