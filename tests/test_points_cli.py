"""Counting projects from the command line (issue 23 item 4): create a points project, import
images with their point CSVs (matched by stem), export the points as CSV, napari CSV and
Label Studio JSON, and read them back unchanged; a bad points file rejects its image only."""
import io
import json

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from app.db import Database
from app.services import projects
from app.tables import Annotation, Image
from storage import labelstudio
from storage.points import from_labelstudio, read_points_csv, resolve
from tests.test_cli import env, run  # noqa: F401  (fixture)


def make_images(folder, n=2):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        tifffile.imwrite(folder / f"img{i}.tif", rng.integers(0, 4000, (48, 64), np.uint16))


def test_points_project_import_and_export_round_trip(env, monkeypatch, capsys, tmp_path):  # noqa: F811
    images, points = tmp_path / "images", tmp_path / "points"
    make_images(images, 3)
    points.mkdir()
    (points / "img0.csv").write_text("x,y,class\n10,20,nucleus\n30.5,40,mitotic\n")
    (points / "img1_points.csv").write_text("index,axis-0,axis-1\n0,5,7\n")   # napari: y, x
    (points / "img2.csv").write_text("x,y\n100,1\n")                         # outside 64x48
    assert run(monkeypatch, ["init-db"]) == 0
    assert run(monkeypatch, ["create-user", "boss", "--admin"], "boss-password\n") == 0
    assert run(monkeypatch, ["create-project", "Marrow", "--owner", "boss", "--mode", "points",
                             "--classes", "nucleus:#ff0000,mitotic:#00ff00",
                             "--starting-model", "none"]) == 0
    assert "cells marked by points (counting)" in capsys.readouterr().out
    assert run(monkeypatch, ["import", "Marrow", str(images), "--points", str(points),
                             "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "imported 2, duplicates 0, rejected 1" in captured.out
    assert "img2.csv: point 1 (100, 1) is outside the 64x48 image" in captured.err

    db = Database(f"sqlite:///{env.resolve()}/cellloop.sqlite")
    with db.session_scope() as s:
        project = projects.find_project_id(s, "Marrow")
        stored = {s.get(Image, a.image_id).name: a.points for a in s.query(Annotation)}
        mode = s.get(projects.Project, project).settings["annotation_mode"]
    db.dispose()
    assert mode == "points"
    assert stored == {"img0.tif": [[10.0, 20.0, 0], [30.5, 40.0, 1]], "img1.tif": [[7.0, 5.0, 0]]}

    out = tmp_path / "export"
    assert run(monkeypatch, ["export", "Marrow", str(out), "--format", "points,counts,tiff"]) == 0
    classes = ["nucleus", "mitotic"]
    again = resolve(read_points_csv((out / "points" / "img0.csv").read_bytes()), 64, 48, classes)
    assert again == stored["img0.tif"]
    napari = read_points_csv((out / "points" / "napari" / "img1.csv").read_bytes())
    assert resolve(napari, 64, 48, classes) == stored["img1.tif"]
    tasks = json.loads((out / "points" / "labelstudio.json").read_text())
    # each task names a PNG beside it that Label Studio can show (TIFFs it cannot)
    assert [t["data"]["image"] for t in tasks] == ["images/img0.png", "images/img1.png"]
    for name in ("img0", "img1"):
        shown = np.asarray(PILImage.open(out / "points" / "images" / f"{name}.png"))
        assert shown.shape == (48, 64, 3) and shown.dtype == np.uint8 and shown.std() > 0
    assert [resolve(from_labelstudio(labelstudio.parse_task(t).points), 64, 48, classes)
            for t in tasks] == [stored["img0.tif"], stored["img1.tif"]]
    counts = {c["image"]: c["n_points"] for c in json.loads((out / "counts.json").read_text())}
    assert counts == {"img0.tif": 2, "img1.tif": 1}

    # the Label Studio export comes back in: its tasks name the PNG copies, and the import
    # matches them by stem to the full 16-bit TIFFs of the export's tiff/ folder
    assert run(monkeypatch, ["create-project", "Again", "--owner", "boss", "--mode", "points",
                             "--classes", "nucleus:#ff0000,mitotic:#00ff00",
                             "--starting-model", "none"]) == 0
    assert run(monkeypatch, ["import", "Again", str(out / "tiff"), "--labelstudio",
                             str(out / "points" / "labelstudio.json"), "--quiet"]) == 0
    assert "imported 2, duplicates 0, rejected 0" in capsys.readouterr().out
    db = Database(f"sqlite:///{env.resolve()}/cellloop.sqlite")
    with db.session_scope() as s:
        again = projects.find_project_id(s, "Again")
        back = {i.name: (i.dtype, a.points) for a, i in s.query(Annotation, Image).join(
            Image, Annotation.image_id == Image.id).filter(Image.project_id == again)}
    db.dispose()
    assert back == {"img0.tif": ("uint16", stored["img0.tif"]),
                    "img1.tif": ("uint16", stored["img1.tif"])}, back


def test_labelstudio_keypoints_are_stored_as_points_of_the_projects_classes(
        env, monkeypatch, capsys, tmp_path):  # noqa: F811
    images = tmp_path / "images"
    make_images(images, 1)
    task = {"data": {"image": "/data/upload/1/ab12cd34-img0.tif"}, "annotations": [{"result": [
        {"type": "keypointlabels", "original_width": 64, "original_height": 48,
         "value": {"x": 25.0, "y": 50.0, "keypointlabels": ["Mitotic"]}}]}]}
    (tmp_path / "ls.json").write_text(json.dumps([task]))
    run(monkeypatch, ["init-db"])
    run(monkeypatch, ["create-user", "boss", "--admin"], "boss-password\n")
    run(monkeypatch, ["create-project", "P", "--owner", "boss", "--mode", "points",
                      "--classes", "nucleus:#ff0000,mitotic:#00ff00", "--starting-model", "none"])
    assert run(monkeypatch, ["import", "P", str(images), "--labelstudio",
                             str(tmp_path / "ls.json"), "--quiet"]) == 0
    db = Database(f"sqlite:///{env.resolve()}/cellloop.sqlite")
    with db.session_scope() as s:
        assert [a.points for a in s.query(Annotation)] == [[[16.0, 24.0, 1]]]
    db.dispose()


def test_a_missing_points_folder_is_a_clear_error(env, monkeypatch, capsys, tmp_path):  # noqa: F811
    make_images(tmp_path / "images", 1)
    run(monkeypatch, ["init-db"])
    run(monkeypatch, ["create-user", "boss", "--admin"], "boss-password\n")
    run(monkeypatch, ["create-project", "P", "--owner", "boss", "--starting-model", "none"])
    capsys.readouterr()
    assert run(monkeypatch, ["import", "P", str(tmp_path / "images"), "--points",
                             str(tmp_path / "nope")]) != 0
    assert "--points" in capsys.readouterr().err


def test_a_zip_with_a_points_folder_imports_each_images_points(env, monkeypatch, capsys,  # noqa: F811
                                                              tmp_path):
    import zipfile
    images = tmp_path / "images"
    make_images(images, 3)
    bundle = tmp_path / "marrow.zip"
    with zipfile.ZipFile(bundle, "w") as zf:
        for i in range(3):
            zf.write(images / f"img{i}.tif", f"marrow/images/img{i}.tif")
        zf.writestr("marrow/points/img0_points.csv", "x,y\n10,20\n11,30\n")
        zf.writestr("marrow/points/img1.csv", "x,y\n3,4\n")
        zf.writestr("marrow/points/img2.csv", "x,y\n999,4\n")          # outside 64x48
    run(monkeypatch, ["init-db"])
    run(monkeypatch, ["create-user", "boss", "--admin"], "boss-password\n")
    run(monkeypatch, ["create-project", "Z", "--owner", "boss", "--mode", "points",
                      "--starting-model", "none"])
    capsys.readouterr()
    assert run(monkeypatch, ["import", "Z", str(bundle), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "imported 2, duplicates 0, rejected 1" in captured.out, captured.out
    assert "marrow/points/img2.csv: point 1 (999, 4) is outside" in captured.err, captured.err
    db = Database(f"sqlite:///{env.resolve()}/cellloop.sqlite")
    with db.session_scope() as s:
        stored = {s.get(Image, a.image_id).name: a.points for a in s.query(Annotation)}
    db.dispose()
    assert stored == {"marrow/images/img0.tif": [[10.0, 20.0, 0], [11.0, 30.0, 0]],
                      "marrow/images/img1.tif": [[3.0, 4.0, 0]]}


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_the_viewable_png_of_any_image_is_8_bit_rgb_at_full_size(dtype, channels):
    from app.services.exports import viewable_png
    rng = np.random.default_rng(channels)
    pixels = (rng.random((2, channels, 30, 41)) * (200 if dtype == "uint8" else 3000)
              ).astype(dtype)
    colours = [{"name": f"c{k}", "color": c} for k, c in
               enumerate(["#0000ff", "#00ff00", "#ff0000", "#ff00ff"][:channels])]
    shown = np.asarray(PILImage.open(io.BytesIO(viewable_png(pixels, colours))))
    assert shown.shape == (30, 41, 3) and shown.dtype == np.uint8
    if channels == 1:                   # one channel: grey, whatever its colour
        assert (shown[..., 0] == shown[..., 2]).all() and shown.std() > 0
    # stretched as the viewer shows it: a dim image (at most 200 of 255, or 3000 of 65535)
    # fills the 8 bits; in colour, each channel in its colour (3 channels: c2 is red)
    assert shown.max() == 255
    if channels == 3:
        assert np.corrcoef(shown[..., 0].ravel(), pixels[0, 2].ravel())[0, 1] > 0.9
