"""The Alembic migrations produce exactly the schema in app/tables.py."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app import migrate
from app.db import make_engine
from app.tables import Base


def test_migrations_match_the_models(config):
    migrate.upgrade(config)
    migrate.upgrade(config)  # running twice is harmless
    engine = make_engine(config.sqlalchemy_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []
