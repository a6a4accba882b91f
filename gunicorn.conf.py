"""gunicorn settings, from CellLoop's Config (PORT, HOST, WEB_CONCURRENCY, WEB_THREADS); each
worker's database pool is sized from the same threads (`Config.db_pool`)."""
from app.config import Config

_config = Config.from_env()

bind = f"{_config.host}:{_config.port}"
workers = max(1, _config.web_concurrency)
worker_class = "gthread"      # threads keep Dash's parallel callback requests flowing
threads = _config.web_threads
timeout = 120
graceful_timeout = 30
preload_app = False           # each worker builds its own app: no shared DB sockets after fork
accesslog = None              # the app logs each request with the user and duration
errorlog = "-"
loglevel = _config.log_level.lower()
