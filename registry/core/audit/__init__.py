"""The node's tamper-evident audit log: every request recorded, sequenced into an RFC 9162 Merkle tree,
with signed tree heads, proofs, governance queries and offline verification.

Part of ``registry.core``: imports only other core modules and ``schemas``.
"""
