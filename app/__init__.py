"""CellLoop's application layer: configuration, database, authentication, services, jobs
and the CLI. The web process is put together in `app.wsgi` (Flask server from `app.server`,
Dash UI from `pages`); importing this package imports nothing else."""
