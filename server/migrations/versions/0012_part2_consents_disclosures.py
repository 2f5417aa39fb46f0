"""42 CFR Part 2: consents, the accounting of disclosures, SUD counseling notes kept apart

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.db

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sud_counseling_notes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('visit_id', sa.Integer(), nullable=True),
    sa.Column('author_id', sa.Integer(), nullable=False),
    sa.Column('created_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['author_id'], ['users.id'], name=op.f('fk_sud_counseling_notes_author_id_users')),
    sa.ForeignKeyConstraint(['patient_id'], ['users.id'], name=op.f('fk_sud_counseling_notes_patient_id_users')),
    sa.ForeignKeyConstraint(['visit_id'], ['visits.id'], name=op.f('fk_sud_counseling_notes_visit_id_visits')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sud_counseling_notes'))
    )
    op.create_index(op.f('ix_sud_counseling_notes_patient_id'), 'sud_counseling_notes', ['patient_id'], unique=False)
    op.create_table('part2_consents',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('form_version', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('categories', sa.JSON(), nullable=False),
    sa.Column('recipient_classes', sa.JSON(), nullable=False),
    sa.Column('recipient_name', sa.String(length=200), nullable=True),
    sa.Column('purposes', sa.JSON(), nullable=False),
    sa.Column('purpose_text', sa.String(length=500), nullable=True),
    sa.Column('expires_on', sa.Date(), nullable=True),
    sa.Column('expiry_event', sa.String(length=200), nullable=True),
    sa.Column('signed_name', sa.String(length=200), nullable=False),
    sa.Column('signed_on', sa.Date(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('recorded_by_id', sa.Integer(), nullable=False),
    sa.Column('created_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('visit_id', sa.Integer(), nullable=True),
    sa.Column('guest_id', sa.Integer(), nullable=True),
    sa.Column('revoked_at', server.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['guest_id'], ['visit_guests.id'], name=op.f('fk_part2_consents_guest_id_visit_guests')),
    sa.ForeignKeyConstraint(['patient_id'], ['users.id'], name=op.f('fk_part2_consents_patient_id_users')),
    sa.ForeignKeyConstraint(['recorded_by_id'], ['users.id'], name=op.f('fk_part2_consents_recorded_by_id_users')),
    sa.ForeignKeyConstraint(['revoked_by_id'], ['users.id'], name=op.f('fk_part2_consents_revoked_by_id_users')),
    sa.ForeignKeyConstraint(['visit_id'], ['visits.id'], name=op.f('fk_part2_consents_visit_id_visits')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_part2_consents'))
    )
    op.create_index('ix_part2_consents_patient', 'part2_consents', ['patient_id', 'revoked_at'], unique=False)
    op.create_table('part2_disclosures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('recipient_name', sa.String(length=200), nullable=False),
    sa.Column('recipient_affiliation', sa.String(length=200), nullable=True),
    sa.Column('recipient_class', sa.String(length=32), nullable=True),
    sa.Column('purpose', sa.String(length=64), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('categories', sa.JSON(), nullable=False),
    sa.Column('consent_id', sa.Integer(), nullable=True),
    sa.Column('disclosed_by_id', sa.Integer(), nullable=False),
    sa.Column('emergency_nature', sa.Text(), nullable=True),
    sa.Column('escalation_id', sa.Integer(), nullable=True),
    sa.Column('visit_id', sa.Integer(), nullable=True),
    sa.Column('content', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['consent_id'], ['part2_consents.id'], name=op.f('fk_part2_disclosures_consent_id_part2_consents')),
    sa.ForeignKeyConstraint(['disclosed_by_id'], ['users.id'], name=op.f('fk_part2_disclosures_disclosed_by_id_users')),
    sa.ForeignKeyConstraint(['escalation_id'], ['escalations.id'], name=op.f('fk_part2_disclosures_escalation_id_escalations')),
    sa.ForeignKeyConstraint(['patient_id'], ['users.id'], name=op.f('fk_part2_disclosures_patient_id_users')),
    sa.ForeignKeyConstraint(['visit_id'], ['visits.id'], name=op.f('fk_part2_disclosures_visit_id_visits')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_part2_disclosures'))
    )
    op.create_index('ix_part2_disclosures_patient_at', 'part2_disclosures', ['patient_id', 'at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_part2_disclosures_patient_at', table_name='part2_disclosures')
    op.drop_table('part2_disclosures')
    op.drop_index('ix_part2_consents_patient', table_name='part2_consents')
    op.drop_table('part2_consents')
    op.drop_index(op.f('ix_sud_counseling_notes_patient_id'), table_name='sud_counseling_notes')
    op.drop_table('sud_counseling_notes')
