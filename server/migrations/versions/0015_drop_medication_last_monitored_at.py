"""drop medications.last_monitored_at: "Needs monitoring" now comes from the lab rules and
the patient's lab results (server/labs.py), and nothing reads or writes the column

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.db

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('medications') as batch:
        batch.drop_column('last_monitored_at')


def downgrade() -> None:
    with op.batch_alter_table('medications') as batch:
        batch.add_column(sa.Column('last_monitored_at', server.db.UTCDateTime(timezone=True),
                                   nullable=True))
