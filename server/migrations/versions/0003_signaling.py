"""signaling: invited guests and waiting-room stays

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.db

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('visit_guests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('visit_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('invited_by_id', sa.Integer(), nullable=False),
    sa.Column('invited_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('admitted_at', server.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('admitted_by_id', sa.Integer(), nullable=True),
    sa.Column('revoked_at', server.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['admitted_by_id'], ['users.id'], name=op.f('fk_visit_guests_admitted_by_id_users')),
    sa.ForeignKeyConstraint(['invited_by_id'], ['users.id'], name=op.f('fk_visit_guests_invited_by_id_users')),
    sa.ForeignKeyConstraint(['visit_id'], ['visits.id'], name=op.f('fk_visit_guests_visit_id_visits')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_visit_guests')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_visit_guests_token_hash'))
    )
    with op.batch_alter_table('visit_guests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_visit_guests_visit_id'), ['visit_id'], unique=False)

    op.create_table('visit_waits',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('visit_id', sa.Integer(), nullable=False),
    sa.Column('started_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('alert_due_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('alerted_at', server.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ended_at', server.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('end_reason', sa.String(length=16), nullable=True),
    sa.Column('from_status', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['visit_id'], ['visits.id'], name=op.f('fk_visit_waits_visit_id_visits')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_visit_waits'))
    )
    with op.batch_alter_table('visit_waits', schema=None) as batch_op:
        batch_op.create_index('ix_visit_waits_due', ['ended_at', 'alerted_at', 'alert_due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_visit_waits_visit_id'), ['visit_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('visit_waits', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_visit_waits_visit_id'))
        batch_op.drop_index('ix_visit_waits_due')

    op.drop_table('visit_waits')
    with op.batch_alter_table('visit_guests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_visit_guests_visit_id'))

    op.drop_table('visit_guests')
