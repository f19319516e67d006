"""Leases: ``leases``, so that only one gateway process runs the monitor at a time (issue #13).

A new table only, created with ``checkfirst`` (revision 0001 leaves it alone).
"""

from __future__ import annotations

from alembic import op

from abflow.store import schema

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema.metadata.create_all(op.get_bind(), tables=[schema.leases], checkfirst=True)


def downgrade() -> None:
    msg = "the store's schema only moves forward"
    raise NotImplementedError(msg)
