"""Event ids compared byte by byte on PostgreSQL (``COLLATE "C"``; rebuilds each key).

A no-op on SQLite, which compares text byte by byte already.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from abflow.store import schema

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name != "postgresql":
        return
    # The tables of revision 0001; later event tables are created with the C collation.
    for table in (schema.exposures, schema.predictions, schema.outcomes):
        collation = connection.execute(
            sa.text(
                "SELECT c.collname FROM pg_attribute a JOIN pg_collation c "
                "ON c.oid = a.attcollation "
                "WHERE a.attrelid = CAST(:table AS regclass) AND a.attname = 'event_id'"
            ),
            {"table": table.name},
        ).scalar_one()
        if collation != "C":
            op.alter_column(
                table.name,
                "event_id",
                type_=sa.String(64, collation="C"),
                existing_nullable=False,
            )


def downgrade() -> None:
    msg = "the store's schema only moves forward"
    raise NotImplementedError(msg)
