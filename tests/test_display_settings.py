"""Display (issue 19 item 12): the contrast slider spans the image's data, not its pixel
type; limits are whole numbers for integer images; a histogram per channel; the raw pixel
values under the cursor; display settings remembered per project and user; the saved
overlay in class colours with points; the uncertainty map's colour scale."""
import io

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select

from app.errors import NotFound, ValidationError
from app.services import annotations, display, display_settings, drafts, imports, projects
from app.tables import DisplaySetting
from app.imaging.display_stats import channel_stats
from app.imaging.render import heat_rgba, heat_top
from tests.conftest import actor
from tests.images_data import nuclei, tiff


def dim_16bit(seed=0, offset=100):
    """A 16-bit image whose values lie in about offset..offset+2,000 (a typical camera)."""
    pixels, _ = nuclei((60, 80), seed=seed)
    return (pixels // 2 + offset).astype(np.uint16)


@pytest.fixture
def two_images(session, store, world):
    items = [imports.ImportFile(f"dim{k}.tif", read=lambda k=k: tiff(dim_16bit(k, 100 + 300 * k)))
             for k in range(2)]
    results = imports.import_files(session, actor(session, "owner"), store, world["project_id"],
                                  items, 1 << 28)
    session.commit()
    return [r.image_id for r in results]


def test_slider_spans_the_data_not_the_pixel_type():
    data = dim_16bit()
    data[0, 0] = 65535                      # one saturated pixel does not stretch it
    stats = channel_stats(data[None])
    assert stats.integer and stats.range_min == float(data.min())
    assert stats.range_max < 3000           # was 65535: both handles in the left 3%
    assert stats.range_min <= stats.auto_low < stats.auto_high <= stats.range_max
    assert stats.auto_low == int(stats.auto_low) and stats.auto_high == int(stats.auto_high)
    assert len(stats.edges) == len(stats.counts) + 1
    assert stats.edges[0] == stats.range_min and stats.edges[-1] == stats.range_max
    assert sum(stats.counts) >= data.size - 1
    floats = channel_stats(np.linspace(0.0, 0.25, 400, dtype=np.float32).reshape(1, 20, 20))
    assert not floats.integer and floats.range_max == pytest.approx(0.25)
    tiny = channel_stats(np.array([[[3, 4], [5, 6]]], np.uint8))   # one bin per value
    assert tiny.counts == [1, 1, 1, 1] and tiny.edges[0] == 2.5


def test_display_settings_follow_the_user_across_the_project(session, store, world,
                                                             two_images):
    first, second = two_images
    anna, rita = actor(session, "annotator"), actor(session, "reviewer")
    shown = display_settings.channel_display(session, anna, store, first)
    assert len(shown) == 1 and shown[0].name and shown[0].visible
    assert (shown[0].low, shown[0].high) == (shown[0].auto_low, shown[0].auto_high)
    # the slider ends at the brightest pixel, so the histogram counts all 60 x 80 of them
    assert shown[0].range_max < 3000 and sum(shown[0].counts) == 60 * 80
    display_settings.save_for_image(session, anna, first, [
        {"color": "#00FF00", "visible": True, "low": 150, "high": 900}])
    session.commit()
    again = display_settings.channel_display(session, anna, store, second)[0]
    assert (again.color, again.low, again.high) == ("#00ff00", 150.0, 900.0)
    # another user of the project still sees the defaults
    theirs = display_settings.channel_display(session, rita, store, second)[0]
    assert theirs.color != "#00ff00" and theirs.low == theirs.auto_low
    # null limits: each image gets its own automatic ones; a hidden channel stays hidden
    display_settings.save_for_image(session, anna, second, [
        {"color": "#ff00ff", "visible": False, "low": None, "high": None}])
    session.commit()
    # one row per user and project: the save for the second image replaced the first
    assert session.scalar(select(func.count()).select_from(DisplaySetting).where(
        DisplaySetting.user_id == anna.id)) == 1
    auto = display_settings.channel_display(session, anna, store, first)[0]
    assert not auto.visible and auto.color == "#ff00ff"
    assert (auto.low, auto.high) == (auto.auto_low, auto.auto_high)
    # limits outside the data widen the slider, so they can be shown
    display_settings.save_for_image(session, anna, first, [
        {"color": "#ffffff", "visible": True, "low": 10, "high": 60000}])
    wide = display_settings.channel_display(session, anna, store, first)[0]
    assert wide.range_min == 10 and wide.range_max == 60000


@pytest.mark.parametrize("bad", [[{"color": "red"}], [{"color": "#ffffff", "low": 5, "high": 5}],
                                 [{"color": "#ffffff", "low": float("nan")}], "x",
                                 [{"color": "#ffffff", "high": True}]])
def test_bad_display_settings_are_refused(session, world, two_images, bad):
    with pytest.raises(ValidationError):
        display_settings.save_for_image(session, actor(session, "viewer"), two_images[0], bad)


def test_outsiders_have_no_display_settings_there(session, store, world, two_images):
    with pytest.raises(NotFound):
        display_settings.save_for_image(session, actor(session, "outsider"), two_images[0],
                                        [{"color": "#ffffff"}])
    with pytest.raises(NotFound):
        display_settings.channel_display(session, actor(session, "outsider"), store,
                                         two_images[0])


def test_pixel_readout_route(login, session, two_images):
    image_id = two_images[0]
    expected = dim_16bit()
    client = login("viewer")
    r = client.get(f"/api/images/{image_id}/pixel.json?x=7&y=5&z=0")
    assert r.status_code == 200
    assert r.json["values"] == [int(expected[5, 7])] and (r.json["x"], r.json["y"]) == (7, 5)
    assert r.json["channels"] and "max-age" in r.headers["Cache-Control"]
    assert client.get(f"/api/images/{image_id}/pixel.json?x=80&y=5").status_code == 400
    assert login("outsider").get(f"/api/images/{image_id}/pixel.json?x=1&y=1").status_code == 404


def test_saved_overlay_draws_classes_in_their_colours_and_points(login, session, store, config,
                                                                 world, two_images):
    owner, anna, image_id = actor(session, "owner"), actor(session, "annotator"), two_images[0]
    projects.update_channels_and_classes(session, owner, world["project_id"], classes=[
        {"name": "nucleus", "color": "#ff0000"}, {"name": "debris", "color": "#0000ff"}])
    for x0, cls in ((4, 0), (30, 1)):
        drafts.record_edit(session, anna, config, store, image_id, {
            "op": "add", "cls": cls,
            "shape": {"type": "rect", "x0": x0, "y0": 4, "x1": x0 + 16, "y1": 20}})
    drafts.record_edit(session, anna, config, store, image_id,
                       {"op": "point", "x": 60.5, "y": 40.5, "cls": 1})
    annotations.save(session, anna, config, store, image_id)
    session.commit()
    r = login("viewer").get(f"/api/images/{image_id}/overlay.png")
    rgba = np.asarray(PILImage.open(io.BytesIO(r.data)))
    assert tuple(rgba[12, 4, :3]) == (255, 0, 0) and rgba[12, 4, 3] == 255     # outline
    assert tuple(rgba[12, 30, :3]) == (0, 0, 255)                               # other class
    assert tuple(rgba[40, 60, :3]) == (0, 0, 255) and rgba[40, 60, 3] == 255    # the point


def test_uncertainty_colour_scale_matches_the_map():
    values = np.linspace(0, 2, 100, dtype=np.float32).reshape(10, 10)
    top = heat_top(values)
    rgba = heat_rgba(values, top)
    assert rgba[0, 0, 3] == 0 and tuple(rgba[-1, -1, :3]) == (255, 240, 60)
    assert heat_top(np.zeros((4, 4))) == 1.0
    css = display._css_gradient()
    assert css.startswith("linear-gradient(to right") and "rgba(255,240,60,0.86) 100%" in css


def test_uncertainty_route_and_scale_agree(login, session, monkeypatch, config, two_images):
    """The heat map and its legend use one top value (no model is trained here: the scored
    map and the active model are stood in for)."""
    from types import SimpleNamespace

    from app.permissions import SYSTEM
    from app.services import learning_loop, model_versions, scoring
    # new projects rank with stratified random, fewer cells first (no map); this one uses entropy
    learning_loop.set_settings(session, SYSTEM, two_images_project(session, two_images),
                               {"strategy": "entropy"})
    session.commit()
    values = np.linspace(0, 0.8, 60 * 80, dtype=np.float32).reshape(60, 80)
    monkeypatch.setattr(scoring, "heatmap", lambda s, a, c, image_id: values)
    monkeypatch.setattr(model_versions, "active_version", lambda s, pid: SimpleNamespace(id=7))
    scale = display.uncertainty_scale(session, actor(session, "viewer"), config, two_images[0])
    assert scale.top == pytest.approx(heat_top(values)) and scale.model_version_id == 7
    assert scale.title == "predictive entropy"
    r = login("viewer").get(f"/api/images/{two_images[0]}/uncertainty.png")
    rgba = np.asarray(PILImage.open(io.BytesIO(r.data)))
    assert np.array_equal(rgba, heat_rgba(values, scale.top))


def two_images_project(session, image_ids) -> int:
    from app.tables import Image
    return session.get(Image, image_ids[0]).project_id
