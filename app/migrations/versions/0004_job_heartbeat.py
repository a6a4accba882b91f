"""Jobs: an owner (the run that holds the job) and a heartbeat, so a job whose worker died
is noticed and failed, and only its owner may finish it.

Revision ID: 0004
Revises: fe9293600f7f
Create Date: 2026-11-28 16:50:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = 'fe9293600f7f'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner', sa.String(length=128), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('queue', sa.String(length=32), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('sent_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_column('sent_at')
        batch_op.drop_column('queue')
        batch_op.drop_column('heartbeat_at')
        batch_op.drop_column('owner')
