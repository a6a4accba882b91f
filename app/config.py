"""Configuration: one immutable object built from environment variables (and `.env`).

This is the only module that reads the environment. Defaults give the embedded setup:
everything lives in the data directory (SQLite database, blob store, Celery broker on
SQLite), so a lab needs no extra server. `DATABASE_URL`, `REDIS_URL` and `STORAGE_URL`
switch to the scale-out parts.
"""
from __future__ import annotations

import dataclasses
import os
import secrets
from pathlib import Path
from typing import Mapping

from dotenv import dotenv_values

ENVIRONMENTS = ("development", "testing", "production")


class ConfigError(RuntimeError):
    """The configuration cannot work; the message says what to set."""


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "development"
    secret_key: str = ""
    data_dir: Path = Path("data")
    database_url: str = ""
    redis_url: str = ""
    storage_url: str = ""
    allow_registration: bool = False
    # who may create projects: "everyone" or "admins"; unset: everyone when accounts are made
    # by an admin (the default), admins when self-registration is open
    project_creators: str = ""
    login_max_failures: int = 10          # failures in a row (account + address) before a lockout
    api_rate_per_minute: int = 600        # requests per API token per minute (/api/v1)
    proxy_fix_count: int = 0              # reverse proxies in front whose X-Forwarded-* to trust
    max_content_length: int = 1 << 30     # upload limit in bytes (1 GiB)
    max_image_pixels: int = 1 << 28       # decompression-bomb guard for readers
    max_image_bytes: int = 512 << 20      # decoded bytes per image, checked from the header
    max_archive_bytes: int = 8 << 30      # sum of a zip's declared uncompressed sizes
    host: str = "127.0.0.1"
    port: int = 8050
    web_concurrency: int = 2
    web_threads: int = 4                  # gunicorn threads per web worker (WEB_THREADS)
    db_pool_size: int = 0                 # connections kept per process; 0: threads + 1
    db_max_overflow: int = -1             # extra connections under load; -1: as many as threads
    torch_threads: int = 0                # 0: let torch decide
    inference_precision: str = "auto"     # "auto", "fp32" or "int8" (models.settings)
    lease_minutes: int = 30               # how long an image stays with its annotator
    background_deadline_s: int = 600      # a Dash background callback's process ends after this
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        # The data directory is made absolute once, here: every path derived from it (database,
        # blobs, exports, caches) is then the same whatever the working directory of the code
        # that uses it (a relative CELLLOOP_DATA_DIR once gave downloads that wrote to one
        # folder and read from another).
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser().resolve())
        if not self.project_creators:
            object.__setattr__(self, "project_creators",
                               "admins" if self.allow_registration else "everyone")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, dotenv: bool = True) -> "Config":
        """Build the configuration from `environ` (default: os.environ) over a `.env` file."""
        env: dict[str, str] = {}
        if dotenv and Path(".env").is_file():
            env.update({k: v for k, v in dotenv_values(".env").items() if v is not None})
        env.update(os.environ if environ is None else environ)
        cfg = cls(
            env=env.get("CELLLOOP_ENV", "development"),
            secret_key=env.get("SECRET_KEY", ""),
            data_dir=Path(env.get("CELLLOOP_DATA_DIR", "data")).expanduser(),
            database_url=env.get("DATABASE_URL", ""),
            redis_url=env.get("REDIS_URL", ""),
            storage_url=env.get("STORAGE_URL", ""),
            allow_registration=_flag(env.get("ALLOW_REGISTRATION"), False),
            project_creators=env.get("PROJECT_CREATORS", "").strip().lower(),
            login_max_failures=_int(env, "LOGIN_MAX_FAILURES", 10),
            api_rate_per_minute=_int(env, "API_RATE_PER_MINUTE", 600),
            proxy_fix_count=_int(env, "PROXY_FIX_COUNT", 0),
            max_content_length=_int(env, "MAX_CONTENT_LENGTH", 1 << 30),
            max_image_pixels=_int(env, "MAX_IMAGE_PIXELS", 1 << 28),
            max_image_bytes=_int(env, "MAX_IMAGE_BYTES", 512 << 20),
            max_archive_bytes=_int(env, "MAX_ARCHIVE_BYTES", 8 << 30),
            host=env.get("HOST", "127.0.0.1"),
            port=_int(env, "PORT", 8050),
            web_concurrency=_int(env, "WEB_CONCURRENCY", 2),
            web_threads=_int(env, "WEB_THREADS", 4),
            db_pool_size=_int(env, "DB_POOL_SIZE", 0),
            db_max_overflow=_int(env, "DB_MAX_OVERFLOW", -1),
            torch_threads=_int(env, "TORCH_THREADS", 0),
            inference_precision=env.get("INFERENCE_PRECISION", "auto").lower(),
            lease_minutes=_int(env, "LEASE_MINUTES", 30),
            background_deadline_s=_int(env, "BACKGROUND_DEADLINE_S", 600),
            log_level=env.get("LOG_LEVEL", "INFO").upper(),
        )
        return cfg.validated()

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes).validated()

    def validated(self) -> "Config":
        if self.env not in ENVIRONMENTS:
            raise ConfigError(f"CELLLOOP_ENV must be one of {', '.join(ENVIRONMENTS)}, got {self.env!r}")
        if self.is_production and len(self.secret_key) < 16:
            raise ConfigError(
                "SECRET_KEY must be set (at least 16 characters) when CELLLOOP_ENV=production. "
                "Generate one with: python -c 'import secrets; print(secrets.token_hex(32))'"
            )
        if self.project_creators not in ("everyone", "admins"):
            raise ConfigError("PROJECT_CREATORS must be everyone or admins, "
                              f"got {self.project_creators!r}")
        if self.lease_minutes < 1:
            raise ConfigError("LEASE_MINUTES must be at least 1")
        if self.background_deadline_s < 10:
            raise ConfigError("BACKGROUND_DEADLINE_S must be at least 10 seconds.")
        if self.inference_precision not in ("auto", "fp32", "int8"):
            raise ConfigError("INFERENCE_PRECISION must be auto, fp32 or int8, "
                              f"got {self.inference_precision!r}")
        if self.login_max_failures < 1:
            raise ConfigError("LOGIN_MAX_FAILURES must be at least 1")
        if self.api_rate_per_minute < 1:
            raise ConfigError("API_RATE_PER_MINUTE must be at least 1")
        if self.max_image_bytes < 1 << 20 or self.max_archive_bytes < 1 << 20:
            raise ConfigError("MAX_IMAGE_BYTES and MAX_ARCHIVE_BYTES must be at least 1 MiB "
                              "(1048576)")
        if self.web_threads < 1 or self.db_pool_size < 0:
            raise ConfigError("WEB_THREADS must be at least 1 and DB_POOL_SIZE 0 (auto) or more")
        if self.database_url and not self.database_url.startswith(
                ("sqlite", "postgres://", "postgresql")):
            raise ConfigError("DATABASE_URL must be sqlite:///... or "
                              "postgresql+psycopg://user:password@host:5432/db, "
                              f"got {self.database_url.split(':', 1)[0]}:...")
        if self.proxy_fix_count < 0:
            raise ConfigError("PROXY_FIX_COUNT must be 0 (no proxy) or more")
        return self

    def apply_to_models(self) -> None:
        """Process-wide settings of the model code (inference precision); imports no torch."""
        from models.settings import set_inference_precision
        set_inference_precision(self.inference_precision)

    # ------------------------------------------------------------------ derived values
    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            # Heroku-style hosting hands out postgres://, which SQLAlchemy 2 no longer accepts;
            # a bare postgresql:// would pick psycopg2, which is not installed: both mean
            # psycopg 3 here.
            for plain in ("postgres://", "postgresql://"):
                if self.database_url.startswith(plain):
                    return "postgresql+psycopg://" + self.database_url[len(plain):]
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'cellloop.sqlite').resolve()}"

    @property
    def celery_broker_url(self) -> str:
        if self.redis_url:
            return self.redis_url
        return f"sqla+sqlite:///{(self.data_dir / 'celery-broker.sqlite').resolve()}"

    @property
    def celery_result_backend(self) -> str:
        if self.redis_url:
            return self.redis_url
        return f"db+sqlite:///{(self.data_dir / 'celery-results.sqlite').resolve()}"

    @property
    def db_pool(self) -> tuple[int, int]:
        """(pool size, max overflow) of one process's engine (server databases only): a
        gunicorn worker serves `web_threads` requests at once, plus the health check and
        background callbacks, so it keeps threads + 1 connections and may open as many again
        under load. Postgres must allow hosts x WEB_CONCURRENCY x (size + overflow), plus the
        workers' (docs/deploy.md)."""
        size = self.db_pool_size or self.web_threads + 1
        overflow = self.db_max_overflow if self.db_max_overflow >= 0 else self.web_threads
        return size, overflow

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    def to_env(self) -> dict[str, str]:
        """The environment that rebuilds this configuration in a child process (a CLI command
        started by the web tier)."""
        env = {"CELLLOOP_ENV": self.env, "CELLLOOP_DATA_DIR": str(self.data_dir),
               "DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url,
               "STORAGE_URL": self.storage_url, "MAX_IMAGE_PIXELS": str(self.max_image_pixels),
               "MAX_IMAGE_BYTES": str(self.max_image_bytes),
               "INFERENCE_PRECISION": self.inference_precision,
               "TORCH_THREADS": str(self.torch_threads), "LOG_LEVEL": self.log_level,
               "DB_POOL_SIZE": str(self.db_pool_size),
               "DB_MAX_OVERFLOW": str(self.db_max_overflow)}
        if self.secret_key:
            env["SECRET_KEY"] = self.secret_key
        return env

    def resolve_secret_key(self) -> str:
        """The secret key; in development one is generated once and kept in the data directory,
        so that every gunicorn worker signs sessions with the same key."""
        if self.secret_key:
            return self.secret_key
        if self.is_production:  # validated() already refuses this; kept as a second guard
            raise ConfigError("SECRET_KEY is required in production")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / "secret_key"
        if not path.exists():
            # Write a temp file, then hard-link it into place: link() fails if another
            # worker won the race, and nobody ever reads a half-written key.
            tmp = self.data_dir / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
            tmp.write_text(secrets.token_hex(32))
            os.chmod(tmp, 0o600)
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        return path.read_text().strip()
