"""RFC 9162 §2.1 transcribed literally: the known-answer oracle for ``registry.core.merkle``.

Deliberately naive (recursive, slicing lists, rehashing whole subtrees on every call) and sharing no code
with the product, so a mistake in one cannot hide in the other. Inputs are the raw entries ``d[0:n]`` as
in the RFC, not leaf hashes. Only tests use it; it is far too slow for a real log.
"""

import hashlib
from collections.abc import Sequence


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _largest_power_of_two_below(n: int) -> int:
    """RFC 9162: "k be the largest power of two smaller than n (i.e., k < n <= 2k)"."""
    k = 1
    while 2 * k < n:
        k *= 2
    return k


def mth(d: Sequence[bytes]) -> bytes:
    """MTH(D[n]), §2.1.1."""
    n = len(d)
    if n == 0:
        return _sha256(b"")
    if n == 1:
        return _sha256(b"\x00" + d[0])
    k = _largest_power_of_two_below(n)
    return _sha256(b"\x01" + mth(d[0:k]) + mth(d[k:n]))


def path(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]), §2.1.3.1: the inclusion proof of leaf m."""
    n = len(d)
    if n == 1 and m == 0:
        return []
    k = _largest_power_of_two_below(n)
    if m < k:
        return [*path(m, d[0:k]), mth(d[k:n])]
    return [*path(m - k, d[k:n]), mth(d[0:k])]


def proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]), §2.1.4.1: the consistency proof from the first m entries, 0 < m < n."""
    return _subproof(m, d, True)


def _subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = _largest_power_of_two_below(n)
    if m <= k:
        return [*_subproof(m, d[0:k], b), mth(d[k:n])]
    return [*_subproof(m - k, d[k:n], False), mth(d[0:k])]
