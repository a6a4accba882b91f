"""Drafts: per-user unsaved edits of an image (base + edit list + redo list)

Revision ID: fe9293600f7f
Revises: f23ed92905d8
Create Date: 2026-11-23 13:06:59.970037
"""
from alembic import op
import sqlalchemy as sa


revision = 'fe9293600f7f'
down_revision = 'f23ed92905d8'
branch_labels = None
depends_on = None


def upgrade() -> None:
    
    op.create_table('draft',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('base_annotation_id', sa.Integer(), nullable=True),
    sa.Column('base_label_key', sa.String(length=128), nullable=True),
    sa.Column('base_region_key', sa.String(length=128), nullable=True),
    sa.Column('base_classes', sa.JSON(), nullable=False),
    sa.Column('base_points', sa.JSON(), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('source_model_version_id', sa.Integer(), nullable=True),
    sa.Column('edits', sa.JSON(), nullable=False),
    sa.Column('undone', sa.JSON(), nullable=False),
    sa.Column('rev', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['base_annotation_id'], ['annotation.id'], name=op.f('fk_draft_base_annotation_id_annotation'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['image_id'], ['image.id'], name=op.f('fk_draft_image_id_image'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['source_model_version_id'], ['model_version.id'], name=op.f('fk_draft_source_model_version_id_model_version'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_draft_user_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_draft')),
    sa.UniqueConstraint('image_id', 'user_id', name=op.f('uq_draft_image_id'))
    )
    with op.batch_alter_table('draft', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_draft_image_id'), ['image_id'], unique=False)




def downgrade() -> None:
    
    with op.batch_alter_table('draft', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_draft_image_id'))

    op.drop_table('draft')

