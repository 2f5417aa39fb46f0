"""join links can be revoked: each visit's join link version

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08

Links sent before this revision carry no version and count as version 0, the value every
existing visit starts at: they keep working until they expire or are revoked.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.add_column(sa.Column('join_link_version', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.drop_column('join_link_version')
