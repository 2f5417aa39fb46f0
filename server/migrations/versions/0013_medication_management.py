"""medication management: the patient's state at each check-in, the substance-use
track, lab results, prescribers' state licences and DEA registrations, PDMP checks

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.db

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('lab_results',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('test', sa.String(length=40), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('text_value', sa.String(length=200), nullable=True),
    sa.Column('unit', sa.String(length=20), nullable=True),
    sa.Column('taken_on', sa.Date(), nullable=False),
    sa.Column('entered_by_id', sa.Integer(), nullable=False),
    sa.Column('entered_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['entered_by_id'], ['users.id'], name=op.f('fk_lab_results_entered_by_id_users')),
    sa.ForeignKeyConstraint(['patient_id'], ['users.id'], name=op.f('fk_lab_results_patient_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lab_results'))
    )
    op.create_index('ix_lab_results_patient_test', 'lab_results', ['patient_id', 'test', 'taken_on'], unique=False)
    op.create_table('prescriber_credentials',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('prescriber_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=2), nullable=False),
    sa.Column('license_number', sa.String(length=40), nullable=False),
    sa.Column('license_expires_on', sa.Date(), nullable=True),
    sa.Column('dea_number', sa.String(length=20), nullable=True),
    sa.Column('dea_expires_on', sa.Date(), nullable=True),
    sa.Column('updated_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_by_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['prescriber_id'], ['users.id'], name=op.f('fk_prescriber_credentials_prescriber_id_users')),
    sa.ForeignKeyConstraint(['updated_by_id'], ['users.id'], name=op.f('fk_prescriber_credentials_updated_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prescriber_credentials')),
    sa.UniqueConstraint('prescriber_id', 'state', name=op.f('uq_prescriber_credentials_prescriber_id'))
    )
    op.create_table('pdmp_checks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('visit_id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=2), nullable=False),
    sa.Column('result', sa.String(length=16), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('checked_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('checked_by_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['checked_by_id'], ['users.id'], name=op.f('fk_pdmp_checks_checked_by_id_users')),
    sa.ForeignKeyConstraint(['patient_id'], ['users.id'], name=op.f('fk_pdmp_checks_patient_id_users')),
    sa.ForeignKeyConstraint(['visit_id'], ['visits.id'], name=op.f('fk_pdmp_checks_visit_id_visits')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pdmp_checks'))
    )
    op.create_index('ix_pdmp_checks_visit', 'pdmp_checks', ['visit_id', 'checked_at'], unique=False)
    op.add_column('checkins', sa.Column('location_state', sa.String(length=2), nullable=True))
    op.add_column('patient_profiles', sa.Column('substance_use_track', sa.Boolean(), server_default=sa.text('false'), nullable=False))


def downgrade() -> None:
    op.drop_column('patient_profiles', 'substance_use_track')
    op.drop_column('checkins', 'location_state')
    op.drop_index('ix_pdmp_checks_visit', table_name='pdmp_checks')
    op.drop_table('pdmp_checks')
    op.drop_table('prescriber_credentials')
    op.drop_index('ix_lab_results_patient_test', table_name='lab_results')
    op.drop_table('lab_results')
