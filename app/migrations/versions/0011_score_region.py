"""score.region: in a project whose queue serves regions, the image's most useful region
([y0, x0, y1, x1]); its value and rank are that region's

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('score', schema=None) as batch_op:
        batch_op.add_column(sa.Column('region', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('score', schema=None) as batch_op:
        batch_op.drop_column('region')
