"""Data-sharing agreements: documents, canonical form, multi-party signatures, lifecycle, policy decisions.

May import ``registry.core``, the registers and ``schemas``; never ``federation`` or the composing layer.
"""
