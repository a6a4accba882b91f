"""For migrations that change a default of the learning loop: projects made before keep the
value they ranked with, written into their settings (a value they stored stays)."""
import json

import sqlalchemy as sa


def _settings(value) -> dict:
    if value is None:
        return {}
    return json.loads(value) if isinstance(value, str) else dict(value)


def keep_loop_setting(bind, key: str, old_default) -> None:
    """Write `old_default` as settings["active_learning"][key] of every project that stored
    no value for `key`."""
    project = sa.table("project", sa.column("id", sa.Integer), sa.column("settings", sa.JSON))
    for pid, raw in bind.execute(sa.select(project.c.id, project.c.settings)).all():
        settings = _settings(raw)
        loop = dict(settings.get("active_learning") or {})
        if key in loop:
            continue
        loop[key] = old_default
        bind.execute(project.update().where(project.c.id == pid)
                     .values(settings={**settings, "active_learning": loop}))
