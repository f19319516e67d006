"""Monitoring: sampled features and scores (``feature_samples``) and the monitor's history
(``monitor_results``), issue #13.

New tables only, created with ``checkfirst`` (revision 0001 leaves them alone).
"""

from __future__ import annotations

from alembic import op

from abflow.store import schema

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    tables = [schema.feature_samples, schema.monitor_results]
    schema.metadata.create_all(op.get_bind(), tables=tables, checkfirst=True)


def downgrade() -> None:
    msg = "the store's schema only moves forward"
    raise NotImplementedError(msg)
