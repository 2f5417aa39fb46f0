"""checkins

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.db

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('checkins',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('visit_id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('draft', 'completed', name='checkin_status', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('started_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('completed_at', server.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('scores', sa.JSON(), nullable=True),
    sa.Column('level', sa.String(length=16), nullable=True),
    sa.Column('reasons', sa.JSON(), nullable=True),
    sa.Column('location_address', sa.String(length=500), nullable=True),
    sa.Column('callback_phone', sa.String(length=40), nullable=True),
    sa.Column('emergency_contact_name', sa.String(length=200), nullable=True),
    sa.Column('emergency_contact_phone', sa.String(length=40), nullable=True),
    sa.ForeignKeyConstraint(['patient_id'], ['users.id'], name=op.f('fk_checkins_patient_id_users')),
    sa.ForeignKeyConstraint(['visit_id'], ['visits.id'], name=op.f('fk_checkins_visit_id_visits')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkins')),
    sa.UniqueConstraint('visit_id', name=op.f('uq_checkins_visit_id'))
    )
    with op.batch_alter_table('checkins', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_checkins_patient_id'), ['patient_id'], unique=False)

    op.create_table('measure_results',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('checkin_id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('instrument', sa.String(length=16), nullable=False),
    sa.Column('at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('total', sa.Integer(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['checkin_id'], ['checkins.id'], name=op.f('fk_measure_results_checkin_id_checkins')),
    sa.ForeignKeyConstraint(['patient_id'], ['users.id'], name=op.f('fk_measure_results_patient_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_measure_results'))
    )
    with op.batch_alter_table('measure_results', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_measure_results_checkin_id'), ['checkin_id'], unique=False)
        batch_op.create_index('ix_measure_results_patient_instrument_at', ['patient_id', 'instrument', 'at'], unique=False)

    with op.batch_alter_table('patient_profiles', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sex', sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column('screening_interval_days', sa.Integer(), nullable=False, server_default='90'))




def downgrade() -> None:

    with op.batch_alter_table('patient_profiles', schema=None) as batch_op:
        batch_op.drop_column('screening_interval_days')
        batch_op.drop_column('sex')

    with op.batch_alter_table('measure_results', schema=None) as batch_op:
        batch_op.drop_index('ix_measure_results_patient_instrument_at')
        batch_op.drop_index(batch_op.f('ix_measure_results_checkin_id'))

    op.drop_table('measure_results')
    with op.batch_alter_table('checkins', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_checkins_patient_id'))

    op.drop_table('checkins')

