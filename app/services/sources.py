"""Where images to import come from: files, folders, .zip archives, HDF5 sample files, and
Label Studio exports. Each source becomes a lazy stream of `ImportFile`s (bytes are read
only when that file is imported), so thousands of files keep memory flat.

Every source is checked from its headers before anything is decoded (a zip from its
directory, an HDF5 file from its layout, a Label Studio export task by task), against the
per-image and per-archive limits (MAX_IMAGE_BYTES, MAX_ARCHIVE_BYTES); a refused source
yields a message naming the file and nothing of it is imported.

Ground-truth masks are matched to images by file stem (`app.services.formats`): for image
`cell_01.tif` a mask named `cell_01`, `cell_01_masks`, `cell_01_mask`, `cell_01_labels` or
`cell_01_label` (any supported extension) is used.

Items may be read after their source's stream has ended (a caller that makes a list first):
a zip is then opened again for each read, so no item ever meets a closed archive.
"""
from __future__ import annotations

import contextlib
import json
import posixpath
import zipfile
from pathlib import Path
from typing import Iterator

from app.services.formats import (MASK_FOLDERS, MASK_SUFFIXES, MASK_UPLOAD_SUFFIXES,
                                  image_stem_of_mask, mask_suffix, stem, unsupported)
from app.services.imports import ImportFile
from storage import hdf5
from storage.archive import (MAX_TOTAL_BYTES, ArchiveEntry, ArchiveError, list_entries,
                             open_zip, read_entry)
from storage.labelstudio import LabelStudioError, parse_task, task_label
from storage.readers import DEFAULT_MAX_BYTES, IMAGE_SUFFIXES, ImageData, ImageReadError


class SourceProblem(Exception):
    """A whole source cannot be used (its files are reported as rejected)."""


def mask_index(masks_dir: Path | None) -> dict[str, Path]:
    """stem -> mask path, for every accepted mask-name variant."""
    if masks_dir is None:
        return {}
    if not masks_dir.is_dir():
        raise SourceProblem(f"{masks_dir}: the masks folder does not exist.")
    index: dict[str, Path] = {}
    for p in sorted(masks_dir.rglob("*")):
        if p.is_file() and _is_image_name(p.name):
            if mask_suffix(p.name):  # "a_masks.tif" is the mask of "a", even if "a.tif" is here
                index[image_stem_of_mask(p.name)] = p
            else:
                index.setdefault(stem(p.name), p)
    return index


POINTS_SUFFIXES = ("_points", "")
POINTS_FOLDERS = ("points",)


def points_index(points_dir: Path | None) -> dict[str, Path]:
    """stem -> points CSV (`a.csv` or `a_points.csv` holds the points of image `a`)."""
    if points_dir is None:
        return {}
    if not points_dir.is_dir():
        raise SourceProblem(f"{points_dir}: the points folder does not exist.")
    index: dict[str, Path] = {}
    for p in sorted(points_dir.rglob("*.csv")):
        if p.is_file() and not p.name.startswith("."):
            _add_points(index, p.name, p)
    return index


def _add_points(index: dict, name: str, item) -> None:
    """File `item` (a points CSV called `name`) under its image's stem: `a_points.csv` is
    the points of `a` even when `a.csv` is there too."""
    s = name[:-4]
    if s.endswith("_points") and len(s) > 7:
        index[s[:-7]] = item
    else:
        index.setdefault(s, item)


def _is_image_name(name: str) -> bool:
    lower = name.lower()
    return any(lower.endswith(s) for s in IMAGE_SUFFIXES) and not lower.startswith(".")


def _file_item(path: Path, masks: dict[str, Path], display_name: str | None = None,
               points: dict[str, Path] | None = None) -> ImportFile:
    mask = masks.get(stem(path.name))
    if mask is not None and mask.resolve() == path.resolve():
        mask = None
    found = (points or {}).get(stem(path.name))
    return ImportFile(display_name or path.name, read=path.read_bytes,
                      read_labels=mask.read_bytes if mask else None,
                      labels_name=mask.name if mask else "",
                      read_points=found.read_bytes if found else None,
                      points_name=found.name if found else "")


class _Archive:
    """The zip a source's items read from: the stream's open handle while the stream runs,
    or, once the stream has closed it (items kept in a list), the file opened again for
    that one read."""

    def __init__(self, path: Path):
        self.path = path
        self.zf: zipfile.ZipFile | None = None

    def reader(self, entry: ArchiveEntry, limit: int):
        return lambda: self.read(entry, limit)

    def read(self, entry: ArchiveEntry, limit: int) -> bytes:
        if self.zf is not None and self.zf.fp is not None:
            return read_entry(self.zf, entry, limit)
        with open(self.path, "rb") as fh, open_zip(self.path.name, fh) as zf:
            return read_entry(zf, entry, limit)


@contextlib.contextmanager
def _listed_zip(path: Path, limit: int, max_image_bytes: int, max_archive_bytes: int):
    """(the zip open for reading, its usable entries, problems with the refused ones), judged
    from the directory before anything is inflated."""
    archive = _Archive(path)
    with open(path, "rb") as fh, open_zip(path.name, fh) as zf:
        archive.zf = zf
        entries, problems = list_entries(path.name, zf, max_archive_bytes,
                                         min(limit, max_image_bytes))
        yield archive, entries, problems


def _zip_items(path: Path, masks: dict[str, Path], limit: int,
               max_image_bytes: int = DEFAULT_MAX_BYTES, max_archive_bytes: int = MAX_TOTAL_BYTES,
               points: dict[str, Path] | None = None) -> Iterator[ImportFile | str]:
    """Items from a zip; entries under a folder named masks/labels are used as ground truth
    for images of the same stem, and CSVs under a folder named points (`a.csv` or
    `a_points.csv`) as the cell centres of image `a` (counting projects; `points`, a folder
    outside the zip, also applies). Yields problem strings for refused entries; raises
    ArchiveError for a bomb (judged from the directory, before anything is inflated)."""
    with _listed_zip(path, limit, max_image_bytes, max_archive_bytes) as (archive, entries,
                                                                          problems):
        yield from problems
        inner_masks, inner_points = {}, {}
        images = []
        for e in entries:
            if (e.name.lower().endswith(".csv")
                    and posixpath.basename(e.folder).lower() in POINTS_FOLDERS):
                _add_points(inner_points, e.name, e)
                continue
            if not _is_image_name(e.name):
                if not e.name.lower().endswith((".json", ".txt", ".md", ".csv")):
                    yield unsupported(f"{path.name}: {e.path}")
                continue
            if posixpath.basename(e.folder).lower() in MASK_FOLDERS:
                s = stem(e.name)
                for suffix in MASK_SUFFIXES:
                    if suffix and s.endswith(suffix):
                        inner_masks.setdefault(s[: -len(suffix)], e)
                inner_masks[s] = e
            else:
                images.append(e)
        for e in images:
            mask = inner_masks.get(stem(e.name))
            outer = masks.get(stem(e.name))
            read_labels = (archive.reader(mask, limit) if mask else
                           (outer.read_bytes if outer else None))
            pts, outer_pts = inner_points.get(stem(e.name)), (points or {}).get(stem(e.name))
            read_points = (archive.reader(pts, limit) if pts else
                           outer_pts.read_bytes if outer_pts else None)
            yield ImportFile(e.path, read=archive.reader(e, limit), read_labels=read_labels,
                             labels_name=(mask.path if mask else outer.name if outer else ""),
                             read_points=read_points,
                             points_name=(pts.path if pts else outer_pts.name if outer_pts
                                          else ""))


def mask_items(paths: list[Path], limit: int = 4 << 30,
               max_image_bytes: int = DEFAULT_MAX_BYTES,
               max_archive_bytes: int = MAX_TOTAL_BYTES) -> Iterator[ImportFile | str]:
    """Label images to attach to images already in a project: every image file, in folders
    and zips alike (whatever folder it is in), as an item whose `read` gives its bytes."""
    for path in paths:
        path = Path(path)
        if path.is_dir():
            for p in sorted(p for p in path.rglob("*") if p.is_file()):
                yield from mask_items([p], limit, max_image_bytes, max_archive_bytes)
        elif path.suffix.lower() == ".zip":
            try:
                yield from _zip_masks(path, limit, max_image_bytes, max_archive_bytes)
            except ArchiveError as exc:
                yield str(exc)
        elif _is_image_name(path.name) and path.suffix.lower() not in (".h5", ".hdf5"):
            yield ImportFile(path.name, read=path.read_bytes)
        else:
            yield unsupported(path.name, MASK_UPLOAD_SUFFIXES)


def _zip_masks(path: Path, limit: int, max_image_bytes: int, max_archive_bytes: int
               ) -> Iterator[ImportFile | str]:
    with _listed_zip(path, limit, max_image_bytes, max_archive_bytes) as (archive, entries,
                                                                          problems):
        yield from problems
        for e in entries:
            if _is_image_name(e.name) and not e.name.lower().endswith((".h5", ".hdf5")):
                yield ImportFile(e.path, read=archive.reader(e, limit))
            elif not e.name.lower().endswith((".json", ".txt", ".md", ".csv")):
                yield unsupported(f"{path.name}: {e.path}", MASK_UPLOAD_SUFFIXES)


def _hdf5_items(path: Path, max_pixels: int, max_bytes: int = DEFAULT_MAX_BYTES
                ) -> Iterator[ImportFile]:
    """One lazy item per sample: the whole file's layout is checked first (a malformed file
    raises ImageReadError and nothing of it is imported); each sample's pixels are read only
    when it is imported."""
    for info in hdf5.list_samples(path, max_pixels, max_bytes):
        yield ImportFile(
            info.name, load=lambda info=info: ImageData(hdf5.load_image(path, info), "ZCYX"),
            load_labels=(lambda info=info: hdf5.load_labels(path, info, 0))
            if info.n_labels else None,
            labels_name=f"{path.name}:/samples/{info.key}/label_0")


def iter_import_files(paths: list[Path], masks_dir: Path | None = None,
                      max_pixels: int = 1 << 28, max_file_bytes: int = 4 << 30,
                      max_image_bytes: int = DEFAULT_MAX_BYTES,
                      max_archive_bytes: int = MAX_TOTAL_BYTES,
                      points_dir: Path | None = None) -> Iterator[ImportFile | str]:
    """ImportFiles from files/folders/zips/HDF5, plus strings describing refused inputs.

    `max_image_bytes` (decoded bytes per image) and `max_archive_bytes` (sum of a zip's
    declared sizes) are Config.max_image_bytes and Config.max_archive_bytes. `points_dir`:
    a folder of point CSVs matched to image files by stem (counting projects)."""
    masks = mask_index(masks_dir)
    mask_files = set(masks.values())
    points = points_index(points_dir)
    point_files = {p.resolve() for p in points.values()}

    def is_mask(p: Path, folder: Path) -> bool:
        if p not in mask_files:
            return False
        # masks kept beside their images must carry a suffix such as _masks
        same = masks_dir is not None and masks_dir.resolve() == folder.resolve()
        return not same or any(stem(p.name).endswith(x) for x in MASK_SUFFIXES if x)

    for path in paths:
        path = Path(path)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            for p in files:
                if is_mask(p, p.parent) or p.resolve() in point_files:
                    continue
                if p.suffix.lower() == ".zip" or p.suffix.lower() in (".h5", ".hdf5"):
                    yield from iter_import_files([p], None, max_pixels, max_file_bytes,
                                                 max_image_bytes, max_archive_bytes,
                                                 points_dir)
                elif _is_image_name(p.name):
                    yield _file_item(p, masks, str(p.relative_to(path)), points)
                else:
                    yield unsupported(str(p.relative_to(path)))
        elif not path.exists():
            yield f"{path}: no such file or folder."
        elif path.suffix.lower() == ".zip":
            try:
                yield from _zip_items(path, masks, max_file_bytes, max_image_bytes,
                                      max_archive_bytes, points)
            except ArchiveError as exc:
                yield str(exc)
        elif path.suffix.lower() in (".h5", ".hdf5"):
            try:
                items = list(_hdf5_items(path, max_pixels, max_image_bytes))
            except ImageReadError as exc:
                yield f"{exc} Nothing was imported from {path.name}."
            else:
                yield from items
        else:
            yield _file_item(path, masks, points=points)


def labelstudio_items(export_path: Path, image_dir: Path, max_pixels: int = 1 << 28,
                      max_image_bytes: int = DEFAULT_MAX_BYTES, max_json_bytes: int = 1 << 30
                      ) -> Iterator[ImportFile | str]:
    """ImportFiles for the tasks of a Label Studio JSON export whose images are in
    `image_dir` (matched by file name; Label Studio's upload prefix `abcd1234-` is ignored).

    Every task is checked (fields, sizes, mask codes) before the first is imported: a
    malformed export is refused as a whole, naming the file and the task, and nothing of it
    is imported. Masks are then drawn one task at a time."""
    name = export_path.name
    try:
        size = export_path.stat().st_size
        if size > max_json_bytes:
            yield (f"{name}: {size / 2**20:,.0f} MiB is more than the limit of "
                   f"{max_json_bytes / 2**20:,.0f} MiB for a Label Studio export.")
            return
        tasks = json.loads(export_path.read_text())
    except (OSError, ValueError) as exc:
        yield f"{name}: not a readable Label Studio JSON export ({exc})."
        return
    if not isinstance(tasks, list):
        yield (f"{name}: expected a list of tasks (a Label Studio JSON export), not "
               f"{type(tasks).__name__}.")
        return
    for i, task in enumerate(tasks):
        try:
            parse_task(task, max_pixels, dry_run=True, max_bytes=max_image_bytes)
        except LabelStudioError as exc:
            yield (f"{name}: {task_label(task, i)}: {exc}. Nothing was imported from this "
                   "export; fix or remove that task and import it again.")
            return
    files = {p.name: p for p in image_dir.rglob("*") if p.is_file()}
    by_stem: dict[str, list[Path]] = {}
    tiff_first = sorted(files.values(),        # a TIFF first: it has the full data
                        key=lambda p: (p.suffix.lower() not in (".tif", ".tiff"), p.name))
    for p in tiff_first:
        by_stem.setdefault(stem(p.name), []).append(p)
    for i, task in enumerate(tasks):
        try:
            parsed = parse_task(task, max_pixels, max_bytes=max_image_bytes)
        except LabelStudioError as exc:   # checked above; kept so a task never half-imports
            yield f"{name}: {task_label(task, i)}: {exc}."
            continue
        base = posixpath.basename(parsed.image.split("?")[0])
        path = files.get(base) or files.get(base.split("-", 1)[-1])
        if path is None:
            # the same image under another format: CellLoop's export names a PNG copy
            # (images/<stem>.png) of the image its tiff/ folder holds as <stem>.tif
            for key in (stem(base), stem(base.split("-", 1)[-1])):
                if by_stem.get(key):
                    path = by_stem[key][0]
                    break
        if path is None:
            yield f"{name}: image {base!r} is not in {image_dir}."
            continue
        labels = parsed.labels
        yield ImportFile(path.name, read=path.read_bytes,
                         load_labels=(lambda labels=labels: labels) if labels is not None else None,
                         labels_name=f"{name}:{base}",
                         points=tuple(parsed.points))
