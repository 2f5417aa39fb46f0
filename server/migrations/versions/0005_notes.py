"""notes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.db

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('medications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('drug', sa.String(length=120), nullable=False),
    sa.Column('dose', sa.String(length=40), nullable=True),
    sa.Column('unit', sa.String(length=20), nullable=True),
    sa.Column('route', sa.String(length=40), nullable=True),
    sa.Column('frequency', sa.String(length=60), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('started_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('changed_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('stopped_at', server.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_monitored_at', server.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['patient_id'], ['users.id'], name=op.f('fk_medications_patient_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_medications'))
    )
    with op.batch_alter_table('medications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_medications_patient_id'), ['patient_id'], unique=False)

    op.create_table('visit_notes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('visit_id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('draft', 'signed', name='note_status', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('sections', sa.JSON(), nullable=False),
    sa.Column('medication_changes', sa.JSON(), nullable=False),
    sa.Column('follow_up_days', sa.Integer(), nullable=True),
    sa.Column('created_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_by_id', sa.Integer(), nullable=True),
    sa.Column('signed_at', server.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('signed_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['patient_id'], ['users.id'], name=op.f('fk_visit_notes_patient_id_users')),
    sa.ForeignKeyConstraint(['signed_by_id'], ['users.id'], name=op.f('fk_visit_notes_signed_by_id_users')),
    sa.ForeignKeyConstraint(['updated_by_id'], ['users.id'], name=op.f('fk_visit_notes_updated_by_id_users')),
    sa.ForeignKeyConstraint(['visit_id'], ['visits.id'], name=op.f('fk_visit_notes_visit_id_visits')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_visit_notes')),
    sa.UniqueConstraint('visit_id', name=op.f('uq_visit_notes_visit_id'))
    )
    with op.batch_alter_table('visit_notes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_visit_notes_patient_id'), ['patient_id'], unique=False)

    op.create_table('medication_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('medication_id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('note_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=True),
    sa.Column('at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('by_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['by_id'], ['users.id'], name=op.f('fk_medication_changes_by_id_users')),
    sa.ForeignKeyConstraint(['medication_id'], ['medications.id'], name=op.f('fk_medication_changes_medication_id_medications')),
    sa.ForeignKeyConstraint(['note_id'], ['visit_notes.id'], name=op.f('fk_medication_changes_note_id_visit_notes')),
    sa.ForeignKeyConstraint(['patient_id'], ['users.id'], name=op.f('fk_medication_changes_patient_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_medication_changes'))
    )
    with op.batch_alter_table('medication_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_medication_changes_medication_id'), ['medication_id'], unique=False)

    op.create_table('note_addenda',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('note_id', sa.Integer(), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=False),
    sa.Column('at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['author_id'], ['users.id'], name=op.f('fk_note_addenda_author_id_users')),
    sa.ForeignKeyConstraint(['note_id'], ['visit_notes.id'], name=op.f('fk_note_addenda_note_id_visit_notes')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_note_addenda'))
    )
    with op.batch_alter_table('note_addenda', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_note_addenda_note_id'), ['note_id'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('note_addenda', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_note_addenda_note_id'))

    op.drop_table('note_addenda')
    with op.batch_alter_table('medication_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_medication_changes_medication_id'))

    op.drop_table('medication_changes')
    with op.batch_alter_table('visit_notes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_visit_notes_patient_id'))

    op.drop_table('visit_notes')
    with op.batch_alter_table('medications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_medications_patient_id'))

    op.drop_table('medications')

