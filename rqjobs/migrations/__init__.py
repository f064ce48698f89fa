"""Alembic migrations for the tasks table; run through :mod:`rqjobs.store.schema`."""
