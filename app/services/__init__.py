"""The application's verbs. Each takes a SQLAlchemy `Session` and the acting user, checks
permission, and returns plain data. Pages, CLI, jobs and tests all call these functions;
callers commit the session (the request teardown or `Database.session_scope`)."""
