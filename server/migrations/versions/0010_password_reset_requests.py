"""password reset requests, kept for throttling by the address typed (a keyed digest)
and by the client address, whether or not an account uses the address

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.db

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('password_reset_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email_digest', sa.String(length=64), nullable=False),
    sa.Column('ip', sa.String(length=64), nullable=False),
    sa.Column('at', server.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_password_reset_requests'))
    )
    with op.batch_alter_table('password_reset_requests', schema=None) as batch_op:
        batch_op.create_index('ix_password_reset_requests_email_at', ['email_digest', 'at'],
                              unique=False)
        batch_op.create_index('ix_password_reset_requests_ip_at', ['ip', 'at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('password_reset_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_password_reset_requests_ip_at')
        batch_op.drop_index('ix_password_reset_requests_email_at')
    op.drop_table('password_reset_requests')
