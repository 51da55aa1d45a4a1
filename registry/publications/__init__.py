"""The publications register (frameworks, placement protocols, fee caps): local only; imports registry.core and schemas."""
