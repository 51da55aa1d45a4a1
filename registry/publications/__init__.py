"""The publications register (frameworks, placement protocols, fee caps).

Local data only; imports registry.core and schemas.
"""
