"""New projects queue 256 px regions by default instead of whole images (issue 21: from a
start model that never saw H&E, regions reached 95% of the whole-pool model in 6 of 6
(strategy, seed) runs, whole images in 2 of 6).
Projects made before keep whole images, written into their settings.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""
from alembic import op

from app.migrations.keep_setting import keep_loop_setting


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

OLD_DEFAULT = "image"


def upgrade() -> None:
    keep_loop_setting(op.get_bind(), "unit", OLD_DEFAULT)


def downgrade() -> None:
    pass        # the stored unit is a valid setting under either default
