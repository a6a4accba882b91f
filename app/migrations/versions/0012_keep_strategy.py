"""New projects rank their queue with stratified random by default (issue 21: on the mixed
DSB benchmark no uncertainty strategy beat it by more than the seed spread). Projects made
before keep what they ranked with: MC-dropout entropy, written into their settings.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29
"""
from alembic import op

from app.migrations.keep_setting import keep_loop_setting


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

OLD_DEFAULT = "entropy"


def upgrade() -> None:
    keep_loop_setting(op.get_bind(), "strategy", OLD_DEFAULT)


def downgrade() -> None:
    pass        # the stored strategy is a valid setting under either default
