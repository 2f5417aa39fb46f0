"""chat messages kept with each visit; the prescriber's "running late" notice

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.db

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('visit_chat_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('visit_id', sa.Integer(), nullable=False),
    sa.Column('sender_user_id', sa.Integer(), nullable=True),
    sa.Column('sender_guest_id', sa.Integer(), nullable=True),
    sa.Column('sender_name', sa.String(length=200), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('sent_at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['sender_guest_id'], ['visit_guests.id'],
                            name=op.f('fk_visit_chat_messages_sender_guest_id_visit_guests')),
    sa.ForeignKeyConstraint(['sender_user_id'], ['users.id'],
                            name=op.f('fk_visit_chat_messages_sender_user_id_users')),
    sa.ForeignKeyConstraint(['visit_id'], ['visits.id'],
                            name=op.f('fk_visit_chat_messages_visit_id_visits')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_visit_chat_messages')),
    sa.UniqueConstraint('visit_id', 'client_id',
                        name=op.f('uq_visit_chat_messages_visit_id'))
    )
    with op.batch_alter_table('visit_chat_messages', schema=None) as batch_op:
        batch_op.create_index('ix_visit_chat_messages_visit_sent', ['visit_id', 'sent_at'],
                              unique=False)
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.add_column(sa.Column('late_minutes', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('late_notice_at', server.db.UTCDateTime(timezone=True),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.drop_column('late_notice_at')
        batch_op.drop_column('late_minutes')
    with op.batch_alter_table('visit_chat_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_visit_chat_messages_visit_sent')
    op.drop_table('visit_chat_messages')
