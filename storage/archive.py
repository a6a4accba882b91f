"""Read image files out of .zip archives safely.

Refused: entries with absolute paths or `..` (zip slip), encrypted entries, and zip bombs,
judged from the archive's directory before anything is inflated: more entries than
`MAX_ENTRIES`, a sum of declared uncompressed sizes above the archive limit
(Config.max_archive_bytes), one entry above the per-file limit (Config.max_image_bytes),
or an entry that would inflate more than `MAX_RATIO` times. Entries are read one at a time,
so memory stays flat in the number of files. Hidden files and folders (`__MACOSX/`,
`.DS_Store`) are skipped.
"""
from __future__ import annotations

import posixpath
import zipfile
import zlib
from dataclasses import dataclass
from typing import IO, Iterator

MAX_ENTRIES = 100_000
MAX_TOTAL_BYTES = 8 << 30          # default of Config.max_archive_bytes (MAX_ARCHIVE_BYTES)
MAX_ENTRY_BYTES = 512 << 20        # default of Config.max_image_bytes (MAX_IMAGE_BYTES)
MAX_RATIO = 1000                   # deflate tops out near 1032x: only constant data gets here
RATIO_FREE_BYTES = 64 << 20        # entries smaller than this may inflate as much as they like


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


def _human(n: float) -> str:
    from storage.readers import human_bytes
    return human_bytes(n)


def check_directory(archive_name: str, zf: zipfile.ZipFile, max_total_bytes: int | None = None,
                    max_entry_bytes: int | None = None) -> None:
    """Raise ArchiveError if the zip's directory declares a bomb; inflates nothing."""
    max_total = MAX_TOTAL_BYTES if max_total_bytes is None else max_total_bytes
    max_entry = MAX_ENTRY_BYTES if max_entry_bytes is None else max_entry_bytes
    infos = zf.infolist()
    if len(infos) > MAX_ENTRIES:
        raise ArchiveError(f"{archive_name}: {len(infos):,} entries is more than {MAX_ENTRIES:,}.")
    total = sum(i.file_size for i in infos)
    if total > max_total:
        raise ArchiveError(f"{archive_name}: unpacks to {_human(total)}, more than the limit of "
                           f"{_human(max_total)} per archive; refused before unpacking anything "
                           "(an administrator can raise MAX_ARCHIVE_BYTES).")
    for info in infos:
        if info.is_dir():
            continue
        if info.file_size > max_entry:
            raise ArchiveError(
                f"{archive_name}: {info.filename} unpacks to {_human(info.file_size)}, more "
                f"than the limit of {_human(max_entry)} per file; refused before unpacking "
                "anything (an administrator can raise MAX_IMAGE_BYTES).")
        ratio = info.file_size / max(1, info.compress_size)
        if info.file_size > RATIO_FREE_BYTES and ratio > MAX_RATIO:
            raise ArchiveError(
                f"{archive_name}: {info.filename} would inflate {ratio:,.0f} times "
                f"({_human(info.compress_size)} to {_human(info.file_size)}), more than "
                f"{MAX_RATIO:,}: a compression bomb; refused before unpacking anything.")


def list_entries(archive_name: str, zf: zipfile.ZipFile, max_total_bytes: int | None = None,
                 max_entry_bytes: int | None = None) -> tuple[list[ArchiveEntry], list[str]]:
    """(usable file entries, problems) for a zip; raises ArchiveError for a bomb."""
    check_directory(archive_name, zf, max_total_bytes, max_entry_bytes)
    infos = zf.infolist()
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
    try:
        with zf.open(entry.member) as fh:
            data = fh.read(cap + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
            RuntimeError) as exc:
        raise ArchiveError(f"{entry.path}: cannot unpack it ({exc}).") from None
    if len(data) > cap:
        raise ArchiveError(f"{entry.path}: larger than declared or than the upload limit.")
    return data
