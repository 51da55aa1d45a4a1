"""The node's tamper-evident audit log: every request recorded, sequenced into an RFC 9162 Merkle tree,
with signed tree heads, proofs, governance queries and offline verification.

Modules: ``context`` (what a request tells the log), ``entry`` (an entry's fields and canonical bytes),
``models`` (tables and API shapes), ``store`` (table handles, node reads, the entry inserter, ``append_in``),
``writer`` (durable, fail-closed writes sharing commits), ``log`` (:class:`AuditLog`: writer + sequencer),
``recording`` (per-node access, outbound entries, ``sequence_pending``), ``middleware`` (records every HTTP
request), ``service`` and ``api`` (tree heads, proofs, queries, exports), ``verify`` (``rcc-node audit verify``),
``install`` (wiring into ``create_app``).

What other parts of the node call:

- ``audit_context(request)`` (``context``): fill in actor, dataset, purpose, agreement, decision, peer, count;
- ``append_in(session, request_entry(request, status=…))``: a state change and its entry in one transaction;
- ``append_outbound(node, …)`` / ``await aappend_outbound(node, …)``: record a call made to a peer;
- ``service.signed_tree_head / inclusion / consistency``: what the federation serves to witnessing peers;
- ``sequence_pending(node)``: sequence and sign now (tests, CLI).

Part of ``registry.core``: imports only other core modules and ``schemas``.
"""
