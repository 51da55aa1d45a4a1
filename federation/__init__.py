"""The federation: directory of nodes, signed node-to-node transport, inbound federation API, fan-out
queries and the national views built from them.

May import ``agreements``, the registers, ``registry.core`` and ``schemas``; only ``registry.app`` and
``registry.cli`` import it.
"""
