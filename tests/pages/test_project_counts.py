"""The project page's Counts section (issue 23 item 3): cells per image and per group from a
name pattern, as a plot, a table and a CSV download; members only; a bad pattern is a clear
message."""
import csv
import io

from app.services import imports, users
from storage.blobstore import LocalBlobStore
from tests.dash_calls import dash_post
from tests.images_data import nuclei, tiff


def _import(db, config, world):
    items = []
    for k, name in enumerate(["ctrl_01.tif", "ctrl_02.tif", "drug_01.tif"]):
        pixels, labels = nuclei((60, 80), n=3 + k, seed=k)
        items.append(imports.ImportFile(name, read=lambda p=pixels: tiff(p),
                                        read_labels=lambda lab=labels: tiff(lab)))
    pixels, _ = nuclei((60, 80), seed=9)
    items.append(imports.ImportFile("drug_02.tif", read=lambda: tiff(pixels)))
    with db.session_scope() as s:
        imports.import_files(s, users.find_user(s, "owner"), LocalBlobStore(config.blob_dir),
                             world["project_id"], items, 1 << 28)


def csv_rows(response):
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def test_counts_csv_by_group_for_members_only(login, world, db, config, serve):
    serve(config)
    _import(db, config, world)
    pid = world["project_id"]
    viewer = login("viewer")
    got = viewer.get(f"/api/projects/{pid}/counts.csv?pattern=^(?P<group>[a-z]%2B)_")
    assert got.status_code == 200 and got.mimetype == "text/csv"
    assert "attachment" in got.headers["Content-Disposition"]
    rows = {r["image"]: r for r in csv_rows(got)}
    assert [(r["group"], r["count"], r["source"]) for r in rows.values()] == [
        ("ctrl", "3", "annotation"), ("ctrl", "4", "annotation"),
        ("drug", "5", "annotation"), ("drug", "", "")]
    assert login("outsider").get(f"/api/projects/{pid}/counts.csv").status_code in (403, 404)
    bad = viewer.get(f"/api/projects/{pid}/counts.csv?pattern=(unclosed")
    assert bad.status_code == 400 and "not a regular expression" in bad.get_json()["error"]


def test_counts_section_callback(login, world, db, config, serve):
    serve(config)
    _import(db, config, world)
    pid = world["project_id"]
    body = dict(output=("..project-counts-figure.figure...project-counts-table.children..."
                        "project-counts-download.href...project-counts-note.children.."),
                outputs=[{"id": "project-counts-figure", "property": "figure"},
                         {"id": "project-counts-table", "property": "children"},
                         {"id": "project-counts-download", "property": "href"},
                         {"id": "project-counts-note", "property": "children"}],
                inputs=[{"id": "project-counts-pattern", "property": "value",
                         "value": "^(?P<group>[a-z]+)_"}],
                state=[{"id": "project-id", "property": "data", "value": pid}])
    answer = dash_post(login("viewer"), **body)
    assert answer.status_code == 200
    out = answer.get_json()["response"]
    traces = out["project-counts-figure"]["figure"]["data"]
    assert [(t["name"], t["y"]) for t in traces] == [("ctrl", [3, 4]), ("drug", [5])]
    assert "1 image(s) have no count yet" in str(out["project-counts-note"])
    assert "pattern=%5E%28%3FP%3Cgroup%3E" in out["project-counts-download"]["href"]
    refused = dash_post(login("outsider"), **body).get_json()["response"]
    assert refused["project-counts-figure"]["figure"]["data"] == []
    assert refused["project-counts-table"]["children"] is None
    assert "not a member" in str(refused["project-counts-note"]).lower() or \
        "permission" in str(refused["project-counts-note"]).lower(), refused


def test_the_section_is_drawn_with_the_page(as_user, world, db, config, serve):
    """No callback needed for the first drawing (the page does not move under the members
    form when it would answer)."""
    from pages import _counts
    serve(config)
    _import(db, config, world)
    with as_user("viewer"):
        section = _counts.section(world["project_id"])
    text = str(section.to_plotly_json())
    assert "project-counts-groups" in text and "'ctrl'" in text
    assert "1 image(s) have no count yet" in text


def test_a_slow_pattern_is_refused_and_excluded_images_are_left_out(login, world, db, config,
                                                                    serve):
    """A pattern that backtracks (e.g. (a|aa)+$) takes exponential time on a long name: it gets a
    time limit per name and a clear refusal; excluded images are not counted."""
    from sqlalchemy import update

    from app.tables import Image
    serve(config)
    _import(db, config, world)
    with db.session_scope() as s:
        s.execute(update(Image).where(Image.name == "drug_01.tif").values(status="excluded"))
        pixels, _ = nuclei((60, 80), seed=11)
        imports.import_files(s, users.find_user(s, "owner"), LocalBlobStore(config.blob_dir),
                             world["project_id"], [imports.ImportFile(
                                 "=" + "a" * 40 + ".tif", read=lambda: tiff(pixels))], 1 << 28)
    viewer = login("viewer")
    pid = world["project_id"]
    slow = viewer.get(f"/api/projects/{pid}/counts.csv?pattern=(a%7Caa)%2B$")
    assert slow.status_code == 400 and "takes too long" in slow.get_json()["error"]
    rows = csv_rows(viewer.get(f"/api/projects/{pid}/counts.csv"))
    names = [r["image"] for r in rows]
    assert "drug_01.tif" not in names
    assert "'=" + "a" * 40 + ".tif" in names          # not a spreadsheet formula


def test_the_export_ticks_points_only_in_a_counting_project(as_user, world, db):
    """A new user's walk: an outline project's export ticked "points" and its zip had none."""
    from app.permissions import SYSTEM
    from app.services import projects
    from pages import images
    from tests.conftest import component_text
    with as_user("owner"):
        shown = component_text(images.layout(str(world["project_id"])))
    assert '"value": ["tiff", "png", "hdf5", "coco", "counts"]' in shown
    with db.session_scope() as s:
        projects.set_annotation_mode(s, SYSTEM, world["project_id"], "points")
    with as_user("owner"):
        shown = component_text(images.layout(str(world["project_id"])))
    assert '"value": ["tiff", "png", "hdf5", "coco", "counts", "points"]' in shown
