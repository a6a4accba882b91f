"""Move an embedded install (SQLite + blobs in the data directory) to the scale-out parts:
PostgreSQL (`DATABASE_URL`) and an object store (`STORAGE_URL`, e.g. s3://bucket/prefix).

`copy_install` brings the target database to the newest schema, refuses a target that
already holds accounts or projects, copies every table row for row (same ids, in foreign-key
order, in one transaction; Postgres sequences are moved past the copied ids), copies every
blob (checking that its bytes still hash to its key), and then verifies: the row count and a
content digest of each table are equal on both sides, and every blob read back from the
target hashes to its key. It returns a report; `python -m app copy-to` prints it.

Stop the web server and workers of the embedded install first (nothing may write meanwhile).
Run it again after a failure: the database copy is all or nothing, and blobs already in the
target are checked, not copied twice."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass, field

from sqlalchemy import func, select, text

from app import migrate
from app.config import Config
from app.db import Database
from app.deps import open_store
from app.tables import Base
from storage.blobstore import sha256_bytes

log = logging.getLogger(__name__)
BATCH = 1000


class CopyError(RuntimeError):
    """The copy cannot start or did not verify; the message says what to do."""


@dataclass
class CopyReport:
    rows: dict[str, int] = field(default_factory=dict)        # table -> rows copied
    digests: dict[str, str] = field(default_factory=dict)     # table -> content sha256
    blobs: int = 0                                            # blobs in the source
    blobs_copied: int = 0                                     # ... of which copied now
    blob_bytes: int = 0

    def lines(self) -> list[str]:
        out = [f"{name:22s} {n:8d} rows  sha256 {self.digests[name][:16]}"
               for name, n in self.rows.items()]
        out.append(f"blobs: {self.blobs} ({self.blob_bytes / 1e6:.1f} MB), "
                   f"{self.blobs_copied} copied now, all read back and hash-checked")
        return out


def _tables():
    return list(Base.metadata.sorted_tables)


def _value(v):
    if isinstance(v, dt.datetime):
        return v.replace(tzinfo=None).isoformat()
    if isinstance(v, float):
        return repr(round(v, 9))
    return v


def table_digest(db: Database, table) -> tuple[int, str]:
    """(rows, sha256 of the rows in primary-key order, as JSON): equal on both databases
    when the copy is exact."""
    digest, n = hashlib.sha256(), 0
    order = list(table.primary_key.columns) or list(table.columns)
    with db.engine.connect() as conn:
        for row in conn.execute(select(table).order_by(*order)).yield_per(BATCH):
            digest.update(json.dumps([_value(v) for v in row], sort_keys=True,
                                     default=str).encode())
            n += 1
    return n, digest.hexdigest()


def _copy_rows(source: Database, target: Database, report: CopyReport) -> None:
    with target.engine.connect() as conn:
        taken = [t.name for t in _tables()
                 if conn.execute(select(func.count()).select_from(t)).scalar()]
    if taken:
        if all(table_digest(source, t) == table_digest(target, t) for t in _tables()):
            log.info("the target already holds exactly these rows (an earlier run): "
                     "copying the blobs only")
            report.rows = {t.name: table_digest(target, t)[0] for t in _tables()}
            return
        raise CopyError(f"the target database already has other rows (in {', '.join(taken)}); "
                        "copy into a new, empty database")
    with target.engine.begin() as out:
        for table in _tables():
            order = list(table.primary_key.columns) or list(table.columns)
            n = 0
            with source.engine.connect() as src:
                batch = []
                for row in src.execute(select(table).order_by(*order)).yield_per(BATCH):
                    batch.append(dict(row._mapping))
                    if len(batch) >= BATCH:
                        out.execute(table.insert(), batch)
                        n += len(batch)
                        batch = []
                if batch:
                    out.execute(table.insert(), batch)
                    n += len(batch)
            report.rows[table.name] = n
        if out.dialect.name == "postgresql":
            # ids were copied as they are: start each sequence after the highest one
            for table in _tables():
                pk = list(table.primary_key.columns)
                if len(pk) == 1 and pk[0].autoincrement in (True, "auto") and \
                        pk[0].type.python_type is int:
                    out.execute(text(
                        f"SELECT setval(pg_get_serial_sequence('\"{table.name}\"', "
                        f"'{pk[0].name}'), COALESCE((SELECT max(\"{pk[0].name}\") FROM "
                        f"\"{table.name}\"), 0) + 1, false)"))


def _copy_blobs(source_store, target_store, report: CopyReport) -> None:
    for key in source_store.keys():
        report.blobs += 1
        if target_store.exists(key):
            continue
        data = source_store.get_bytes(key)
        if sha256_bytes(data) != key:
            raise CopyError(f"blob {key} in the source does not hash to its key (damaged); "
                            "restore it from a backup, then copy again")
        target_store.put_bytes(data)
        report.blobs_copied += 1


def _verify(source: Database, target: Database, source_store, target_store,
            report: CopyReport) -> None:
    for table in _tables():
        a = table_digest(source, table)
        b = table_digest(target, table)
        if a != b:
            raise CopyError(f"table {table.name}: source has {a[0]} rows ({a[1][:12]}), "
                            f"target {b[0]} ({b[1][:12]})")
        report.digests[table.name] = a[1]
    for key in source_store.keys():
        data = target_store.get_bytes(key)
        if sha256_bytes(data) != key:
            raise CopyError(f"blob {key} in the target does not hash to its key")
        report.blob_bytes += len(data)


def copy_install(source: Config, database_url: str, storage_url: str) -> CopyReport:
    """Copy the install `source` describes to `database_url` + `storage_url`, verified."""
    if not database_url or not storage_url:
        raise CopyError("give both the target database (postgresql+psycopg://...) and the "
                        "target store (s3://bucket/prefix)")
    target = source.replace(database_url=database_url, storage_url=storage_url)
    if target.sqlalchemy_url == source.sqlalchemy_url:
        raise CopyError("the target database is the source database")
    migrate.upgrade(target)
    src_db, dst_db = Database(source.sqlalchemy_url), Database(target.sqlalchemy_url)
    src_store, dst_store = open_store(source), open_store(target)
    report = CopyReport()
    try:
        _copy_rows(src_db, dst_db, report)
        log.info("copied %d rows in %d tables", sum(report.rows.values()), len(report.rows))
        _copy_blobs(src_store, dst_store, report)
        log.info("copied %d of %d blobs", report.blobs_copied, report.blobs)
        _verify(src_db, dst_db, src_store, dst_store, report)
    finally:
        src_db.engine.dispose()
        dst_db.engine.dispose()
    return report
