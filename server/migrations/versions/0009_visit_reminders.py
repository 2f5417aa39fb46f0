"""visit reminders: one timer row per visit and reminder (24 h and 1 h before, by
default), claimed once when due

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.db

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('visit_reminders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('visit_id', sa.Integer(), nullable=False),
    sa.Column('hours', sa.Integer(), nullable=False),
    sa.Column('due_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', server.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['visit_id'], ['visits.id'], name=op.f('fk_visit_reminders_visit_id_visits')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_visit_reminders')),
    sa.UniqueConstraint('visit_id', 'hours', name=op.f('uq_visit_reminders_visit_id'))
    )
    with op.batch_alter_table('visit_reminders', schema=None) as batch_op:
        batch_op.create_index('ix_visit_reminders_due', ['sent_at', 'due_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('visit_reminders', schema=None) as batch_op:
        batch_op.drop_index('ix_visit_reminders_due')
    op.drop_table('visit_reminders')
