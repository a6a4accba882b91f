"""Display settings: channel colours, visibility and contrast limits per user and project

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('display_setting',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('channels', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_display_setting_project_id_project'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_display_setting_user_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_display_setting')),
    sa.UniqueConstraint('user_id', 'project_id', name=op.f('uq_display_setting_user_id'))
    )
    with op.batch_alter_table('display_setting', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_display_setting_project_id'), ['project_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('display_setting', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_display_setting_project_id'))

    op.drop_table('display_setting')
