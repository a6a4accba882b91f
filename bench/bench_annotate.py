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

`--edits` (issue 26): the app started as run.sh starts it (gunicorn with gunicorn.conf.py and
the two background workers, in a fresh data directory), real headless Chromium, real mouse
drags, clicks and keys, on 2048x2048 images with N synthetic cells (default 50, 1,000 and
5,000); per N the p50/p95 of: click -> edit visible (browser clock, two animation frames
after the screen shows it: count and outline, or count and hidden cell), click -> server
draft stored (the server's answer received), click -> the server's overlay shown in its
place; for add (rectangle drag), select (click a cell), delete (Delete key) and undo
(Ctrl+Z); and open (navigation -> image and overlay loaded) and save (Ctrl+S -> "Saved
version" message painted, browser clock).
Records the CPU and the load average before and after.

    python bench/bench_annotate.py --edits [--cells 50,1000,5000] [--reps 10]
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


# ---------------------------------------------------------------------- issue 26: edits
EDIT_SIDE = 2048


def cells_image(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """A 2048x2048 uint16 image of `n` bright discs on a grid (noisy background), their
    labels, and the discs' centres (x, y)."""
    from skimage.draw import disk
    rng = np.random.default_rng(seed)
    per_row = int(np.ceil(np.sqrt(n)))
    step = EDIT_SIDE / per_row
    radius = max(4.0, min(20.0, step * 0.35))
    image = rng.normal(800, 80, (EDIT_SIDE, EDIT_SIDE)).clip(0, 65535)
    labels = np.zeros((EDIT_SIDE, EDIT_SIDE), np.uint16)
    centres = []
    for k in range(n):
        cy, cx = (k // per_row + 0.5) * step, (k % per_row + 0.5) * step
        rr, cc = disk((cy, cx), radius, shape=labels.shape)
        labels[rr, cc] = k + 1
        image[rr, cc] += 3000
        centres.append((int(cx), int(cy)))
    return image.astype(np.uint16), labels, centres


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_like_run_sh(data_dir: Path, port: int, workers: bool) -> list:
    """gunicorn with gunicorn.conf.py and, as run.sh does, a gpu and a cpu worker."""
    import os
    import subprocess
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "CELLLOOP_DATA_DIR": str(data_dir), "PORT": str(port),
           "CELLLOOP_ENV": "development", "LOG_LEVEL": "WARNING"}
    log = open(data_dir / "server.log", "ab")
    procs = []
    if workers:
        for queue in ("gpu", "cpu"):
            procs.append(subprocess.Popen([str(root / ".venv/bin/python"), "-m", "app", "worker",
                                           "--queues", queue], cwd=root, env=env,
                                          stdout=log, stderr=log))
    procs.append(subprocess.Popen([str(root / ".venv/bin/gunicorn"), "-c", "gunicorn.conf.py",
                                   "app.wsgi:application"], cwd=root, env=env, stdout=log,
                                  stderr=log))
    import urllib.request
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2)
            return procs
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the app did not start; see {data_dir / 'server.log'}")


# In the page: from the next real input (mouseup, or keydown), when the screen shows the edit
# (checked on every DOM change, then two animation frames), when the edit queue is empty (the
# server's answer is in) and when no preview is left (the server's overlay is shown).
MEASURE = r"""
var kind = arguments[0], n = arguments[1];
var gd = document.querySelector('#annotate-graph .js-plotly-plot');
var b = window.__bench = {t0: null, visible: null, stored: null, shown: null};
function text() { return document.getElementById('annotate-counts').textContent; }
function counted() { return new RegExp('(^|\\D)' + n + ' cells').test(text()); }
function shapes() { return (gd._fullLayout && gd._fullLayout.shapes) || []; }
function pending() { return shapes().filter(function (s) { return s.name === 'annotate-pending'; }).length; }
function overlay() { return Array.prototype.find.call(gd.querySelectorAll('image'), function (e) {
  return (e._imgSrc || '').indexOf('/draft.png') >= 0; }); }
function masked() { var im = overlay(); return !!(im && im.getAttribute('mask')); }
function selected() { return /cell \d+ selected/.test(text()) &&
  shapes().some(function (s) { return s.editable && s.name !== 'annotate-pending'; }); }
function painted() { return pending() > 0 || !!gd.querySelector('g.annotate-fast path'); }
function highlighted() { return !!gd.querySelector('image.annotate-fast-selected') || selected(); }
var shows = {add: function () { return counted() && shapes().length > 0; },
             select: highlighted,
             'delete': function () { return counted() && masked(); },
             undo: function () { return counted() && painted(); }}[kind];
function check() {
  if (b.t0 === null || b.visible !== null || !shows()) { return; }
  b.visible = -1;
  requestAnimationFrame(function () { requestAnimationFrame(function () {
    b.visible = performance.now() - b.t0; }); });
}
var observer = new MutationObserver(check);
observer.observe(document.body, {subtree: true, childList: true, characterData: true,
                                 attributes: true});
function loop() {
  var now = performance.now();
  check();
  var idle = window.CellLoopEdits.busy() === 0 && text().indexOf('saving') < 0;
  if (kind === 'select') { idle = selected(); }       // the server's answer: cell and outline
  if (b.visible !== null && b.stored === null && idle) { b.stored = now - b.t0; }
  if (b.stored !== null && b.shown === null && !pending() && !masked()) { b.shown = now - b.t0; }
  if ((b.shown !== null && b.visible > 0) || now - b.t0 > 30000) { observer.disconnect(); return; }
  requestAnimationFrame(loop);
}
// the input: the mouse button released, or the key itself (not Control before Ctrl+Z)
var input = kind === 'delete' || kind === 'undo' ? 'keydown' : 'mouseup';
document.addEventListener(input, function start(ev) {
  if (ev.key === 'Control' || b.t0 !== null) { return; }
  document.removeEventListener(input, start, true);
  b.t0 = performance.now(); requestAnimationFrame(loop);
}, true);
"""
SAVES = 5
RESULT = """
var done = arguments[arguments.length - 1];
(function poll() {
  var b = window.__bench;
  if (b.t0 !== null && ((b.shown !== null && b.visible > 0) || performance.now() - b.t0 > 30000)) {
    done([b.visible, b.stored, b.shown]); } else { setTimeout(poll, 10); }
})();"""
# A save on the browser's clock: the Ctrl+S key press -> the "Saved version N" message
# painted (two animation frames after it is in the page).
SAVE_MEASURE = """
var want = arguments[0], message = document.getElementById('annotate-message');
var b = window.__save = {t0: null, shown: null};
var seen = new MutationObserver(function () {
  if (b.t0 === null || b.shown !== null || message.textContent.indexOf(want) < 0) { return; }
  seen.disconnect();
  requestAnimationFrame(function () { requestAnimationFrame(function () {
    b.shown = performance.now() - b.t0; }); });
});
seen.observe(message, {childList: true, subtree: true, characterData: true});
document.addEventListener('keydown', function start(ev) {
  if (ev.key === 'Control' || b.t0 !== null) { return; }
  document.removeEventListener('keydown', start, true);
  b.t0 = performance.now();
}, true);
"""
SAVE_RESULT = """
var done = arguments[arguments.length - 1];
(function poll() {
  var b = window.__save;
  if (b.shown !== null || (b.t0 !== null && performance.now() - b.t0 > 30000)) {
    done(b.shown); } else { setTimeout(poll, 10); }
})();"""
SELECT_RESULT = """
var done = arguments[arguments.length - 1];
(function poll() {
  var b = window.__bench;
  if (b.t0 !== null && ((b.visible > 0 && b.stored !== null) || performance.now() - b.t0 > 30000)) {
    done([b.visible, b.stored, null]); } else { setTimeout(poll, 10); }
})();"""


def _offset(driver, x: float, y: float) -> tuple[int, int]:
    return tuple(driver.execute_script(f"""
        var fl = {GD}._fullLayout;
        return [Math.round(fl.xaxis.d2p(arguments[0])), Math.round(fl.yaxis.d2p(arguments[1]))];
        """, x, y))     # selenium 4.2: offsets from the element's top-left corner


def _count(driver) -> int:
    import re
    text = driver.find_element("id", "annotate-counts").text
    match = re.search(r"(\d+) cells", text)
    return int(match.group(1)) if match else 0


def _tool(driver, key: str, dragmode: str) -> None:
    driver.find_element("css selector", "body").send_keys(key)
    deadline = time.time() + 30
    while time.time() < deadline:
        if driver.execute_script(f"return {GD}.layout.dragmode") == dragmode:
            return
        time.sleep(0.05)
    raise RuntimeError(f"tool {key!r} never reached drag mode {dragmode}")


def _idle(driver, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if driver.execute_script("return window.CellLoopEdits && window.CellLoopEdits.busy() "
                                 "=== 0 && !document.getElementById('annotate-counts')"
                                 ".textContent.includes('saving')"):
            return
        time.sleep(0.05)
    raise RuntimeError("edits still pending")


def _measure(driver, kind: str, n_after: int, act, result=RESULT) -> list:
    driver.execute_script(MEASURE, kind, n_after)
    act()
    out = driver.execute_async_script(result)
    _idle(driver)
    return out


def pct(values: list, q: float) -> float:
    """Nearest-rank percentile (p95 of 10 samples is the largest)."""
    ordered = sorted(v for v in values if v is not None and v >= 0)
    if not ordered:
        return float("nan")
    return ordered[max(0, int(np.ceil(q * len(ordered))) - 1)]


def edits_bench(cell_counts: list[int], reps: int, workers: bool) -> None:
    import os
    import subprocess
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    cpu = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True,
                         text=True).stdout.split(":", 1)[-1].strip()
    load_before = os.getloadavg()
    data_dir = Path(tempfile.mkdtemp(prefix="cellloop-bench-edits-"))
    config = Config.from_env({"CELLLOOP_DATA_DIR": str(data_dir)}, dotenv=False)
    migrate.upgrade(config)
    server = create_app(config)
    app_state = server.extensions["cellloop"]
    centres, ids = {}, {}
    with app_state.db.session_scope() as s:
        owner = users.create_user(s, SYSTEM, "bench", PASSWORD)
        pid = projects.create_project(s, SYSTEM, "Bench edits", owner_id=owner.id,
                                      starting_model="none").id
        for n in cell_counts:
            image, labels, centres[n] = cells_image(n, seed=n)
            imports.import_files(s, owner, app_state.store, pid, [ImportFile(
                f"cells_{n}.npy", load=lambda image=image: _img(image, 0),
                load_labels=lambda labels=labels: labels)], 1 << 28)
    with app_state.db.session_scope() as s:
        ids = {int(im.name.split("_")[1].split(".")[0]): im.id for im in s.query(Image)}
    app_state.db.engine.dispose()
    port = _free_port()
    procs = start_like_run_sh(data_dir, port, workers)
    base = f"http://127.0.0.1:{port}"
    rows, rng = [], np.random.default_rng(26)
    driver = chromium()
    try:
        driver.get(base + "/login")
        driver.find_element("id", "username").send_keys("bench")
        driver.find_element("id", "password").send_keys(PASSWORD)
        driver.find_element("id", "login-submit").click()
        time.sleep(1.0)
        for n in cell_counts:
            opens = [page_open_ms(driver, f"{base}/annotate/{ids[n]}") for _ in range(3)]
            deadline = time.time() + 60
            while _count(driver) != n and time.time() < deadline:
                time.sleep(0.05)
            area = driver.find_element("css selector", "#annotate-graph .nsewdrag")
            got = {k: [] for k in ("add", "select", "delete", "undo")}
            _tool(driver, "r", "drawrect")
            for _ in range(reps):
                x, y = (float(v) for v in rng.uniform(100, EDIT_SIDE - 140, 2))
                a, b = _offset(driver, x, y), _offset(driver, x + 30, y + 30)
                before = _count(driver)
                got["add"].append(_measure(driver, "add", before + 1, lambda a=a, b=b: (
                    ActionChains(driver).move_to_element_with_offset(area, *a).click_and_hold()
                    .move_by_offset(3, 3).move_to_element_with_offset(area, *b).release()
                    .perform())))
            _tool(driver, "s", "pan")
            picks = rng.choice(len(centres[n]), size=reps, replace=False)
            for k in picks:
                cx, cy = centres[n][int(k)]
                point = _offset(driver, cx, cy)
                time.sleep(1.0)       # aiming at the next cell (the overlay's pixels load)
                got["select"].append(_measure(driver, "select", 0, lambda p=point: (
                    ActionChains(driver).move_to_element_with_offset(area, *p).click()
                    .perform()), SELECT_RESULT))
                before = _count(driver)
                got["delete"].append(_measure(driver, "delete", before - 1, lambda: (
                    driver.find_element("css selector", "body").send_keys(Keys.DELETE))))
                got["undo"].append(_measure(driver, "undo", before, lambda: (
                    ActionChains(driver).key_down(Keys.CONTROL).send_keys("z")
                    .key_up(Keys.CONTROL).perform())))
            saves = []
            for version in range(1, SAVES + 1):   # the image's versions: 1 imported, then 2..
                driver.execute_script(SAVE_MEASURE, f"Saved version {version + 1}")
                ActionChains(driver).key_down(Keys.CONTROL).send_keys("s").key_up(Keys.CONTROL) \
                    .perform()
                saves.append(driver.execute_async_script(SAVE_RESULT))
                # the next save needs an edit to save: undo the last one and wait
                driver.find_element("css selector", "body").send_keys(Keys.ESCAPE)
                ActionChains(driver).key_down(Keys.CONTROL).send_keys("z").key_up(Keys.CONTROL) \
                    .perform()
                _idle(driver)
                time.sleep(0.5)            # the overlay the undo asked for loads
            rows.append((n, statistics.median(opens), saves, got))
            print(n, rows[-1], flush=True)
    finally:
        driver.quit()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)
    load_after = os.getloadavg()
    fmt = "{:.0f}".format
    lines = ["| N cells | operation | visible p50 / p95 (ms) | server draft stored p50 / p95 "
             "| server overlay shown p50 / p95 |", "|---|---|---|---|---|"]
    for n, _open, _saves, got in rows:
        for kind in ("add", "select", "delete", "undo"):
            vis = [g[0] for g in got[kind]]
            if kind == "select":
                sto = [g[1] for g in got[kind]]
                lines.append(f"| {n} | select (click a cell) | **{fmt(pct(vis, .5))} / "
                             f"{fmt(pct(vis, .95))}** | server's answer (editable outline): "
                             f"{fmt(pct(sto, .5))} / {fmt(pct(sto, .95))} | |")
                continue
            sto, sho = [g[1] for g in got[kind]], [g[2] for g in got[kind]]
            lines.append(f"| {n} | {kind} | **{fmt(pct(vis, .5))} / {fmt(pct(vis, .95))}** | "
                         f"{fmt(pct(sto, .5))} / {fmt(pct(sto, .95))} | "
                         f"{fmt(pct(sho, .5))} / {fmt(pct(sho, .95))} |")
    opens = " · ".join(f"N={n}: {o:.0f} ms" for n, o, _s, _g in rows)
    saves = " · ".join(f"N={n}: {statistics.median(sv):.0f} / {max(sv):.0f} ms"
                       for n, _o, sv, _g in rows)
    body = f"""
CPU: {cpu} ({os.cpu_count()} cores, shared with other work). Load average (1/5/15 min)
before: {load_before[0]:.2f} / {load_before[1]:.2f} / {load_before[2]:.2f}, after:
{load_after[0]:.2f} / {load_after[1]:.2f} / {load_after[2]:.2f}. App as run.sh starts it
(gunicorn, gunicorn.conf.py defaults, {'with' if workers else 'without'} the two background
workers), fresh data directory, headless Chromium on the same machine. Images 2048x2048, N
synthetic disc cells each (imported as the saved version the draft starts from). {reps}
samples per operation and N; p95 is nearest-rank (of 10 samples: the largest).
Goal: visible within 100 ms (p95).

{chr(10).join(lines)}

Open (navigation -> image and overlay loaded, median of 3): {opens}.
Save (Ctrl+S pressed -> "Saved version" message painted, browser clock; after an undo each;
median / largest of {SAVES}): {saves}.
"""
    write_section("annotate-edits", "Edits on screen at once (issue 26)", body)


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--edits", action="store_true", help="issue 26: edit latency per N")
    parser.add_argument("--cells", default="50,1000,5000")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--no-workers", action="store_true",
                        help="start gunicorn only (run.sh also starts two workers)")
    args = parser.parse_args()
    if args.edits:
        edits_bench([int(v) for v in args.cells.split(",")], args.reps, not args.no_workers)
    else:
        main()
