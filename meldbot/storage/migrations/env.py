"""Alembic environment: always run with a connection handed in by storage.db.Database."""

from alembic import context
from sqlmodel import SQLModel

import meldbot.storage.tables  # noqa: F401  (registers the tables on SQLModel.metadata)

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("Run migrations with `meldbot migrate`.")

context.configure(connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
