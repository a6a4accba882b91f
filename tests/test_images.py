"""Import, gallery, exclusion, deletion and export through the services, with round trips:
import -> export -> re-import gives identical pixels and labels, for every format."""
import json
import zipfile

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage
from sqlalchemy import select

from app.errors import NotFound, PermissionDenied
from app.services import exports, gallery, imports, projects
from app.services.sources import iter_import_files
from app.tables import Annotation, Image
from storage.blobstore import get_array
from tests.conftest import actor
from tests.images_data import npy, nuclei, png, tiff


def do_import(session, store, project_id, items, who="annotator"):
    return imports.import_files(session, actor(session, who), store, project_id, items, 1 << 28)


def stored(session, store, project_id):
    """{name: (pixels, labels or None)} of a project's live images."""
    out = {}
    for im in session.scalars(select(Image).where(Image.project_id == project_id,
                                                  Image.deleted_at.is_(None))):
        ann = session.scalar(select(Annotation).where(Annotation.image_id == im.id)
                             .order_by(Annotation.version.desc()).limit(1))
        labels = get_array(store, ann.label_blob_key) if ann and ann.label_blob_key else None
        out[im.name] = (get_array(store, im.blob_key), labels)
    return out


def test_import_formats_and_results(session, store, world):
    img16, lab = nuclei()
    two_channel = np.stack([img16, img16 // 2])
    rgb = np.dstack([nuclei(dtype=np.uint8, seed=s)[0] for s in (1, 2, 3)])
    items = [
        imports.ImportFile("a.tif", read=lambda: tiff(img16), read_labels=lambda: tiff(lab),
                          labels_name="a_masks.tif"),
        imports.ImportFile("b.npy", read=lambda: npy(img16)),
        imports.ImportFile("a_copy.tif", read=lambda: tiff(img16)),          # duplicate
        imports.ImportFile("bad.tif", read=lambda: b"II*\x00broken"),
        imports.ImportFile("c.tif", read=lambda: tiff(img16 + 1), read_labels=lambda: tiff(lab[:10]),
                          labels_name="c_masks.tif"),
    ]
    results = do_import(session, store, world["project_id"], items)
    assert [r.status for r in results] == ["imported", "imported", "duplicate", "rejected",
                                           "rejected"]
    assert results[0].n_cells == len(np.unique(lab)) - 1
    assert "bad.tif" in results[3].message and "the image is 64x80" in results[4].message
    got = stored(session, store, world["project_id"])
    assert np.array_equal(got["a.tif"][0][0, 0], img16) and np.array_equal(got["a.tif"][1], lab)
    # a project's channel layout is fixed by its first image
    bad = do_import(session, store, world["project_id"],
                    [imports.ImportFile("rgb.png", read=lambda: png(rgb)),
                     imports.ImportFile("2ch.tif", read=lambda: tiff(two_channel,
                                                                    metadata={"axes": "CYX"}))])
    assert [r.status for r in bad] == ["rejected", "rejected"]
    assert "has 3 channel(s)" in bad[0].message


def test_viewer_cannot_import(session, store, world):
    with pytest.raises(PermissionDenied):
        do_import(session, store, world["project_id"], [], who="viewer")
    with pytest.raises(NotFound):
        do_import(session, store, world["project_id"], [], who="outsider")


def test_round_trip_every_export_format(session, store, world, tmp_path):
    owner = actor(session, "owner")
    pid = world["project_id"]
    originals = {}
    items = []
    for k in range(3):
        img, lab = nuclei(seed=k)
        stack = np.stack([img, img[::-1]])[:, None]          # Z=2 stack, no labels
        originals[f"n{k}.tif"] = (img, lab)
        items.append(imports.ImportFile(f"n{k}.tif", read=lambda img=img: tiff(img),
                                       read_labels=lambda lab=lab: tiff(lab)))
    items.append(imports.ImportFile("stack.tif", read=lambda: tiff(
        stack, metadata={"axes": "ZCYX"})))
    do_import(session, store, pid, items)
    summary = exports.export_project(session, owner, store, pid, tmp_path / "out")
    assert summary.n_images == 4 and summary.n_annotated == 3
    out = tmp_path / "out"

    # TIFF (napari/Cellpose layout): image + _masks
    for name, (img, lab) in originals.items():
        stem = name[:-4]
        assert np.array_equal(tifffile.imread(out / "tiff" / f"{stem}.tif"), img)
        assert np.array_equal(tifffile.imread(out / "tiff" / f"{stem}_masks.tif"), lab)
    assert tifffile.imread(out / "tiff" / "stack.tif").shape == (2, 64, 80)

    def reimport(paths, masks=None):
        p = projects.create_project(session, owner, f"copy-{len(list(tmp_path.iterdir()))}-"
                                    f"{np.random.randint(1e9)}", starting_model="none")
        items = list(iter_import_files(paths, masks))
        imports.import_files(session, owner, store, p.id, items, 1 << 28)
        return stored(session, store, p.id)

    def same(copy, key_of):
        for name, (img, lab) in originals.items():
            pixels, labels = copy[key_of(name)]
            assert np.array_equal(pixels[0, 0], img) and np.array_equal(labels, lab), name
        stack_pixels = copy[key_of("stack.tif")][0]
        assert np.array_equal(stack_pixels, stored(session, store, pid)["stack.tif"][0])

    same(reimport([out / "tiff"], out / "tiff"), lambda n: n)
    same(reimport([out / "dataset.h5"]), lambda n: n)

    # COCO: decode the exported instances back into label images
    from storage.coco import annotations_to_labels
    doc = json.loads((out / "coco.json").read_text())
    by_name = {im["name"]: im for im in doc["images"]}
    for name, (_img, lab) in originals.items():
        anns = [a for a in doc["annotations"] if a["image_id"] == by_name[name]["id"]]
        assert np.array_equal(annotations_to_labels(anns, lab.shape), lab)

    # semantic PNG and counts
    for name, (_img, lab) in originals.items():
        sem = np.asarray(PILImage.open(out / "semantic" / f"{name[:-4]}.png"))
        assert np.array_equal(sem, (lab > 0).astype(np.uint8))
    counts = {row["image"]: row for row in json.loads((out / "counts.json").read_text())}
    assert counts["n0.tif"]["n_cells"] == len(np.unique(originals["n0.tif"][1])) - 1
    assert counts["stack.tif"]["n_cells"] == ""
    assert "n0.tif" in (out / "counts.csv").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["images"][0]["annotations"][0]["source"] == "imported"


def test_png_and_npy_round_trip(session, store, world, tmp_path):
    grey, lab = nuclei(dtype=np.uint8)
    rgb = np.dstack([grey, grey // 2, grey // 3])
    for name, data, expected in [("g.png", png(grey), grey[None, None]),
                                 ("f.npy", npy(grey.astype(np.float32)),
                                  grey.astype(np.float32)[None, None]),
                                 ("rgb.png", png(rgb), np.moveaxis(rgb, -1, 0)[None])]:
        owner = actor(session, "owner")
        p = projects.create_project(session, owner, f"p-{name}", starting_model="none")
        imports.import_files(session, owner, store, p.id,
                            [imports.ImportFile(name, read=lambda d=data: d)], 1 << 28)
        pixels = stored(session, store, p.id)[name][0]
        assert np.array_equal(pixels, expected), name
        exports.export_project(session, owner, store, p.id, tmp_path / name, ("tiff",))
        again = projects.create_project(session, owner, f"again-{name}", starting_model="none")
        imports.import_files(session, owner, store, again.id,
                            list(iter_import_files([tmp_path / name / "tiff"])), 1 << 28)
        back = next(iter(stored(session, store, again.id).values()))[0]
        assert np.array_equal(back, expected) and back.dtype == expected.dtype, name


def test_zip_import_with_masks_and_refusals(session, store, world, tmp_path):
    img, lab = nuclei()
    path = tmp_path / "batch.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("plate1/a.tif", tiff(img))
        zf.writestr("plate1/masks/a_masks.tif", tiff(lab))
        zf.writestr("plate1/b.tif", tiff(img[::-1].copy()))
        zf.writestr("../escape.tif", tiff(img))
        zf.writestr("readme.doc", b"hello")
    results = do_import(session, store, world["project_id"], iter_import_files([path]))
    statuses = {r.name: r.status for r in results}
    assert statuses["plate1/a.tif"] == statuses["plate1/b.tif"] == "imported"
    refused = [r.message for r in results if r.status == "rejected"]
    assert len(refused) == 2 and "leaves the archive" in refused[0]
    got = stored(session, store, world["project_id"])
    assert np.array_equal(got["plate1/a.tif"][1], lab) and got["plate1/b.tif"][1] is None


def test_gallery_paging_sorting_filtering(session, store, world):
    items = [imports.ImportFile(f"img{k:02d}.tif", read=lambda k=k: tiff(nuclei(seed=k)[0]))
             for k in range(7)]
    do_import(session, store, world["project_id"], items)
    viewer = actor(session, "viewer")
    page = gallery.list_images(session, viewer, world["project_id"], page=2, per_page=3,
                               sort="name", descending=True)
    assert page.total == 7 and page.n_pages == 3
    assert [r.name for r in page.items] == ["img03.tif", "img02.tif", "img01.tif"]
    first = page.items[0]
    gallery.set_excluded(session, actor(session, "annotator"), first.id, True, "blurry")
    excluded = gallery.list_images(session, viewer, world["project_id"], status="excluded")
    assert [(r.name, r.status) for r in excluded.items] == [("img03.tif", "excluded")]
    assert gallery.get_image(session, viewer, first.id).quality_note == "blurry"
    with pytest.raises(PermissionDenied):
        gallery.set_excluded(session, viewer, first.id, False)
    with pytest.raises(NotFound):
        gallery.get_image(session, actor(session, "outsider"), first.id)


def test_delete_keeps_history_until_purged(session, store, world, tmp_path):
    img, lab = nuclei()
    do_import(session, store, world["project_id"],
              [imports.ImportFile("a.tif", read=lambda: tiff(img), read_labels=lambda: tiff(lab))])
    image_id = session.scalar(select(Image.id))
    with pytest.raises(PermissionDenied):
        gallery.delete_images(session, actor(session, "reviewer"), world["project_id"], [image_id])
    owner = actor(session, "owner")
    assert gallery.delete_images(session, owner, world["project_id"], [image_id]) == 1
    assert gallery.list_images(session, owner, world["project_id"]).total == 0
    exports.export_project(session, owner, store, world["project_id"], tmp_path / "e")
    manifest = json.loads((tmp_path / "e" / "manifest.json").read_text())
    assert manifest["images"][0]["deleted_at"] and manifest["images"][0]["annotations"]
    assert not (tmp_path / "e" / "tiff").exists()
    assert gallery.purge_deleted(session, owner, world["project_id"]) == 1
    assert session.scalar(select(Annotation.id)) is None


def test_large_images_get_a_preview(session, store, world):
    big = np.random.default_rng(0).integers(0, 60000, (4100, 300), dtype=np.uint16)
    do_import(session, store, world["project_id"], [imports.ImportFile("big.tif",
                                                                      read=lambda: tiff(big))])
    image = session.scalar(select(Image))
    preview = get_array(store, image.preview_blob_key)
    assert preview.shape == (1, 1, 1366, 100) and preview.dtype == np.uint16  # 3x smaller
