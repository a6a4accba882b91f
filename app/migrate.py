"""Apply and create database migrations (Alembic), configured in code."""
from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig

from app.config import Config

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(config: Config) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", config.sqlalchemy_url.replace("%", "%%"))
    return cfg


def upgrade(config: Config) -> None:
    """Bring the database to the newest schema (creates it if needed)."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(config), "head")
    log.info("database is at the newest schema")


def revision(config: Config, message: str) -> None:
    """Autogenerate a migration from the difference between tables.py and the database."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    command.revision(alembic_config(config), message=message, autogenerate=True)
