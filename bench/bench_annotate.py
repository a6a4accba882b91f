"""The annotation workspace in a real headless Chromium against the real app (threaded
werkzeug server on loopback), on a 1024x1024 16-bit mosaic of DSB 2018 fluorescence tiles
with their ground-truth cells (about 1,000) as the model's suggestion.

Measured:
- next image: server time of the three requests that show an image (workspace layout,
  image rendering, draft overlay) and, in the browser, click on "Next" -> image and overlay
  loaded;
- opening an image with ~1,000 suggested cells (browser, full page load) and registering a
  newly drawn cell (Plotly relayout -> server edit -> new overlay loaded);
- save with 500 cells (server time of `annotations.save`, and Ctrl+S -> "Saved" in the
  browser).
Baseline in the same run and browser: the same cells as plain editable plotly path shapes
(one shape per cell, the usual design): first render, and adding one shape.

    python bench/bench_annotate.py
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._report import median_ms, write_section  # noqa: E402
from bench.dsb import fluorescence_split, load  # noqa: E402

from app import migrate  # noqa: E402
from app.wsgi import create_app  # noqa: E402
from app.config import Config  # noqa: E402
from app.permissions import SYSTEM  # noqa: E402
from app.services import annotations, display, drafts, imports, projects, users  # noqa: E402
from app.services.imports import ImportFile  # noqa: E402
from app.tables import Image  # noqa: E402
from app.imaging.shapes import cell_polygon  # noqa: E402

SIDE, TILE = 1024, 128
PASSWORD = "bench-password-1"


def mosaic(min_cells: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """A SIDE x SIDE uint16 image of the densest TILE x TILE DSB crops and their labels."""
    train, _test = fluorescence_split()
    imgs, labs = load(train)
    crops = []
    for img, lab in zip(imgs, labs):
        for r in range(0, lab.shape[0] - TILE + 1, TILE):
            for c in range(0, lab.shape[1] - TILE + 1, TILE):
                cl = lab[r:r + TILE, c:c + TILE]
                crops.append((len(np.unique(cl)) - 1, img[0, r:r + TILE, c:c + TILE], cl))
    crops.sort(key=lambda t: -t[0])
    n = SIDE // TILE
    image = np.zeros((SIDE, SIDE), np.uint16)
    labels = np.zeros((SIDE, SIDE), np.uint32)
    offset = 0
    for k, (_count, im, lab) in enumerate(crops[:n * n]):
        r, c = (k // n) * TILE, (k % n) * TILE
        scale = 65535.0 / max(1.0, float(im.max()))
        image[r:r + TILE, c:c + TILE] = (im.astype(np.float32) * scale).astype(np.uint16)
        _, inverse = np.unique(lab, return_inverse=True)
        relabelled = inverse.reshape(lab.shape).astype(np.uint32)
        labels[r:r + TILE, c:c + TILE] = np.where(relabelled > 0, relabelled + offset, 0)
        offset += int(relabelled.max())
    return image, labels.astype(np.uint16)


def subset(labels: np.ndarray, n: int) -> np.ndarray:
    keep = np.unique(labels[labels > 0])[:n]
    return np.where(np.isin(labels, keep), labels, 0).astype(np.uint16)


def start_server(server) -> str:
    from werkzeug.serving import make_server
    httpd = make_server("127.0.0.1", 0, server, threaded=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_port}"


def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--window-size=1500,1000"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options)


GD = "document.querySelector('#annotate-graph .js-plotly-plot')"
WAIT_OVERLAY = """
var done = arguments[arguments.length - 1], before = arguments[0], t0 = arguments[1];
(function poll() {
  var entries = performance.getEntriesByType('resource').filter(function (e) {
    return e.name.indexOf('/draft.png') >= 0; });
  if (entries.length > before) { var e = entries[entries.length - 1];
    requestAnimationFrame(function () { done(e.responseEnd - t0); }); }
  else { setTimeout(poll, 5); }
})();"""
COUNT_OVERLAYS = ("return performance.getEntriesByType('resource').filter(function (e) {"
                  " return e.name.indexOf('/draft.png') >= 0; }).length;")


def page_open_ms(driver, url: str) -> float:
    """Full page load until the image and the overlay are loaded (navigation start = 0)."""
    driver.get(url)
    return driver.execute_async_script("""
var done = arguments[arguments.length - 1];
(function poll() {
  var r = performance.getEntriesByType('resource');
  var img = r.filter(function (e) { return e.name.indexOf('/render.jpg') >= 0; });
  var ovl = r.filter(function (e) { return e.name.indexOf('/draft.png') >= 0; });
  var gd = document.querySelector('#annotate-graph .js-plotly-plot');
  if (img.length && ovl.length && gd && gd._fullLayout) {
    requestAnimationFrame(function () {
      done(Math.max(img[img.length - 1].responseEnd, ovl[ovl.length - 1].responseEnd)); });
  } else { setTimeout(poll, 5); }
})();""")


def draw_cell_ms(driver, x: float, y: float) -> float:
    before = driver.execute_script(COUNT_OVERLAYS)
    t0 = driver.execute_script("return performance.now()")
    driver.execute_script(
        f"Plotly.relayout({GD}, {{shapes: [{{type: 'path', path: "
        f"'M{x},{y}L{x + 12},{y}L{x + 12},{y + 12}L{x},{y + 12}Z'}}]}})")
    return driver.execute_async_script(WAIT_OVERLAY, before, t0)


BASELINE = """
var done = arguments[arguments.length - 1], paths = arguments[0], side = arguments[1];
var div = document.createElement('div'); div.style.width = '900px'; div.style.height = '900px';
document.body.appendChild(div);
var shapes = paths.map(function (p) { return {type: 'path', path: p, editable: true,
  line: {color: '#ffff00', width: 1}}; });
var layout = {images: [{source: document.querySelector('#annotate-graph image').getAttribute('href'),
  xref: 'x', yref: 'y', x: 0, y: 0, sizex: side, sizey: side, sizing: 'stretch', layer: 'below'}],
  xaxis: {range: [0, side], visible: false}, yaxis: {range: [side, 0], visible: false},
  margin: {l: 0, r: 0, t: 0, b: 0}, shapes: shapes, dragmode: 'drawclosedpath'};
var t0 = performance.now();
Plotly.newPlot(div, [{x: [0, side], y: [0, side], mode: 'markers', marker: {opacity: 0}}],
               layout).then(function () {
  requestAnimationFrame(function () {
    var first = performance.now() - t0;
    var added = shapes.concat([{type: 'path', path: 'M10,10L30,10L30,30L10,30Z'}]);
    var t1 = performance.now();
    Plotly.relayout(div, {shapes: added}).then(function () {
      requestAnimationFrame(function () {
        var add = performance.now() - t1; Plotly.purge(div); div.remove(); done([first, add]);
      });
    });
  });
});"""


def main() -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    image, all_labels = mosaic()
    labels = subset(all_labels, 1000)
    n_cells = int(len(np.unique(labels)) - 1)
    tmp = Path(tempfile.mkdtemp(prefix="cellloop-bench-annotate-"))
    config = Config(env="testing", secret_key="bench-secret-key-0123456789", data_dir=tmp)
    migrate.upgrade(config)
    server = create_app(config)
    app_state = server.extensions["cellloop"]
    db, store = app_state.db, app_state.store
    with db.session_scope() as s:
        owner = users.create_user(s, SYSTEM, "bench", PASSWORD)
        pid = projects.create_project(s, SYSTEM, "Bench", owner_id=owner.id,
                                      starting_model="none").id
        items = [ImportFile("suggested_1000.npy", load=lambda: _img(image, 0),
                            load_labels=lambda: labels),
                 ImportFile("cells_500.npy", load=lambda: _img(image, 1),
                            load_labels=lambda: subset(all_labels, 500))]
        items += [ImportFile(f"new_{k}.npy", load=lambda k=k: _img(image, 2 + k))
                  for k in range(4)]
        imports.import_files(s, owner, store, pid, items, 1 << 28)
    with db.session_scope() as s:
        ids = {im.name: im.id for im in s.query(Image)}
    big, five, fresh = ids["suggested_1000.npy"], ids["cells_500.npy"], ids["new_0.npy"]

    # ---- server time (in process, through the services the routes call)
    with server.test_request_context():
        with db.session_scope() as s:
            bench = users.find_user(s, "bench")
            layout_ms = median_ms(lambda: annotations.open_workspace(s, bench, config, fresh))
            render_ms = median_ms(lambda: display.render_image(s, bench, store, fresh, 0, None,
                                                               1024, "JPEG"))
            overlay_ms = median_ms(lambda: display.render_draft(s, bench, config, store, fresh,
                                                                0, 1024))
            overlay_big_ms = median_ms(lambda: display.render_draft(s, bench, config, store,
                                                                    big, 0, 1024))
            save_samples = []
            for k in range(6):
                drafts.record_edit(s, bench, config, store, five,
                                   {"op": "add", "shape": {"type": "rect", "x0": 5 + k,
                                                           "y0": 5, "x1": 20 + k, "y1": 20}})
                t = time.perf_counter()
                saved = annotations.save(s, bench, config, store, five)
                save_samples.append((time.perf_counter() - t) * 1000)
            save_ms = statistics.median(save_samples[1:])
            save_cells = saved.n_cells
            edit_ms = median_ms(lambda: drafts.record_edit(
                s, bench, config, store, big, {"op": "add", "shape": {
                    "type": "path", "path": "M40,40L60,40L60,60L40,60Z"}}))
            paths = [cell_polygon(labels, int(v)) for v in np.unique(labels[labels > 0])]
            drafts.discard(s, bench, config, big)

    # ---- browser
    base = start_server(server)
    driver = chromium()
    try:
        driver.get(base + "/login")
        driver.find_element("id", "username").send_keys("bench")
        driver.find_element("id", "password").send_keys(PASSWORD)
        driver.find_element("id", "login-submit").click()
        time.sleep(0.5)
        page_open_ms(driver, f"{base}/annotate/{fresh}")            # warm caches
        opens = [page_open_ms(driver, f"{base}/annotate/{big}") for _ in range(3)]
        baseline_first, baseline_add = driver.execute_async_script(BASELINE, paths, SIDE)
        driver.find_element("css selector", "body").send_keys("d")
        time.sleep(0.3)
        draws = [draw_cell_ms(driver, 40 + 30 * k, 900) for k in range(5)]
        # next image, through the button (the page is not reloaded)
        nexts = []
        for _ in range(3):
            page_open_ms(driver, f"{base}/annotate/{fresh}")
            before = driver.execute_script(COUNT_OVERLAYS)
            t0 = driver.execute_script("return performance.now()")
            driver.execute_script("document.getElementById('annotate-next').click()")
            nexts.append(driver.execute_async_script(WAIT_OVERLAY, before, t0))
        # save with 500 cells: Ctrl+S -> "Saved" shown
        page_open_ms(driver, f"{base}/annotate/{five}")
        driver.find_element("css selector", "body").send_keys("r")
        time.sleep(0.3)
        draw_cell_ms(driver, 700, 700)
        t0 = time.perf_counter()
        ActionChains(driver).key_down(Keys.CONTROL).send_keys("s").key_up(Keys.CONTROL).perform()
        while "Saved version" not in driver.find_element("id", "annotate-message").text:
            time.sleep(0.005)
        save_browser_ms = (time.perf_counter() - t0) * 1000
    finally:
        driver.quit()

    server_next = layout_ms + render_ms + overlay_ms
    body = f"""
Image: 1024x1024 16-bit mosaic of the 64 densest 128x128 DSB 2018 fluorescence training
tiles; {n_cells} of its {len(np.unique(all_labels)) - 1} ground-truth cells used as the suggestion (base of the draft). Headless
Chromium, werkzeug threaded server on loopback, same machine.

| what | measured | goal |
|---|---|---|
| next image, server: workspace layout + 1024 px JPEG rendering + overlay | {layout_ms:.0f} + {render_ms:.0f} + {overlay_ms:.0f} = **{server_next:.0f} ms** | < 300 ms |
| next image, browser: click "Next" -> image and overlay loaded (median of 3) | **{statistics.median(nexts):.0f} ms** | < 1 s |
| open the image with {n_cells} suggested cells, browser, full page load (median of 3) | **{statistics.median(opens):.0f} ms** | < 2 s |
| the same cells as {len(paths)} plain plotly shapes (baseline): first render | {baseline_first:.0f} ms | |
| draw one new cell with {n_cells} cells on screen: relayout -> edit saved -> overlay loaded (median of 5) | **{statistics.median(draws):.0f} ms** | < 300 ms |
| baseline: add one shape to {len(paths)} plotly shapes | {baseline_add:.0f} ms | |
| server: record one edit on the {n_cells}-cell draft / render its overlay | {edit_ms:.0f} ms / {overlay_big_ms:.0f} ms | |
| save with {save_cells} cells, server (`annotations.save`, median of 5) | **{save_ms:.0f} ms** | < 300 ms |
| save with 500 cells, browser: Ctrl+S -> "Saved" shown | {save_browser_ms:.0f} ms | |

Ratios: drawing a cell with the overlay design is {baseline_add / statistics.median(draws):.1f}x
faster than adding a shape to the plain-shapes figure; opening is measured from navigation
start (includes loading Dash), the baseline's first render only the plotly call.
"""
    write_section("annotate", "Annotation workspace (browser)", body)


def _img(plane: np.ndarray, k: int):
    """The plane as an image, made distinct by one pixel (imports skip duplicates)."""
    from storage.readers import ImageData
    pixels = plane.copy()
    pixels[0, 0] = k
    return ImageData(pixels[None, None], "ZCYX", ["grey"])


if __name__ == "__main__":
    main()
