"""Configuration from the environment."""
from pathlib import Path

import pytest

from app.config import Config, ConfigError


def test_defaults_are_the_embedded_setup(tmp_path):
    cfg = Config.from_env({"CELLLOOP_DATA_DIR": str(tmp_path)}, dotenv=False)
    assert cfg.env == "development" and not cfg.allow_registration
    assert cfg.sqlalchemy_url == f"sqlite:///{tmp_path.resolve()}/cellloop.sqlite"
    assert cfg.celery_broker_url.startswith("sqla+sqlite:///")
    assert cfg.port == 8050 and cfg.max_image_pixels == 2 ** 28


def test_production_requires_a_secret_key():
    with pytest.raises(ConfigError, match="SECRET_KEY must be set"):
        Config.from_env({"CELLLOOP_ENV": "production"}, dotenv=False)
    cfg = Config.from_env({"CELLLOOP_ENV": "production", "SECRET_KEY": "x" * 32}, dotenv=False)
    assert cfg.is_production and cfg.resolve_secret_key() == "x" * 32


def test_bad_values_are_reported():
    with pytest.raises(ConfigError, match="PORT must be an integer"):
        Config.from_env({"PORT": "eighty"}, dotenv=False)
    with pytest.raises(ConfigError, match="CELLLOOP_ENV"):
        Config.from_env({"CELLLOOP_ENV": "staging"}, dotenv=False)


def test_inference_precision_is_checked_and_applied_without_torch(monkeypatch):
    import subprocess
    import sys

    from models import settings
    with pytest.raises(ConfigError, match="INFERENCE_PRECISION must be auto, fp32 or int8"):
        Config.from_env({"INFERENCE_PRECISION": "int4"}, dotenv=False)
    monkeypatch.setattr(settings, "inference_precision", "auto")
    Config.from_env({"INFERENCE_PRECISION": "INT8"}, dotenv=False).apply_to_models()
    assert settings.inference_precision == "int8"
    # in a fresh process (this one has torch loaded by other tests): no torch on start-up
    probe = ("import sys; from app.config import Config; "
             "Config.from_env({'INFERENCE_PRECISION': 'int8'}, dotenv=False).apply_to_models(); "
             "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "False"


def test_scale_out_urls():
    cfg = Config.from_env({"DATABASE_URL": "postgres://u:p@db/cellloop",
                           "REDIS_URL": "redis://cache:6379/0"}, dotenv=False)
    # postgres:// (Heroku style) and postgresql:// both mean psycopg 3, the driver installed
    assert cfg.sqlalchemy_url == "postgresql+psycopg://u:p@db/cellloop"
    assert cfg.replace(database_url="postgresql+psycopg://u:p@db/x").sqlalchemy_url == \
        "postgresql+psycopg://u:p@db/x"
    assert cfg.celery_broker_url == cfg.celery_result_backend == "redis://cache:6379/0"


def test_database_pool_is_sized_per_web_worker():
    cfg = Config.from_env({"WEB_THREADS": "6"}, dotenv=False)
    assert cfg.db_pool == (7, 6)           # a connection per thread + 1, as many again under load
    cfg = Config.from_env({"DB_POOL_SIZE": "3", "DB_MAX_OVERFLOW": "0"}, dotenv=False)
    assert cfg.db_pool == (3, 0)
    with pytest.raises(ConfigError):
        Config.from_env({"DATABASE_URL": "mysql://x@db/c"}, dotenv=False)


def test_development_secret_is_generated_once_and_shared(tmp_path):
    a = Config(data_dir=tmp_path).resolve_secret_key()
    b = Config(data_dir=tmp_path).resolve_secret_key()
    assert a == b and len(a) == 64
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_dotenv_file_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("PORT=9001\nALLOW_REGISTRATION=yes\n")
    cfg = Config.from_env({}, dotenv=True)
    assert cfg.port == 9001 and cfg.allow_registration
    assert Config.from_env({"PORT": "9002"}).port == 9002  # the environment wins


def test_proxy_fix_count():
    assert Config.from_env({}, dotenv=False).proxy_fix_count == 0
    assert Config.from_env({"PROXY_FIX_COUNT": "2"}, dotenv=False).proxy_fix_count == 2
    with pytest.raises(ConfigError, match="PROXY_FIX_COUNT"):
        Config.from_env({"PROXY_FIX_COUNT": "-1"}, dotenv=False)


def test_celery_redis_options_only_with_redis(tmp_path):
    """The Redis visibility timeout must never reach the embedded SQLite transport (it hands
    transport options to create_engine, which refused it: every job submission failed)."""
    from app.jobs.celery_app import make_celery
    embedded = make_celery(Config(data_dir=tmp_path).validated())
    assert not embedded.conf.broker_transport_options
    assert embedded.conf.task_routes["background_callback_*"] == {"queue": "ui"}
    redis = make_celery(Config(data_dir=tmp_path, redis_url="redis://cache:6379/0").validated())
    assert redis.conf.broker_transport_options["visibility_timeout"] >= 6 * 3600
