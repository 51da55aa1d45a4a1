"""The capacity register (vacancies, secure homes): local only; imports registry.core and schemas."""
