"""Counting from points (issue 23): held-out tiles choose the count factor, the peak
threshold and the checkpoint (CountingParams.holdout / select_every), and colour jitter
augments colour images; tiny U-Nets on drawn discs."""
import numpy as np
import pytest

from models.counting import CountingParams, _hold_out, _samples, count_image, train_counter
from models.density import augment_stack
from tests.models.test_counting import TINY, discs


def test_held_out_tiles_leave_the_training_regions_and_keep_their_clicks():
    pairs = [discs(shape=(128, 128), n=10, seed=s) for s in range(3)]
    p = CountingParams(holdout=0.25, holdout_tile=64, **TINY)
    samples = _samples([a for a, _ in pairs], [b for _, b in pairs], None, p,
                       {"normalisation": {}})
    kept, tiles = _hold_out(samples, p, np.random.default_rng(0))
    assert len(tiles) == 3                                   # 25% of 12 tiles of 64 px
    clicks = sum(len(s.points) for s in kept) + sum(len(s.points) for s in tiles)
    assert clicks == 30                                       # every click in one place
    for t in tiles:
        assert t.region.sum() == 64 * 64 and t.weight == 64 * 64
        assert t.image.shape[1:] == t.region.shape
        assert all(t.region[y, x] for y, x in t.points)
    held_pixels = sum(t.region.sum() for t in tiles)
    assert sum(s.weight for s in kept) == 3 * 128 * 128 - held_pixels


def test_too_few_tiles_mean_no_holdout():
    image, centres = discs(shape=(96, 96), n=6)
    p = CountingParams(holdout=0.2, holdout_tile=64, **TINY)
    samples = _samples([image], [centres], None, p, {"normalisation": {}})
    kept, tiles = _hold_out(samples, p, np.random.default_rng(0))
    assert tiles == [] and kept is samples


def test_a_holdout_model_is_calibrated_and_selected_on_the_held_out_tiles():
    pairs = [discs(shape=(128, 128), n=10, seed=s) for s in range(4)]
    params = CountingParams(steps=80, holdout=0.2, holdout_tile=64, select_every=20,
                            target="density", **TINY)
    model = train_counter([a for a, _ in pairs], [b for _, b in pairs], params=params)
    training = model.meta["training"]
    assert training["holdout"]["tiles"] == 3                 # 20% of 16 tiles
    assert [r["step"] for r in training["holdout"]["selection"]] == [20, 40, 60, 80]
    best = min(training["holdout"]["selection"], key=lambda r: r["mae"])
    assert training["selected_step"] == best["step"]
    assert model.meta["peaks"]["calibration"]["n_images"] == 3
    image, centres = discs(shape=(128, 128), n=10, seed=50)
    assert count_image(model, image, mc_samples=0).count == pytest.approx(10, abs=4)


def test_colour_jitter_changes_the_channels_apart_and_not_the_targets():
    image = np.ones((3, 8, 8), np.float32)
    planes = np.ones((2, 8, 8), np.float32)
    out, same = augment_stack(image, planes, np.random.default_rng(1), colour=0.2)
    assert np.array_equal(same, planes)
    means = out.reshape(3, -1).mean(1)
    assert means.max() - means.min() > 1e-3
    plain, _ = augment_stack(image, planes, np.random.default_rng(1))
    again, _ = augment_stack(image, planes, np.random.default_rng(1), colour=0.0)
    assert np.array_equal(plain, again)
