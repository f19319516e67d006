"""Sticky bucketing: the ``sticky_buckets`` assignment documents (issue #14, item 3).

A new table only, created with ``checkfirst`` (revision 0001 leaves it alone).
"""

from __future__ import annotations

from alembic import op

from abflow.store import schema

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema.metadata.create_all(op.get_bind(), tables=[schema.sticky_buckets], checkfirst=True)


def downgrade() -> None:
    msg = "the store's schema only moves forward"
    raise NotImplementedError(msg)
