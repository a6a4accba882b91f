"""annotation.effort: what each saved version changed against what its annotator started from
(cells added, deleted, reshaped, kept; active editing seconds); draft.activity: the draft's
running count of active editing seconds since its last save

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('annotation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('effort', sa.JSON(), nullable=True))
    with op.batch_alter_table('draft', schema=None) as batch_op:
        batch_op.add_column(sa.Column('activity', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('draft', schema=None) as batch_op:
        batch_op.drop_column('activity')
    with op.batch_alter_table('annotation', schema=None) as batch_op:
        batch_op.drop_column('effort')
