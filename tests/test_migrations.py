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


def _settings_after_upgrade(config, revision: str, projects: dict) -> dict:
    """{project id: settings} after upgrading to head a database that was at `revision`
    with `projects` ({id: settings}) in it."""
    import json

    import sqlalchemy as sa
    from alembic import command
    config.data_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(migrate.alembic_config(config), revision)
    engine = make_engine(config.sqlalchemy_url)
    with engine.begin() as conn:
        for pid, settings in projects.items():
            conn.execute(sa.text(
                "INSERT INTO project (id, name, description, channels, classes, settings, "
                "created_at) VALUES (:id, :name, '', '[]', '[]', :settings, '2026-01-01')"),
                {"id": pid, "name": f"p{pid}", "settings": json.dumps(settings)})
    migrate.upgrade(config)
    with engine.connect() as conn:
        rows = dict(conn.execute(sa.text("SELECT id, settings FROM project")).all())
    engine.dispose()
    return {pid: json.loads(v) if isinstance(v, str) else v for pid, v in rows.items()}


def test_projects_made_before_the_stratified_default_keep_ranking_by_entropy(config):
    stored = _settings_after_upgrade(config, "0011", {
        1: None, 2: {"training": {"epochs": 3}},
        3: {"active_learning": {"strategy": "bald", "batch": 4}}})
    assert stored[1]["active_learning"] == {"strategy": "entropy"}
    assert stored[2] == {"training": {"epochs": 3}, "active_learning": {"strategy": "entropy"}}
    assert stored[3]["active_learning"] == {"strategy": "bald", "batch": 4}


def test_projects_made_before_the_fewer_cells_first_default_keep_plain_stratified(config):
    stored = _settings_after_upgrade(config, "0012", {
        1: None, 2: {"active_learning": {"batch": 4}},
        3: {"active_learning": {"strategy": "entropy"}}})
    assert stored[1]["active_learning"] == {"strategy": "stratified"}
    assert stored[2]["active_learning"] == {"batch": 4, "strategy": "stratified"}
    assert stored[3]["active_learning"] == {"strategy": "entropy"}
