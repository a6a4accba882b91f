"""Read image files out of .zip archives safely.

Refused: entries with absolute paths or `..` (zip slip), more entries or more uncompressed
bytes than the limits (zip bombs), encrypted entries. Entries are read one at a time, so
memory stays flat in the number of files. Hidden files and folders (`__MACOSX/`, `.DS_Store`)
are skipped.
"""
from __future__ import annotations

import posixpath
import zipfile
from dataclasses import dataclass
from typing import IO, Iterator

MAX_ENTRIES = 100_000
MAX_TOTAL_BYTES = 64 << 30


class ArchiveError(ValueError):
    """The archive as a whole cannot be used; the message names it."""


@dataclass(frozen=True)
class ArchiveEntry:
    path: str      # normalised path inside the archive, "/"-separated
    size: int
    member: str    # the name as stored in the zip

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def folder(self) -> str:
        return posixpath.dirname(self.path)


def _safe_path(name: str) -> str | None:
    """The normalised relative path, or None if it would escape the archive."""
    name = name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    norm = posixpath.normpath(name)
    if norm == ".." or norm.startswith("../") or "/../" in f"/{norm}/":
        return None
    return norm


def list_entries(archive_name: str, zf: zipfile.ZipFile) -> tuple[list[ArchiveEntry], list[str]]:
    """(usable file entries, problems) for a zip; raises ArchiveError for a bomb."""
    infos = zf.infolist()
    if len(infos) > MAX_ENTRIES:
        raise ArchiveError(f"{archive_name}: {len(infos):,} entries is more than {MAX_ENTRIES:,}.")
    total = sum(i.file_size for i in infos)
    if total > MAX_TOTAL_BYTES:
        raise ArchiveError(f"{archive_name}: unpacks to {total / 2**30:.1f} GiB, more than "
                           f"{MAX_TOTAL_BYTES / 2**30:.0f} GiB.")
    entries, problems = [], []
    for info in infos:
        if info.is_dir():
            continue
        path = _safe_path(info.filename)
        if path is None:
            problems.append(f"{archive_name}: {info.filename}: refused, the path leaves the "
                            "archive (absolute or '..').")
            continue
        parts = path.split("/")
        if any(p.startswith(".") or p == "__MACOSX" for p in parts):
            continue
        if info.flag_bits & 0x1:
            problems.append(f"{archive_name}: {info.filename}: refused, the entry is encrypted.")
            continue
        entries.append(ArchiveEntry(path, info.file_size, info.filename))
    return entries, problems


def open_zip(archive_name: str, fileobj: IO[bytes]) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError(f"{archive_name}: not a readable .zip archive ({exc}).") from None


def read_entry(zf: zipfile.ZipFile, entry: ArchiveEntry, limit: int) -> bytes:
    """Read one entry, stopping if it inflates beyond its declared size or `limit`."""
    cap = min(entry.size, limit)
    with zf.open(entry.member) as fh:
        data = fh.read(cap + 1)
    if len(data) > cap:
        raise ArchiveError(f"{entry.path}: larger than declared or than the upload limit.")
    return data
