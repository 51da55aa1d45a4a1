"""The statistics register: local only; imports registry.core and schemas."""
