"""Data-sharing agreements: documents, canonical form, multi-party signatures, lifecycle, policy decisions.

May import ``registry.core``, the registers and ``schemas``; never ``federation`` or the composing layer.

Modules: ``documents`` (schema + cross-document rules, canonical digest), ``signatures`` and ``keys``
(party signatures; the :class:`~agreements.keys.KeyResolver` protocol the federation directory satisfies),
``lifecycle`` (states computed from signed events and the clock), ``store`` and ``ledger`` (the one write
path; verified reads cached by content hash), ``policy`` (the decision every federated data route makes),
``service`` (register operations), ``exchange`` (what parties' nodes send each other, and receiving it),
``outbox`` (deliveries still owed to other parties, and the :class:`~agreements.outbox.Courier` protocol the
federation layer satisfies), ``bundle`` (offline verification), ``runtime`` (the per-node object ``create_app``
installs), ``api``.
"""
