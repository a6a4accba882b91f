#!/usr/bin/env bash
# Install CellLoop, prepare the database and the demo project, then start the web server
# (gunicorn, http://127.0.0.1:$PORT, default 8050) and two background workers: one for model
# work (queue gpu: training, scoring, prediction) and one for files (queue cpu: imports,
# exports), so an import never waits behind a training; with REDIS_URL set, a third (queue
# ui) for the pages' background callbacks (docs/deploy.md).
# Usage: ./run.sh [--no-demo]      Stop with Ctrl+C.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh

.venv/bin/python -m app init-db
if [ "${1:-}" != "--no-demo" ]; then
  .venv/bin/python -m app demo
fi

.venv/bin/python -m app worker --queues gpu &
gpu_worker=$!
.venv/bin/python -m app worker --queues cpu &
cpu_worker=$!
ui_worker=""
# With REDIS_URL the pages' background callbacks are Celery tasks: a third worker runs them.
if [ "$(.venv/bin/python -c 'from app.config import Config; print(int(bool(Config.from_env().redis_url)))')" = "1" ]; then
  .venv/bin/python -m app worker --queues ui &
  ui_worker=$!
fi
cleanup() {
  kill "$gpu_worker" "$cpu_worker" $ui_worker 2>/dev/null || true
  wait "$gpu_worker" "$cpu_worker" $ui_worker 2>/dev/null || true
}
trap cleanup EXIT INT TERM

port="${PORT:-8050}"
echo
echo "CellLoop is starting on http://${HOST:-127.0.0.1}:${port}  (Ctrl+C stops it)"
echo
.venv/bin/gunicorn -c gunicorn.conf.py app.wsgi:application
