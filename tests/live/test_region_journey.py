"""The queue by region, walked in a real headless Chromium against CellLoop started as run.sh
starts it: the demo project starts from the built-in model, so its queue serves regions
ranked by stratified random (ranked by `python -m app demo`); the owner makes the regions
smaller on the Learning page, the worker rescores the pool region by region, and an
annotator's "Annotate" opens an image zoomed on its most useful region, with the rest dimmed;
the saved version covers that region and the image leaves the queue. A viewer sees the same
settings but cannot change them. Journey tier (`-m journey`)."""
import json
import time

import pytest

pytestmark = [pytest.mark.journey, pytest.mark.slow]

SIDE = 128
PLOT = "document.querySelector('#annotate-graph .js-plotly-plot')"


def _wait_region_scores(live, side, timeout=600) -> dict:
    """{image id: its best region} once every region score has regions of `side` px."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        rows = live.query("SELECT image_id, region FROM score WHERE region IS NOT NULL "
                          "AND strategy = 'stratified'")
        regions = {image_id: json.loads(region) for image_id, region in rows}
        if regions and all(y1 - y0 == side for y0, _x0, y1, _x1 in regions.values()):
            return regions
        time.sleep(1)
    raise AssertionError(f"no region scores: jobs {live.query('SELECT kind, state, error FROM job')}")


def test_owner_queues_regions_and_an_annotator_annotates_one(live, person):
    pid = live.project_id()
    # ranked before the server started: one best 256 px region per unannotated image
    assert len(_wait_region_scores(live, 256, timeout=1)) == 8
    person.login("admin")
    person.go(f"/projects/{pid}/learning", ready="#learning-save")
    # a project that starts from a model: regions, stratified random (on its own row: the
    # screenshot shows its whole name)
    person.wait_text("#learning-strategy", "Stratified random (no model)")
    person.wait_text("#learning-unit", "regions of images")
    assert person.wait("#learning-region").get_attribute("value") == "256"
    person.shot("learning-settings")
    person.type("#learning-region", str(SIDE))
    person.click("#learning-save")
    person.wait_text("#learning-message", "Saved: Stratified random (no model), the queue "
                     f"serves regions of {SIDE} px")
    regions = _wait_region_scores(live, SIDE)
    # the strategy ranks the regions in the order it picked them (one best region per image)
    ranks = [r for (r,) in live.query("SELECT rank FROM score WHERE region IS NOT NULL AND "
                                      "strategy = 'stratified'")]
    assert ranks and all(r is not None for r in ranks), ranks
    # the queue on the page names each image's region (it refreshes every 5 s)
    person.wait_text("#learning-queue-table", ", y ", timeout=60)
    person.shot("learning-regions")

    person.login("anna")
    person.go(f"/projects/{pid}", "#project-annotate-link")
    person.click("#project-annotate-link")
    person.wait("#annotate-graph .nsewdrag", timeout=60)
    image_id = int(person.path.split("/")[2])
    y0, x0, y1, x1 = regions[image_id]
    person.wait_text("#annotate-focus", f"{x1 - x0}×{y1 - y0} px at x {x0}, y {y0}")
    # the figure opens on the region (with a quarter of its side around it), not the image
    x_range = person.driver.execute_script(f"return {PLOT}.layout.xaxis.range")
    width = live.query("SELECT shape FROM image WHERE id = ?", image_id)[0][0]
    width = json.loads(width)[-1]
    assert x_range[0] <= x0 and x_range[1] >= x1 and x_range[1] - x_range[0] < width
    # the model's suggestion arrives on its own (the demo starts from the built-in model)
    person.wait_text("#annotate-message", "suggestion", timeout=180)

    person.keys("r")
    person.wait_dragmode("drawrect")
    person.drag((x0 + 20, y0 + 20), (x0 + 50, y0 + 45))
    person.wait_text("#annotate-counts", "selected")
    person.shot("annotate-region")
    person.click("#annotate-save")
    person.wait_text("#annotate-message", "Saved version")
    (region_key,) = live.query("SELECT region_blob_key FROM annotation WHERE image_id = ? "
                               "ORDER BY version DESC LIMIT 1", image_id)[0]
    assert region_key, "the saved version covers the region only"
    assert not live.query("SELECT 1 FROM score WHERE image_id = ? AND region IS NOT NULL",
                          image_id), "the annotated region left the queue"


def test_a_viewer_sees_the_queue_settings_but_cannot_change_them(live, person):
    person.login("victor")
    person.go(f"/projects/{live.project_id()}/learning", ready="#learning-save")
    person.wait_text("#learning-strategy", "Stratified random (no model)")
    person.wait_text("#learning-unit", "regions of images")
    for css in ("#learning-save", "#learning-batch", "#learning-region"):
        assert person.driver.find_element("css selector", css).get_attribute("disabled"), css
