"""Hostile and malformed inputs through the import services (browser upload, the import job's
sources, Label Studio): each is a clear rejection naming the file, decided before anything
big is decoded, and leaves nothing behind (no Image row, no annotation, no blob)."""
import base64
import json
import math
import tracemalloc

import h5py
import numpy as np
import pytest
from sqlalchemy import func, select

from app.services import display, imports, uploads
from app.services.sources import iter_import_files, labelstudio_items
from app.tables import Annotation, Image
from storage.hdf5 import Sample, write_samples
from storage.labelstudio import encode_brush_rle
from tests.conftest import actor
from tests.images_data import png
from tests.storage import bombs

MiB = 1 << 20


def counts(session, store):
    """(images, annotations, blobs) now in the app."""
    blobs = [p for p in store.root.rglob("*") if p.is_file() and p.parent.name != "tmp"]
    return (session.scalar(select(func.count(Image.id))),
            session.scalar(select(func.count(Annotation.id))), len(blobs))


def traced(fn):
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1] / MiB
    finally:
        tracemalloc.stop()


def data_url(data: bytes) -> str:
    return "data:application/octet-stream;base64," + base64.b64encode(data).decode()


def do_upload(session, store, config, world, files, sent):
    return uploads.upload(session, actor(session, "owner"), store, config,
                          world["project_id"], files, sent.append)


def test_uploaded_tiff_bomb_is_refused_in_the_web_worker_before_decoding(
        session, store, config, world):
    sent = []
    bomb = bombs.zlib_tiff(16384, np.float32)
    out, peak = traced(lambda: do_upload(session, store, config, world,
                                         [("bomb.tif", data_url(bomb))], sent))
    assert out.job_id is None and sent == []
    [result] = out.results
    assert result.status == "rejected" and result.message.startswith("bomb.tif: decodes to 1.0 GiB")
    assert "MAX_IMAGE_BYTES" in result.message
    assert peak < 32, f"{peak:.0f} MiB traced"
    assert counts(session, store) == (0, 0, 0)


def test_uploaded_header_bombs_png_and_npy(session, store, config, world):
    sent = []
    files = [("huge.png", data_url(bombs.png(50000, 50000, genuine=False))),
             ("huge.npy", data_url(bombs.npy_header((16000, 16000), np.float32)))]
    out, peak = traced(lambda: do_upload(session, store, config, world, files, sent))
    assert [r.status for r in out.results] == ["rejected", "rejected"] and sent == []
    assert out.results[0].message.startswith("huge.png:")
    assert out.results[1].message.startswith("huge.npy:") and "MAX_IMAGE_BYTES" in \
        out.results[1].message
    assert peak < 16 and counts(session, store) == (0, 0, 0)


def test_big_but_allowed_images_are_decoded_by_the_job_not_the_web_worker(
        session, store, config, world, tmp_path):
    sent = []
    big = bombs.zlib_tiff(4608, np.float32, rows_per_strip=512)      # 81 MiB decoded
    small = png(np.full((20, 30), 7, np.uint8))
    out, peak = traced(lambda: do_upload(session, store, config, world,
                                         [("big.tif", data_url(big)), ("small.png", small)],
                                         sent))
    assert out.job_id is not None and sent == [out.job_id] and out.results == []
    assert peak < 24, f"{peak:.0f} MiB traced: something was decoded in the web worker"
    assert counts(session, store) == (0, 0, 0)
    staged = next((config.data_dir / "staging").iterdir()) / "images"
    assert sorted(p.name for p in staged.iterdir()) == ["big.tif", "small.png"]
    # the job's path imports it
    results = imports.import_files(session, actor(session, "owner"), store,
                                  world["project_id"], iter_import_files([staged]), 1 << 28)
    assert [r.status for r in results] == ["imported", "imported"]


def test_uploaded_zip_bomb_is_refused_from_its_directory(session, store, config, world, tmp_path):
    sent = []
    path = bombs.zeros_zip(tmp_path / "bomb.zip", {"zeros.tif": 600 * MiB}, level=1)
    out, peak = traced(lambda: do_upload(session, store, config, world,
                                         [("bomb.zip", data_url(path.read_bytes()))], sent))
    assert out.job_id is None and sent == []
    [result] = out.results
    assert result.status == "rejected"
    assert result.message.startswith("bomb.zip: zeros.tif unpacks to 600.0 MiB")
    assert peak < 32 and counts(session, store) == (0, 0, 0)


def test_archive_limit_is_the_configured_one(session, store, config, world, tmp_path):
    path = bombs.zeros_zip(tmp_path / "many.zip", {f"{i}.tif": 2 * MiB for i in range(3)})
    out = do_upload(session, store, config.replace(max_archive_bytes=4 * MiB), world,
                    [("many.zip", path.read_bytes())], [])
    assert "MAX_ARCHIVE_BYTES" in out.results[0].message


def test_zip_bomb_in_the_job_path_imports_nothing(session, store, world, tmp_path):
    folder = tmp_path / "staged"
    folder.mkdir()
    bombs.zeros_zip(folder / "bomb.zip", {"a.tif": 1000, "zeros.tif": 600 * MiB}, level=1)

    def run():
        return imports.import_files(session, actor(session, "owner"), store,
                                   world["project_id"], iter_import_files([folder]), 1 << 28)
    results, peak = traced(run)
    assert [r.status for r in results] == ["rejected"]
    assert results[0].message.startswith("bomb.zip: zeros.tif unpacks to 600.0 MiB")
    assert peak < 32 and counts(session, store) == (0, 0, 0)


def write_h5(path, samples, n_labels=None):
    write_samples(path, samples)
    if n_labels is not None:
        with h5py.File(path, "a") as f:
            f["samples/000001"].attrs["n_labels"] = n_labels
    return path


def sample(name, image):
    labels = np.zeros(image.shape[-2:], np.uint16)
    labels[2:5, 2:5] = 1
    return Sample(name, image, [labels])


def test_hdf5_nan_sample_is_refused_and_auto_contrast_stays_numeric(session, store, world,
                                                                    tmp_path):
    good = np.linspace(0, 1, 20 * 30, dtype=np.float32).reshape(1, 1, 20, 30)
    bad = good.copy()
    bad[0, 0, 3, 3] = np.nan
    path = write_h5(tmp_path / "floats.h5", [sample("good.tif", good), sample("bad.tif", bad)])
    owner = actor(session, "owner")
    results = imports.import_files(session, owner, store, world["project_id"],
                                  iter_import_files([path]), 1 << 28)
    assert [r.status for r in results] == ["imported", "rejected"]
    assert results[1].message.startswith("floats.h5:/samples/000001: ")
    assert "NaN or infinite" in results[1].message
    assert counts(session, store)[:2] == (1, 1)   # only the good sample and its labels
    limits = display.auto_contrast(session, owner, store, results[0].image_id)
    assert all(math.isfinite(v) for pair in limits for v in pair), limits


def test_hdf5_bad_n_labels_refuses_the_whole_file(session, store, world, tmp_path):
    img = np.ones((1, 1, 20, 30), np.uint8)
    path = write_h5(tmp_path / "attrs.h5", [sample("a.tif", img), sample("b.tif", img * 2)],
                    n_labels="two")
    results = imports.import_files(session, actor(session, "owner"), store, world["project_id"],
                                  iter_import_files([path]), 1 << 28)
    assert [r.status for r in results] == ["rejected"]
    message = results[0].message
    assert message.startswith("attrs.h5:/samples/000001: the n_labels attribute")
    assert "invalid literal" not in message and "Nothing was imported from attrs.h5" in message
    assert counts(session, store) == (0, 0, 0)


def ls_task(name, rle_or_result):
    result = rle_or_result if isinstance(rle_or_result, dict) else {
        "type": "brushlabels", "original_width": 30, "original_height": 20,
        "value": {"format": "rle", "rle": rle_or_result, "brushlabels": ["cell"]}}
    return {"id": name, "data": {"image": f"/data/upload/1/ab12cd34-{name}.png"},
            "annotations": [{"result": [result]}]}


@pytest.fixture
def ls_folder(tmp_path):
    folder = tmp_path / "ls"
    folder.mkdir()
    for name in ("one", "two"):
        (folder / f"{name}.png").write_bytes(png(np.full((20, 30), 9, np.uint8)))
    return folder


GOOD_RLE = encode_brush_rle(np.pad(np.ones((4, 4), bool), ((3, 13), (5, 21))))


@pytest.mark.parametrize("second", [
    {"type": "brushlabels", "original_width": 200000, "original_height": 200000,
     "value": {"rle": GOOD_RLE}},                                       # 37 GiB of labels
    {"type": "brushlabels", "original_width": 30, "original_height": 20,
     "value": {"rle": GOOD_RLE[:5]}},                                   # truncated code
    {"type": "polygonlabels", "original_width": 30, "original_height": 20,
     "value": {"points": [[0, 0], [1]]}},                               # broken points
    {"type": "keypointlabels", "original_width": "wide", "original_height": 20,
     "value": {"x": 1, "y": 1}},
])
def test_malformed_labelstudio_export_is_refused_whole(session, store, world, ls_folder,
                                                       tmp_path, second):
    export = tmp_path / "export.json"
    export.write_text(json.dumps([ls_task("one", GOOD_RLE), ls_task("two", second)]))
    items, peak = traced(lambda: list(labelstudio_items(export, ls_folder)))
    assert len(items) == 1 and isinstance(items[0], str) and peak < 16
    assert items[0].startswith("export.json: task 2 (id two, 'ab12cd34-two.png'): result 1")
    assert "Nothing was imported from this export" in items[0]
    results = imports.import_files(session, actor(session, "owner"), store,
                                  world["project_id"], items, 1 << 28)
    assert [r.status for r in results] == ["rejected"] and results[0].name == "export.json"
    assert counts(session, store) == (0, 0, 0)


@pytest.mark.parametrize("text, message", [
    ("[{", "not a readable Label Studio JSON export"),
    ('{"tasks": []}', "expected a list of tasks"),
    ("[1]", "task 1: a task must be a JSON object"),
])
def test_unusable_labelstudio_files_are_named(tmp_path, ls_folder, text, message):
    export = tmp_path / "bad.json"
    export.write_text(text)
    items = list(labelstudio_items(export, ls_folder))
    assert len(items) == 1 and items[0].startswith("bad.json: ") and message in items[0]


def test_good_labelstudio_export_still_imports(session, store, world, ls_folder, tmp_path):
    export = tmp_path / "export.json"
    export.write_text(json.dumps([ls_task("one", GOOD_RLE), ls_task("two", GOOD_RLE)]))
    results = imports.import_files(session, actor(session, "owner"), store, world["project_id"],
                                  labelstudio_items(export, ls_folder), 1 << 28)
    assert [(r.status, r.n_cells) for r in results] == [("imported", 1), ("duplicate", None)]
