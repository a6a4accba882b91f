"""Real Chromium, issue 26: an edit shows on screen before the server has stored it (the
server is slowed down here), a refused edit is taken back on screen with the reason, and a
burst of edits reaches the server's draft in the order it was made, with the count the
screen shows."""
import time

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.wait import WebDriverWait
from sqlalchemy import select

from app.permissions import SYSTEM
from app.services import drafts, projects
from app.tables import Draft, Image, Project
from storage.blobstore import LocalBlobStore
from tests.browser.test_annotate_flow import (click_image_at, open_workspace, press,
                                              wait_for_dragmode)
from tests.conftest import actor

pytestmark = pytest.mark.browser

GD = "document.querySelector('#annotate-graph .js-plotly-plot')"
PENDING_SHAPES = (f"return ({GD}.layout.shapes || []).filter(function (s) {{"
                  " return s.name === 'annotate-pending'; }).length;")
OVERLAY_MASK = ("var im = Array.prototype.find.call(document.querySelectorAll("
                "'#annotate-graph image'), function (e) {"
                " return (e._imgSrc || '').indexOf('/draft.png') >= 0; });"
                " return im ? im.getAttribute('mask') : 'no overlay';")


def draw(browser, path):
    browser.driver.execute_script(
        f"Plotly.relayout({GD}, {{shapes: [{{type: 'path', path: arguments[0]}}]}});", path)


def square(x, y, side=6):
    return f"M{x},{y}L{x + side},{y}L{x + side},{y + side}L{x},{y + side}Z"


def slow(monkeypatch, seconds, name="record_edit"):
    """The drafts service answers `seconds` later (the page calls it by attribute)."""
    original = getattr(drafts, name)

    def delayed(*args, **kwargs):
        time.sleep(seconds)
        return original(*args, **kwargs)
    monkeypatch.setattr(drafts, name, delayed)


def counts_text(browser):
    return browser.find_element("#annotate-counts").text


def wait_text(browser, predicate, timeout=20):
    WebDriverWait(browser.driver, timeout, poll_frequency=0.02).until(
        lambda _d: predicate(counts_text(browser)))
    return counts_text(browser)


def server_counts(db, config, image_id, who="annotator"):
    with db.session_scope() as s:
        return drafts.counts(s, actor(s, who), config, LocalBlobStore(config.blob_dir),
                             image_id)


def test_add_delete_undo_show_before_the_server_answers(browser, world, db, config, image_id,
                                                        monkeypatch):
    open_workspace(browser, "annotator", image_id)
    wait_text(browser, lambda t: "0 cells" in t)
    press(browser, "d")
    wait_for_dragmode(browser, "drawclosedpath")
    slow(monkeypatch, 1.5)
    slow(monkeypatch, 1.5, "undo")

    t0 = time.perf_counter()
    draw(browser, "M20,20L60,20L60,50L20,50Z")
    text = wait_text(browser, lambda t: "1 cell" in t, timeout=5)
    shown_after = time.perf_counter() - t0
    assert shown_after < 1.0 and "saving 1 edit" in text, (shown_after, text)
    assert browser.driver.execute_script(PENDING_SHAPES) == 1
    assert server_counts(db, config, image_id) == (0, 0)      # not stored yet
    text = wait_text(browser, lambda t: "saving" not in t)
    assert "1 cell" in text and "cell 1 selected" in text
    assert server_counts(db, config, image_id) == (1, 0)
    # the dotted outline gives way to the server's overlay once that is loaded
    WebDriverWait(browser.driver, 10).until(lambda d: d.execute_script(PENDING_SHAPES) == 0)

    # select the cell, delete it: hidden and uncounted at once, stored later
    press(browser, "s")
    wait_for_dragmode(browser, "pan")
    click_image_at(browser, 40, 35)
    wait_text(browser, lambda t: "cell 1 selected" in t)
    t0 = time.perf_counter()
    browser.find_element("body").send_keys(Keys.DELETE)
    text = wait_text(browser, lambda t: "0 cells" in t, timeout=5)
    assert time.perf_counter() - t0 < 1.0 and "saving" in text
    assert "url(#annotate-hide-mask)" == browser.driver.execute_script(OVERLAY_MASK)
    assert server_counts(db, config, image_id) == (1, 0)
    wait_text(browser, lambda t: "saving" not in t)
    assert server_counts(db, config, image_id) == (0, 0)
    WebDriverWait(browser.driver, 10).until(
        lambda d: d.execute_script(OVERLAY_MASK) is None)

    # undo brings the deleted cell back on screen at once (its outline, dotted)
    t0 = time.perf_counter()
    press(browser, "z", modifier=Keys.CONTROL)
    text = wait_text(browser, lambda t: "1 cell" in t, timeout=5)
    assert time.perf_counter() - t0 < 1.0 and "saving" in text
    assert browser.driver.execute_script(PENDING_SHAPES) == 1
    wait_text(browser, lambda t: "saving" not in t and "1 cell" in t)
    assert server_counts(db, config, image_id) == (1, 0)


def test_a_refused_edit_is_taken_back_with_the_reason(browser, world, db, config, image_id,
                                                      monkeypatch):
    open_workspace(browser, "annotator", image_id)
    wait_text(browser, lambda t: "0 cells" in t)
    press(browser, "d")
    wait_for_dragmode(browser, "drawclosedpath")
    with db.session_scope() as s:      # the owner makes the annotator a viewer meanwhile
        projects.set_member(s, SYSTEM, world["project_id"], "annotator", "viewer")
    slow(monkeypatch, 1.0)
    draw(browser, "M20,20L60,20L60,50L20,50Z")
    text = wait_text(browser, lambda t: "1 cell" in t, timeout=5)
    assert "saving" in text                                  # shown while the server checks
    text = wait_text(browser, lambda t: "saving" not in t)
    assert "0 cells" in text, text                           # taken back
    assert browser.driver.execute_script(PENDING_SHAPES) == 0
    message = browser.find_element("#annotate-message").text
    assert "viewer" in message, message                     # the reason
    assert server_counts(db, config, image_id) == (0, 0)
    with db.session_scope() as s:
        draft = s.scalar(select(Draft).where(Draft.image_id == image_id))
        assert draft is None or not draft.edits               # nothing was kept


def test_a_burst_of_edits_lands_in_order_with_the_count_on_screen(browser, world, db, config,
                                                                   image_id, monkeypatch):
    open_workspace(browser, "annotator", image_id)
    wait_text(browser, lambda t: "0 cells" in t)
    press(browser, "d")
    wait_for_dragmode(browser, "drawclosedpath")
    slow(monkeypatch, 0.3)                        # slower than the edits come
    slow(monkeypatch, 0.3, "undo")
    paths = [square(2 + 12 * (k % 5), 5 + 25 * (k // 5)) for k in range(9)]
    paths.append(square(41, 33))                  # overlaps the ninth: drawn later, on top
    for path in paths:                            # ten cells in about one second
        draw(browser, path)
        time.sleep(0.1)
    press(browser, "z", modifier=Keys.CONTROL)    # then undo the last and redo it
    press(browser, "y", modifier=Keys.CONTROL)
    # all ten on screen while the server is still behind
    wait_text(browser, lambda t: "10 cells" in t and "saving" in t, timeout=3)
    text = wait_text(browser, lambda t: "saving" not in t, timeout=40)
    assert "10 cells" in text, text
    assert server_counts(db, config, image_id) == (10, 0)
    with db.session_scope() as s:
        draft = s.scalar(select(Draft).where(Draft.image_id == image_id))
        assert [e["shape"]["path"] for e in draft.edits if e.get("op") == "add"] == paths
        canvas = drafts.current_canvas(s, actor(s, "annotator"), config,
                                       LocalBlobStore(config.blob_dir),
                                       s.get(Image, image_id))
    last = int(canvas.labels[34, 42])
    assert last and last == int(canvas.labels.max())           # the later cell is on top
    WebDriverWait(browser.driver, 15).until(lambda d: d.execute_script(PENDING_SHAPES) == 0)


def test_undo_then_redo_pressed_back_to_back_both_land(browser, world, db, config,
                                                      image_id):
    """Ctrl+Z then Ctrl+Y at once: Redo is pressed before Dash has seen the Undo (its click
    reaches Dash after the undo is painted), while the Redo button is still disabled; the
    key waits for it instead of being dropped."""
    open_workspace(browser, "annotator", image_id)
    wait_text(browser, lambda t: "0 cells" in t)
    press(browser, "d")
    wait_for_dragmode(browser, "drawclosedpath")
    draw(browser, square(10, 10, 20))
    wait_text(browser, lambda t: "1 cell" in t and "saving" not in t)
    assert browser.find_element("#annotate-redo").get_attribute("disabled") is not None
    ActionChains(browser.driver).key_down(Keys.CONTROL).send_keys("z").send_keys("y") \
        .key_up(Keys.CONTROL).perform()
    text = wait_text(browser, lambda t: "saving" not in t, timeout=15)
    assert "1 cell" in text, text
    assert server_counts(db, config, image_id) == (1, 0)
    with db.session_scope() as s:
        draft = s.scalar(select(Draft).where(Draft.image_id == image_id))
        assert [e.get("op") for e in draft.edits] == ["add"] and not draft.undone


def test_a_clicked_cell_is_highlighted_before_the_server_answers(browser, world, db, config,
                                                                 image_id, monkeypatch):
    with db.session_scope() as s:
        drafts.record_edit(s, actor(s, "annotator"), config, LocalBlobStore(config.blob_dir),
                           image_id, {"op": "add", "shape": {"type": "rect", "x0": 20,
                                                             "y0": 20, "x1": 60, "y1": 50}})
    open_workspace(browser, "annotator", image_id)
    wait_text(browser, lambda t: "1 cell" in t)
    time.sleep(1.5)                       # the page copies the overlay's pixels meanwhile
    slow(monkeypatch, 1.5, "cell_at")
    t0 = time.perf_counter()
    click_image_at(browser, 40, 35)
    WebDriverWait(browser.driver, 5, poll_frequency=0.02).until(lambda d: d.execute_script(
        "return !!document.querySelector('#annotate-graph image.annotate-fast-selected')"))
    assert time.perf_counter() - t0 < 1.0
    assert "selected" not in counts_text(browser)              # the server has not answered
    text = wait_text(browser, lambda t: "cell 1 selected" in t)
    assert "1 cell" in text
    # clicking the background highlights nothing
    WebDriverWait(browser.driver, 5).until(lambda d: not d.execute_script(
        "return !!document.querySelector('#annotate-graph image.annotate-fast-selected')"))
    click_image_at(browser, 5, 5)
    wait_text(browser, lambda t: "selected" not in t)
    assert not browser.driver.execute_script(
        "return !!document.querySelector('#annotate-graph image.annotate-fast-selected')")


PENDING_COLOURS = (f"return ({GD}.layout.shapes || []).filter(function (s) {{"
                   " return s.name === 'annotate-pending'; }).map(function (s) {"
                   " return s.line.color; });")


def test_a_reclassified_cell_shows_its_new_colour_before_the_server_answers(
        browser, world, db, config, image_id, monkeypatch):
    with db.session_scope() as s:
        s.get(Project, world["project_id"]).classes = [{"name": "nucleus", "color": "#ff0000"},
                                                       {"name": "mitosis", "color": "#00ff00"}]
        drafts.record_edit(s, actor(s, "annotator"), config, LocalBlobStore(config.blob_dir),
                           image_id, {"op": "add", "shape": {"type": "rect", "x0": 20,
                                                             "y0": 20, "x1": 60, "y1": 50}})
    open_workspace(browser, "annotator", image_id)
    wait_text(browser, lambda t: "1 cell" in t)
    press(browser, "s")
    wait_for_dragmode(browser, "pan")
    click_image_at(browser, 40, 35)
    wait_text(browser, lambda t: "cell 1 selected (nucleus)" in t)
    slow(monkeypatch, 1.5)
    t0 = time.perf_counter()
    press(browser, "2", modifier=Keys.SHIFT)
    WebDriverWait(browser.driver, 5, poll_frequency=0.02).until(
        lambda d: d.execute_script(PENDING_COLOURS) == ["#00ff00"])
    assert time.perf_counter() - t0 < 1.0
    assert "saving" in counts_text(browser)                      # not answered yet
    with db.session_scope() as s:
        assert drafts.cell_at(s, actor(s, "annotator"), config, LocalBlobStore(config.blob_dir),
                              image_id, 40, 35)[2] == 0
    wait_text(browser, lambda t: "saving" not in t and "(mitosis)" in t)
    with db.session_scope() as s:
        assert drafts.cell_at(s, actor(s, "annotator"), config, LocalBlobStore(config.blob_dir),
                              image_id, 40, 35)[2] == 1
    # the server's overlay, in the new colour, takes over from the dotted outline
    WebDriverWait(browser.driver, 10).until(lambda d: d.execute_script(PENDING_COLOURS) == [])


def test_save_waits_for_the_edits_still_on_their_way(browser, world, db, config, image_id,
                                                     monkeypatch):
    open_workspace(browser, "annotator", image_id)
    wait_text(browser, lambda t: "0 cells" in t)
    press(browser, "d")
    wait_for_dragmode(browser, "drawclosedpath")
    slow(monkeypatch, 1.0)
    draw(browser, "M20,20L60,20L60,50L20,50Z")
    wait_text(browser, lambda t: "1 cell" in t and "saving" in t, timeout=5)
    press(browser, "s", modifier=Keys.CONTROL)          # while the cell is on its way
    browser.wait_for_contains_text("#annotate-message", "Saved version 1 (1 cell)",
                                   timeout=20)
