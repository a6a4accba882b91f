"""Jobs: at most one queued or running train/score job per project, enforced by the database
(a partial unique index), so two requests at the same moment cannot both queue one.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 18:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

WHERE = "state IN ('queued', 'running') AND kind IN ('train', 'score')"


def upgrade() -> None:
    # Older databases may hold duplicates from before: keep the newest of each, fail the rest.
    op.execute(
        "UPDATE job SET state = 'failed', error = 'Another job of this kind was already "
        "queued or running in the project.' WHERE " + WHERE + " AND id NOT IN (SELECT max(id) "
        "FROM job WHERE " + WHERE + " GROUP BY project_id, kind)")
    op.create_index("uq_job_one_active_exclusive", "job", ["project_id", "kind"], unique=True,
                    sqlite_where=sa.text(WHERE), postgresql_where=sa.text(WHERE))


def downgrade() -> None:
    op.drop_index("uq_job_one_active_exclusive", table_name="job")
