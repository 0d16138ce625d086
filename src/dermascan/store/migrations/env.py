"""Alembic environment: runs on the engine handed over by :func:`dermascan.store.db.upgrade`."""

from __future__ import annotations

from alembic import context

from dermascan.store.models import Base

engine = context.config.attributes.get("engine")
if engine is None:  # pragma: no cover - only `dermascan db upgrade` and the service run migrations
    raise RuntimeError("run migrations with `dermascan db upgrade --db URL`, not the alembic command")

with engine.connect() as connection:
    context.configure(
        connection=connection, target_metadata=Base.metadata, render_as_batch=connection.dialect.name == "sqlite"
    )
    with context.begin_transaction():
        context.run_migrations()
