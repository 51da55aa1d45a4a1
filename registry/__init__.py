"""rcc-registry: the node software of England's Regional Care Cooperatives' federation.

``registry.core`` is the kernel every other part stands on; the registers (publications, capacity,
statistics) sit above it; ``registry.app``, ``registry.cli`` and ``registry.migrations`` compose the whole.
"""

__version__ = "0.1.0"
