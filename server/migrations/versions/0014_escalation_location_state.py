"""the US state of the location an escalation holds

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('escalations', sa.Column('location_state', sa.String(length=2), nullable=True))


def downgrade() -> None:
    op.drop_column('escalations', 'location_state')
