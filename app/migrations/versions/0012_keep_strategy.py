"""New projects rank their queue with stratified random by default (issue 21: on the mixed
DSB benchmark no uncertainty strategy beat it by more than the seed spread). Projects made
before keep what they ranked with: MC-dropout entropy, written into their settings.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29
"""
import json

from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

OLD_DEFAULT = "entropy"


def _settings(value) -> dict:
    if value is None:
        return {}
    return json.loads(value) if isinstance(value, str) else dict(value)


def upgrade() -> None:
    project = sa.table("project", sa.column("id", sa.Integer), sa.column("settings", sa.JSON))
    bind = op.get_bind()
    for pid, raw in bind.execute(sa.select(project.c.id, project.c.settings)).all():
        settings = _settings(raw)
        loop = dict(settings.get("active_learning") or {})
        if "strategy" in loop:
            continue
        loop["strategy"] = OLD_DEFAULT
        bind.execute(project.update().where(project.c.id == pid)
                     .values(settings={**settings, "active_learning": loop}))


def downgrade() -> None:
    pass        # the stored strategy is a valid setting under either default
