"""Background jobs: Celery tasks in a worker process, state in `Job` rows.

The web side creates a `Job` row and sends the task `cellloop.run_job(job_id)`; the worker
runs the handler registered for the job's kind, writing progress into the row, checking
the cancel flag between steps. Pages poll the row, so any tab, gunicorn worker or restart
sees the same state.
"""
