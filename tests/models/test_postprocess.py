"""Instances from probabilities: seed splitting, and the per-model post-processing choice
on annotated images (models.calibration)."""
import numpy as np
import pytest

from bench.baselines import same_cut, whole_image_segment
from models import load_model
from models.calibration import MIN_CELLS, calibrate, size_candidates
from models.export import export_onnx
from models.instances import instances_from_probs
from models.metrics import score
from models.persist import model_from_bytes, model_to_bytes
from models.training import TrainConfig, _calibrate, train_model
from tests.models.conftest import TINY, disc_data


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _probs(interior: np.ndarray, boundary: np.ndarray) -> np.ndarray:
    """(3, Y, X) probabilities: 0.9 for the given class, the rest shared."""
    p = np.full((3,) + interior.shape, 0.05, np.float32)
    p[0] = 0.9
    p[:, boundary] = 0.05
    p[2, boundary] = 0.9
    p[:, interior] = 0.05
    p[1, interior] = 0.9
    return p


def touching_pair(shape=(60, 90)):
    """Two discs that touch; the network's interior joins them by a 5 px bridge."""
    truth = np.zeros(shape, np.uint16)
    a, b = _disc(shape, 30, 30, 14), _disc(shape, 30, 58, 14)
    truth[a], truth[b & ~a] = 1, 2
    interior = _disc(shape, 30, 30, 12) | _disc(shape, 30, 58, 12)
    interior[28:33, 30:58] = True                      # the bridge
    boundary = (a | b) & ~interior
    return truth, _probs(interior, boundary)


def test_split_separates_cells_joined_by_a_bridge():
    truth, probs = touching_pair()
    assert instances_from_probs(probs).max() == 1                # one seed: merged
    split = instances_from_probs(probs, split=2.0)
    assert split.max() == 2 and score(truth, split).f1 == 1.0
    # a single round cell is not split
    single_probs = _probs(_disc((60, 60), 30, 30, 12), _disc((60, 60), 30, 30, 14)
                          & ~_disc((60, 60), 30, 30, 12))
    assert instances_from_probs(single_probs, split=2.0).max() == 1


def test_min_size_and_threshold_are_applied():
    truth, probs = touching_pair()
    speck = np.zeros(probs.shape[1:], bool)
    speck[5:8, 80:83] = True                                    # 9 px of "interior"
    probs[:, speck] = 0.05
    probs[1, speck] = 0.9
    assert instances_from_probs(probs, min_size=4, split=2.0).max() == 3
    assert instances_from_probs(probs, min_size=12, split=2.0).max() == 2
    # interior + boundary is at most 0.95 here: a threshold above it leaves no cells
    assert instances_from_probs(probs, fg_threshold=0.97).max() == 0


def test_calibration_chooses_what_the_validation_images_need():
    pairs = [touching_pair() for _ in range(10)]          # 20 cells
    chosen = calibrate([p for _, p in pairs], [t for t, _ in pairs])
    assert chosen["split"] > 0 and chosen["f1"] == 1.0
    assert chosen["default_f1"] < 1.0 and chosen["n_images"] == 10
    # too few cells to judge: the defaults stay, and the result says why
    few = calibrate([p for _, p in pairs[:3]], [t for t, _ in pairs[:3]])
    assert (few["split"], few["fg_threshold"], few["min_size"]) == (0.0, 0.5, 12)
    assert "6 annotated cells" in few["skipped"]
    # ties keep the defaults: well separated cells need no split and keep threshold 0.5
    shape = (60, 60)
    truth = np.zeros(shape, np.uint16)
    truth[_disc(shape, 30, 30, 14)] = 1
    probs = _probs(_disc(shape, 30, 30, 12), _disc(shape, 30, 30, 14) & ~_disc(shape, 30, 30, 12))
    plain = calibrate([probs] * 20, [truth] * 20)
    assert (plain["split"], plain["fg_threshold"], plain["min_size"]) == (0.0, 0.5, 12)


def test_size_candidates_stay_below_typical_cells():
    labels = np.zeros((50, 50), np.uint16)
    for k in range(10):
        labels[k * 5:k * 5 + 4, 0:4] = k + 1                    # cells of 16 px
    assert size_candidates([labels], 12) == [4, 8, 12]
    assert size_candidates([np.zeros((5, 5), np.uint16)], 12) == [4, 8, 12]


def test_training_stores_the_chosen_post_processing(trained, tmp_path):
    # the session model (6 images of 8 discs, 1 held out) chose on all six: 48 cells
    cal = trained.model.meta["postprocess"]["calibration"]
    assert (cal["n_images"], cal["n_validation_images"], cal["n_cells"]) == (6, 1, 48)
    assert trained.calibration_ids[:1] == trained.val_ids and sorted(trained.calibration_ids) == \
        list(range(6))
    assert "skipped" not in cal
    # one image of 8 discs is too few cells to choose on: the defaults are kept
    model = model_from_bytes(model_to_bytes(trained.model))
    images, labels = disc_data(1, seed0=300)
    _calibrate(model, TrainConfig(), images, labels)
    post = model.meta["postprocess"]
    assert "annotated cells" in post["calibration"]["skipped"]
    assert (post["fg_threshold"], post["split"], post["min_size"]) == (0.5, 0.0, 12)
    # with enough validation cells the choice is made, stored, and used by the model
    model = model_from_bytes(model_to_bytes(trained.model))
    images, labels = disc_data(4, seed0=200)
    metrics = _calibrate(model, TrainConfig(), images, labels, train_labels=labels)
    post = model.meta["postprocess"]
    assert post["calibration"]["n_cells"] >= MIN_CELLS and "skipped" not in post["calibration"]
    assert metrics["f1"] == pytest.approx(post["calibration"]["f1"], abs=1e-4)
    assert metrics["f1"] >= post["calibration"]["default_f1"]
    # exported files carry it, so a model used outside CellLoop cuts cells the same way
    card = load_model(export_onnx(model, tmp_path / "m.onnx")).meta["postprocess"]
    assert {k: card[k] for k in ("fg_threshold", "split", "min_size")} == \
        {k: post[k] for k in ("fg_threshold", "split", "min_size")}


def test_calibration_time_is_bounded(trained, monkeypatch):
    from models import training
    model = model_from_bytes(model_to_bytes(trained.model))
    images, labels = disc_data(4, seed0=200)
    cfg = TrainConfig()
    _calibrate(model, cfg, images[:2], labels[:2], images[2:], labels[2:])
    cal = model.meta["postprocess"]["calibration"]
    assert (cal["n_images"], cal["n_validation_images"]) == (4, 2)
    # room for three of the 96 x 96 images; with none, the first validation image is used
    monkeypatch.setattr(training, "CALIBRATION_PIXELS", 96 * 96 * 3 + 5)
    _calibrate(model, cfg, images[:2], labels[:2], images[2:], labels[2:])
    assert model.meta["postprocess"]["calibration"]["n_images"] == 3
    monkeypatch.setattr(training, "CALIBRATION_PIXELS", 0)
    _calibrate(model, cfg, images[:2], labels[:2], images[2:], labels[2:])
    cal = model.meta["postprocess"]["calibration"]
    assert (cal["n_images"], cal["n_validation_images"]) == (1, 1)
    # a training time budget reserves a tenth of itself: what that buys at the measured rate
    monkeypatch.setattr(training, "CALIBRATION_PIXELS", 10 ** 9)
    assert training.calibration_pixels(TrainConfig(max_seconds=600)) == 60 * training.CALIBRATION_RATE


def test_calibration_adds_only_fully_annotated_training_images():
    from models.training import fully_annotated
    full, part = np.ones((4, 4), bool), np.eye(4, dtype=bool)
    assert fully_annotated(list(range(20)), None, 3) == fully_annotated(list(range(20)), None, 3)
    assert fully_annotated(list(range(20)), None, 3) != list(range(20))    # shuffled
    assert sorted(fully_annotated([0, 1, 2, 3], [None, part, full, part], 0)) == [0, 2]
    assert sorted(fully_annotated([0, 1, 2, 3], None, 5)) == [0, 1, 2, 3]


def test_progress_announces_the_calibration():
    entries = []
    images, labels = disc_data(3, seed0=400)
    train_model(images, labels, config=TrainConfig(**TINY, epochs=2, steps_per_epoch=2),
                progress=entries.append)
    assert [(e["epoch"], e.get("phase")) for e in entries] == [(1, None), (2, None),
                                                               (2, "calibration")]


def test_the_kept_epoch_is_the_latest_within_one_standard_error_of_the_best(monkeypatch):
    from models import training
    scripted = iter([0.50, 0.80, 0.77, 0.60, 0.74])      # validation F1 by epoch, se 0.05
    monkeypatch.setattr(training, "evaluate",
                        lambda *a: {"f1": next(scripted), "se": 0.05, "n_images": 2})
    images, labels = disc_data(3, seed0=500)
    result = train_model(images, labels, config=TrainConfig(
        **TINY, epochs=5, steps_per_epoch=1, patience=10, calibrate=False))
    assert result.best_epoch == 3                 # 0.77 >= 0.80 - 0.05; 0.74 is not
    assert training._se([0.5, 0.7]) == pytest.approx(0.1) and training._se([0.9]) == 0.0


def _crowd(shape=(200, 250), seed=0):
    """Probabilities for clusters of touching discs of different sizes, with noise so that
    no two pixels tie (ties are settled by scikit-image's heap, which differs between
    crops)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    depth = np.full(shape, -20.0)
    for y0 in range(25, shape[0], 50):
        for x0 in range(25, shape[1], 50):
            for _ in range(rng.integers(1, 5)):
                cy, cx = y0 + rng.uniform(-8, 8), x0 + rng.uniform(-8, 8)
                r = rng.uniform(4, 11)
                depth = np.maximum(depth, r - np.hypot(yy - cy, xx - cx))
    p = np.empty((3,) + shape, np.float32)
    p[1] = 1 / (1 + np.exp(-(depth - 2.5)))
    p[2] = np.exp(-(depth - 0.5) ** 2) * 0.9
    p[0] = np.clip(1 - p[1] - p[2], 0, None)
    p += rng.uniform(0, 0.02, p.shape).astype(np.float32)
    return p / p.sum(0)


@pytest.mark.parametrize("split", [0.0, 0.5, 2.0])
def test_post_processing_in_bands_cuts_the_same_cells_as_the_whole_image(split):
    from models import bands
    from models.instances import REACH, segment_variants
    probs = _crowd()
    foreground = (probs[1] + probs[2]) > 0.5
    _, boxes = bands.groups(foreground, REACH)
    small = 250 * 60                          # bands of at most 60 rows
    assert len(bands.bands(boxes, foreground.shape, small)) >= 3
    whole = segment_variants(probs, 0.5, (split,), band_pixels=10 ** 9)[split]
    banded = segment_variants(probs, 0.5, (split,), band_pixels=small)[split]
    reference = whole_image_segment(probs, 0.5, split)
    assert reference.max() > 20 and same_cut(whole, reference)
    assert same_cut(banded, reference)


def _tissue(shape=(700, 100), spacing=24, seed=0):
    """Probabilities for a confluent sheet of cells (a jittered grid's Voronoi cells, with
    boundary between them and no background): one connected foreground region."""
    from scipy.spatial import cKDTree
    rng = np.random.default_rng(seed)
    centres = [(y + rng.uniform(-6, 6), x + rng.uniform(-6, 6))
               for y in np.arange(spacing / 2, shape[0], spacing)
               for x in np.arange(spacing / 2, shape[1], spacing)]
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    near, _ = cKDTree(centres).query(np.stack([yy.ravel(), xx.ravel()], 1), k=2)
    depth = ((near[:, 1] - near[:, 0]) / 2).reshape(shape)      # distance to the cell edge
    p = np.empty((3,) + shape, np.float32)
    p[1] = 1 / (1 + np.exp(-(depth - 2.5)))
    p[2] = np.exp(-(depth - 0.5) ** 2) * 0.9 + 0.05
    p[0] = 0.01
    p += rng.uniform(0, 0.02, p.shape).astype(np.float32)
    return p / p.sum(0)


@pytest.mark.parametrize("split", [0.0, 0.5, 2.0])
def test_a_confluent_image_is_cut_in_windows_into_the_same_cells(split):
    from models import bands
    from models.instances import segment_variants
    probs = _tissue(seed=int(split))
    foreground = (probs[1] + probs[2]) > 0.5
    assert foreground.all() and len(bands.groups(foreground, 4)[1]) == 1
    budget = 300 * 100                            # windows of 300 rows
    assert len(bands.windows(slice(0, 700), 100, budget)) >= 3
    windowed = segment_variants(probs, 0.5, (split,), band_pixels=budget)[split]
    reference = whole_image_segment(probs, 0.5, split)
    assert reference.max() > 100 and same_cut(windowed, reference)


def test_several_splits_at_once_in_windows_cut_as_each_alone():
    from models.instances import segment_variants
    probs = _tissue(seed=5)
    together = segment_variants(probs, 0.5, (0.0, 0.5, 2.0), band_pixels=300 * 100)
    for split, labels in together.items():
        assert same_cut(labels, whole_image_segment(probs, 0.5, split))


def test_cells_taller_than_the_window_overlap_are_cut_whole(caplog):
    import logging

    from models.instances import segment_variants
    interior, boundary = np.zeros((900, 60), bool), np.zeros((900, 60), bool)
    interior[10:590, 5:25] = True       # 580 rows of interior: windows overlap more at once
    interior[600:620, 35:55] = True     # 20 rows of interior, then 270 rows of boundary that
    boundary[620:890, 35:55] = True     # the watershed gives it: found, and done again
    probs = _probs(interior, boundary)
    with caplog.at_level(logging.INFO, logger="models.instances"):
        windowed = segment_variants(probs, 0.5, (0.0,), band_pixels=300 * 60)[0.0]
    assert same_cut(windowed, whole_image_segment(probs, 0.5, 0.0))
    assert windowed.max() == 2
    assert caplog.text.count("crossed a window edge") == 1
    assert "taller than 128 rows crossed a window edge: rows 590-900" in caplog.text


def test_seeds_are_h_maxima_of_the_whole_image_even_when_no_cell_is_deep_enough():
    from skimage.morphology import h_maxima

    from models.instances import _h_maxima, segment_variants
    image = np.zeros((40, 60))
    image[5:8, 5:8] = [[.1, .2, .1], [.2, .3, .2], [.1, .2, .1]]        # shallow: 0.3 < h
    image[20:30, 30:40] = 2.0 * _disc((10, 10), 4.5, 4.5, 4.5)           # deep: 2.0 >= h
    image[20:30, 30:40] += 0.5 * _disc((10, 10), 4.5, 4.5, 2)
    for picture in (image, np.where(image < 1, image, 0)):              # with, without deep
        expected = h_maxima(picture, 0.5).astype(bool)
        assert (_h_maxima(picture, 0.5) == expected).all()
    assert not expected.any() and h_maxima(image, 0.5).any()
    # the same through segment_variants, in several bands, when no cell is deep enough
    probs = _crowd(seed=3)                     # cells at most ~8 px deep
    banded = segment_variants(probs, 0.5, (10.0,), band_pixels=250 * 60)[10.0]
    reference = whole_image_segment(probs, 0.5, 10.0)
    assert reference.max() == 20 and same_cut(banded, reference)   # no seeds: 1 per cluster


def test_holes_go_to_the_nearest_cell():
    from scipy import ndimage

    from models.instances import finish
    rng = np.random.default_rng(0)
    for _ in range(30):
        mask = ndimage.binary_opening(rng.random((40, 52)) > rng.uniform(0.3, 0.7))
        labels, _ = ndimage.label(mask)
        out = finish(labels, 1)
        assert ((out > 0) == ndimage.binary_fill_holes(mask)).all()
        kept = labels > 0
        assert same_cut(out[kept], labels[kept])             # cells keep their pixels
    # a hole between two cells: each half goes to the cell on its side
    labels = np.zeros((9, 12), np.int32)
    labels[1:8, 1:11] = 1
    labels[1:8, 6:11] = 2
    labels[3:6, 3:9] = 0
    before = labels.copy()
    out = finish(labels, 1)
    assert (labels == before).all()                 # calibration finishes one cut many times
    assert (out[3:6, 3:6] == out[2, 2]).all() and (out[3:6, 6:9] == out[2, 9]).all()
    assert out[2, 2] != out[2, 9]


def test_a_single_cell_is_kept_silently():
    import warnings

    from models.instances import finish
    labels = np.zeros((40, 40), np.int64)
    labels[5:15, 5:15] = 7
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # scikit-image's "Only one label" warning
        out = finish(labels, 30)
    assert out.max() == 1 and (out == 1).sum() == 100
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert finish(labels, 101).max() == 0       # too small: dropped
