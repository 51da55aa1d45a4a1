"""Test helpers: databases on both engines, real node processes, an independent JOSE verifier."""
