"""Alembic migration scripts for notifier's database (installed as notifier.migrations)."""
