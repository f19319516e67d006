"""What each monitor result was compared with: ``monitor_results.reference`` (issue #13).

``training`` marks feature drift measured against the model's training sample, which is
what lets analysis flag train/serve skew. Rows written before this revision keep ``''``
(unknown). Adding a column with a constant default is an in-place ``ALTER TABLE`` on both
SQLite and PostgreSQL; a store created from the metadata already has it.
"""

from __future__ import annotations

from alembic import op

from abflow.store import schema
from abflow.store.migrations import add_column_if_missing

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_column_if_missing(op.get_bind(), schema.monitor_results, "reference")


def downgrade() -> None:
    msg = "the store's schema only moves forward"
    raise NotImplementedError(msg)
