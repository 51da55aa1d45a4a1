"""Alembic migrations: the only way the schema changes. Top layer: imports every model module via ``registry.app``."""
