"""An independent RFC 9162 §2.1 reference for the audit tests: roots, proofs and proof verification.

Written from the RFC's text, sharing nothing with ``registry.core.merkle`` (never import it here), so a
mistake in the product cannot hide in its own oracle. Works on leaf hashes so it can check what the API
returns; ``leaf`` computes them from entries the way any outside auditor would (``tests.support.jose.jcs``
is a canonical form independent of the product's).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from tests.support.jose import jcs


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf(entry: dict[str, Any]) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d) with d = JCS(entry)."""
    return sha256(b"\x00" + jcs(entry))


def _k(n: int) -> int:
    """The largest power of two smaller than n (k < n <= 2k)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over leaf hashes."""
    n = len(leaves)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return leaves[0]
    k = _k(n)
    return sha256(b"\x01" + root(leaves[:k]) + root(leaves[k:]))


def path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n])."""
    n = len(leaves)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*path(m, leaves[:k]), root(leaves[k:])]
    return [*path(m - k, leaves[k:]), root(leaves[:k])]


def proof(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) for 0 < m < n."""

    def subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
        n = len(d)
        if m == n:
            return [] if b else [root(d)]
        k = _k(n)
        if m <= k:
            return [*subproof(m, d[:k], b), root(d[k:])]
        return [*subproof(m - k, d[k:], False), root(d[:k])]

    return subproof(m, leaves, True)


def verify_inclusion(index: int, size: int, leaf_hash: bytes, audit_path: Sequence[bytes], expected: bytes) -> bool:
    """RFC 9162 §2.1.3.2, step by step."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in audit_path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = sha256(b"\x01" + p + r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = sha256(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected


def verify_consistency(
    first: int, second: int, first_hash: bytes, second_hash: bytes, consistency: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2, step by step (first == second: an empty proof and equal roots)."""
    if first == second:
        return not consistency and first_hash == second_hash
    items = list(consistency)
    if not items:
        return False
    if first & (first - 1) == 0:
        items.insert(0, first_hash)
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn >>= 1
        sn >>= 1
    fr = sr = items[0]
    for c in items[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr = sha256(b"\x01" + c + fr)
            sr = sha256(b"\x01" + c + sr)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = sha256(b"\x01" + sr + c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_hash and sr == second_hash


# Published known answers (the RFC 6962 / RFC 9162 test vectors used by Certificate Transparency logs):
# the roots of the trees of the first n of these eight inputs.
KAT_INPUTS = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
KAT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
EMPTY_ROOT = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
