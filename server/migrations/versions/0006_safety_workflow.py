"""safety workflow: check-in versions, confirmed emergency information, escalation
triggers and fixed deadlines, the on-call rota, safety addendum tasks

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

Existing rows are carried over: each check-in gets its current answers as version 1,
completed emergency information counts as confirmed at completion, each escalation is
armed at the time it was raised, and duplicate scores of one check-in (the completion
race this revision closes) keep their first row. ``users.on_call`` gives way to the
rota; no code path could set it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.db

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('on_call_shifts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('starts_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ends_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('cancelled_at', server.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancelled_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['cancelled_by_id'], ['users.id'], name=op.f('fk_on_call_shifts_cancelled_by_id_users')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_on_call_shifts_created_by_id_users')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_on_call_shifts_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_on_call_shifts'))
    )
    with op.batch_alter_table('on_call_shifts', schema=None) as batch_op:
        batch_op.create_index('ix_on_call_shifts_span', ['starts_at', 'ends_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_on_call_shifts_user_id'), ['user_id'], unique=False)

    op.create_table('checkin_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('checkin_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('scores', sa.JSON(), nullable=True),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['checkin_id'], ['checkins.id'], name=op.f('fk_checkin_versions_checkin_id_checkins')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkin_versions')),
    sa.UniqueConstraint('checkin_id', 'seq', name=op.f('uq_checkin_versions_checkin_id'))
    )
    with op.batch_alter_table('checkin_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_checkin_versions_checkin_id'), ['checkin_id'], unique=False)

    op.create_table('escalation_triggers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('escalation_id', sa.Integer(), nullable=False),
    sa.Column('at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('visit_id', sa.Integer(), nullable=True),
    sa.Column('checkin_id', sa.Integer(), nullable=True),
    sa.Column('checkin_version_id', sa.Integer(), nullable=True),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('effect', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_escalation_triggers_actor_id_users')),
    sa.ForeignKeyConstraint(['checkin_id'], ['checkins.id'], name=op.f('fk_escalation_triggers_checkin_id_checkins')),
    sa.ForeignKeyConstraint(['checkin_version_id'], ['checkin_versions.id'], name=op.f('fk_escalation_triggers_checkin_version_id_checkin_versions')),
    sa.ForeignKeyConstraint(['escalation_id'], ['escalations.id'], name=op.f('fk_escalation_triggers_escalation_id_escalations')),
    sa.ForeignKeyConstraint(['visit_id'], ['visits.id'], name=op.f('fk_escalation_triggers_visit_id_visits')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_escalation_triggers'))
    )
    with op.batch_alter_table('escalation_triggers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_escalation_triggers_escalation_id'), ['escalation_id'], unique=False)

    op.create_table('safety_addendum_tasks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('note_id', sa.Integer(), nullable=False),
    sa.Column('visit_id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('prescriber_id', sa.Integer(), nullable=False),
    sa.Column('checkin_id', sa.Integer(), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('created_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('done_at', server.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('done_by_id', sa.Integer(), nullable=True),
    sa.Column('addendum_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['addendum_id'], ['note_addenda.id'], name=op.f('fk_safety_addendum_tasks_addendum_id_note_addenda')),
    sa.ForeignKeyConstraint(['checkin_id'], ['checkins.id'], name=op.f('fk_safety_addendum_tasks_checkin_id_checkins')),
    sa.ForeignKeyConstraint(['done_by_id'], ['users.id'], name=op.f('fk_safety_addendum_tasks_done_by_id_users')),
    sa.ForeignKeyConstraint(['note_id'], ['visit_notes.id'], name=op.f('fk_safety_addendum_tasks_note_id_visit_notes')),
    sa.ForeignKeyConstraint(['patient_id'], ['users.id'], name=op.f('fk_safety_addendum_tasks_patient_id_users')),
    sa.ForeignKeyConstraint(['prescriber_id'], ['users.id'], name=op.f('fk_safety_addendum_tasks_prescriber_id_users')),
    sa.ForeignKeyConstraint(['visit_id'], ['visits.id'], name=op.f('fk_safety_addendum_tasks_visit_id_visits')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_safety_addendum_tasks'))
    )
    with op.batch_alter_table('safety_addendum_tasks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_safety_addendum_tasks_note_id'), ['note_id'], unique=False)
        batch_op.create_index('ix_safety_addendum_tasks_open', ['prescriber_id', 'done_at'], unique=False)
        batch_op.create_index('ux_safety_addendum_tasks_open_note', ['note_id'], unique=True, sqlite_where=sa.text('done_at IS NULL'), postgresql_where=sa.text('done_at IS NULL'))

    with op.batch_alter_table('checkins', schema=None) as batch_op:
        batch_op.add_column(sa.Column('version', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('location_confirmed_at', server.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('contact_confirmed_at', server.db.UTCDateTime(timezone=True), nullable=True))

    with op.batch_alter_table('escalations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('armed_at', server.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('emergency_confirmed_at', server.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('emergency_source', sa.String(length=16), nullable=True))
        batch_op.alter_column('reason_text',
               existing_type=sa.VARCHAR(length=1000),
               type_=sa.Text(),
               existing_nullable=True)
        batch_op.create_index('ux_escalations_open_patient', ['patient_id'], unique=True, sqlite_where=sa.text("status != 'resolved'"), postgresql_where=sa.text("status != 'resolved'"))

    op.execute("DELETE FROM measure_results WHERE id NOT IN "
               "(SELECT MIN(id) FROM measure_results GROUP BY checkin_id, instrument)")
    with op.batch_alter_table('measure_results', schema=None) as batch_op:
        batch_op.create_unique_constraint(batch_op.f('uq_measure_results_checkin_id'), ['checkin_id', 'instrument'])

    with op.batch_alter_table('note_addenda', schema=None) as batch_op:
        batch_op.add_column(sa.Column('safety', sa.JSON(), nullable=True))

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('on_call')

    copy = ("INSERT INTO checkin_versions (checkin_id, seq, kind, at, data, scores, level, "
            "reasons) SELECT id, 1, CASE WHEN status = 'completed' THEN 'completion' ELSE "
            "'draft' END, updated_at, data, scores, COALESCE(level, 'none'), ")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(copy + "COALESCE(reasons, '[]'::json) FROM checkins")
    else:
        op.execute(copy + "COALESCE(reasons, '[]') FROM checkins")
    op.execute("UPDATE checkins SET version = 1")
    op.execute("UPDATE checkins SET location_confirmed_at = completed_at, "
               "contact_confirmed_at = completed_at "
               "WHERE completed_at IS NOT NULL AND callback_phone IS NOT NULL")
    op.execute("UPDATE escalations SET armed_at = raised_at")
    op.execute("UPDATE escalations SET emergency_source = 'checkin', "
               "emergency_confirmed_at = raised_at WHERE checkin_id IS NOT NULL "
               "AND callback_phone IS NOT NULL")



def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('on_call', sa.Boolean(), server_default=sa.false(), nullable=False))

    with op.batch_alter_table('note_addenda', schema=None) as batch_op:
        batch_op.drop_column('safety')

    with op.batch_alter_table('measure_results', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_measure_results_checkin_id'), type_='unique')

    with op.batch_alter_table('escalations', schema=None) as batch_op:
        batch_op.drop_index('ux_escalations_open_patient', sqlite_where=sa.text("status != 'resolved'"), postgresql_where=sa.text("status != 'resolved'"))
        batch_op.alter_column('reason_text',
               existing_type=sa.Text(),
               type_=sa.VARCHAR(length=1000),
               existing_nullable=True)
        batch_op.drop_column('emergency_source')
        batch_op.drop_column('emergency_confirmed_at')
        batch_op.drop_column('armed_at')

    with op.batch_alter_table('checkins', schema=None) as batch_op:
        batch_op.drop_column('contact_confirmed_at')
        batch_op.drop_column('location_confirmed_at')
        batch_op.drop_column('version')

    with op.batch_alter_table('safety_addendum_tasks', schema=None) as batch_op:
        batch_op.drop_index('ux_safety_addendum_tasks_open_note', sqlite_where=sa.text('done_at IS NULL'), postgresql_where=sa.text('done_at IS NULL'))
        batch_op.drop_index('ix_safety_addendum_tasks_open')
        batch_op.drop_index(batch_op.f('ix_safety_addendum_tasks_note_id'))

    op.drop_table('safety_addendum_tasks')
    with op.batch_alter_table('escalation_triggers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_escalation_triggers_escalation_id'))

    op.drop_table('escalation_triggers')
    with op.batch_alter_table('checkin_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_checkin_versions_checkin_id'))

    op.drop_table('checkin_versions')
    with op.batch_alter_table('on_call_shifts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_on_call_shifts_user_id'))
        batch_op.drop_index('ix_on_call_shifts_span')

    op.drop_table('on_call_shifts')
