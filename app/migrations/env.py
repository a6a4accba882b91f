"""Alembic environment: the URL comes from CellLoop's Config (or the caller's config)."""
from alembic import context

from app.config import Config
from app.db import make_engine
from app.tables import Base

config = context.config
url = config.get_main_option("sqlalchemy.url") or Config.from_env().sqlalchemy_url


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata,
                          render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
