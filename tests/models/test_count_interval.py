"""The count interval calibrated on held-out clicks (models.count_interval, issue 23): exact
conformal order statistics, coverage of new units drawn like the held-out ones, the tiles a
few held-out images are cut into, and the interval carried by a saved and an exported model."""
import numpy as np
import pytest

from models.count_interval import LEVEL, MIN_UNITS, calibrate_interval, calibrated_bounds, \
    interval_from_errors
from models.counting import CountingParams, count_image, counter_from_bytes, \
    counter_to_bytes, train_counter
from tests.models.test_counting import TINY, discs


def test_the_bounds_are_the_conformal_order_statistics():
    # 19 errors: rank ceil(20 x 0.95) = 19, the largest, and its mirror, the smallest
    errors = np.linspace(-0.4, 0.5, 19)
    got = interval_from_errors(np.random.default_rng(0).permutation(errors))
    assert (got["low"], got["high"], got["units"], got["guaranteed"]) == (-0.4, 0.5, 19, True)
    # 39 errors: rank ceil(40 x 0.95) = 38, the second largest; mirror rank 2
    errors = np.arange(39) / 100 - 0.2
    got = interval_from_errors(errors)
    assert (got["low"], got["high"], got["guaranteed"]) == (-0.19, 0.17, True)
    # too few for the level: the extremes, said to be nominal; the count itself always inside
    got = interval_from_errors([0.1, 0.2, 0.3])
    assert (got["low"], got["high"], got["guaranteed"]) == (0.0, 0.3, False)
    with pytest.raises(ValueError):
        interval_from_errors([])
    assert calibrated_bounds({"interval": got}, 100.0) == (100.0, pytest.approx(130.0))
    assert calibrated_bounds({}, 100.0) is None


def test_new_units_fall_inside_at_the_level():
    """Relative errors of calibration and new units from one distribution (a model biased
    by +5% with a 10% spread): about LEVEL of the new counts' truth is inside."""
    rng = np.random.default_rng(3)
    calibration = rng.normal(0.05, 0.1, 199)
    cal = interval_from_errors(calibration)
    truth = rng.uniform(50, 500, 20_000)
    counts = truth / (1 + rng.normal(0.05, 0.1, truth.size))     # clicks = count (1 + e)
    low, high = counts * (1 + cal["low"]), counts * (1 + cal["high"])
    coverage = float(np.mean((low <= truth) & (truth <= high)))
    assert LEVEL - 0.03 <= coverage <= LEVEL + 0.05


@pytest.fixture(scope="module")
def counter():
    pairs = [discs(seed=s) for s in range(3)]
    return train_counter([p[0] for p in pairs], [p[1] for p in pairs],
                         params=CountingParams(steps=80, target="density", **TINY))


def test_held_out_images_are_cut_into_tiles_until_there_are_enough_units(counter):
    held = [discs(shape=(512, 512), n=60, seed=50 + s) for s in range(2)]
    got = calibrate_interval(counter, [h[0] for h in held], [h[1] for h in held])
    # two whole images are too few; 512-px tiles of a 512² image are still two units; so
    # 256-px tiles: 4 per image
    assert got["unit_side"] == 256 and got["units"] == 8 and not got["guaranteed"]
    assert got["low"] <= 0 <= got["high"]
    # the errors are the tiles' own: recompute them from the model's density
    errors = []
    for image, pts in held:
        density = count_image(counter, image, mc_samples=0, keep_density=True).density
        for y in (0, 256):
            for x in (0, 256):
                inside = (pts[:, 0] >= y) & (pts[:, 0] < y + 256) & (pts[:, 1] >= x) & \
                    (pts[:, 1] < x + 256)
                count = counter.count_factor * float(density[y:y + 256, x:x + 256].sum())
                errors.append((inside.sum() - count) / max(count, 1.0))
    assert got["low"] == pytest.approx(min(0.0, min(errors)), abs=1e-4)
    assert got["high"] == pytest.approx(max(0.0, max(errors)), abs=1e-4)
    # a region: only its annotated part is a unit, and nothing at all gives None
    region = np.zeros((512, 512), bool)
    region[:256, :256] = True
    one = calibrate_interval(counter, [held[0][0]], [held[0][1]], [region])
    assert one["units"] == 1
    assert calibrate_interval(counter, [np.zeros((64, 64), np.uint16)], [np.zeros((0, 2))],
                              [np.zeros((64, 64), bool)]) is None
    assert MIN_UNITS == 19


def test_a_calibrated_model_keeps_its_interval_saved_and_exported(counter, tmp_path):
    from models.counting_export import export_onnx
    from models.counting import load_counter
    model = counter_from_bytes(counter_to_bytes(counter))
    model.meta["interval"] = {**interval_from_errors(np.linspace(-0.3, 0.4, 19)),
                              "unit_side": None}
    image, _pts = discs(seed=200)
    plain = count_image(counter, image, mc_samples=8)
    wide = count_image(model, image, mc_samples=8)
    assert wide.count == pytest.approx(plain.count)
    assert wide.low == pytest.approx(min(plain.low, 0.7 * wide.count), rel=1e-6)
    assert wide.high == pytest.approx(max(plain.high, 1.4 * wide.count), rel=1e-6)
    again = counter_from_bytes(counter_to_bytes(model))
    assert again.meta["interval"] == model.meta["interval"]
    # an export has no dropout, but its card carries the calibrated interval
    exported = load_counter(export_onnx(model, tmp_path / "c.onnx"))
    result = count_image(exported, image)
    assert result.low == pytest.approx(0.7 * result.count, rel=1e-6)
    assert result.high == pytest.approx(1.4 * result.count, rel=1e-6)


def test_a_centre_heat_map_models_units_are_counted_by_its_peaks():
    pairs = [discs(seed=s) for s in range(4)]
    model = train_counter([p[0] for p in pairs], [p[1] for p in pairs],
                          params=CountingParams(steps=160, target="centres", **TINY))
    held = [discs(shape=(512, 512), n=60, seed=50 + s) for s in range(2)]
    got = calibrate_interval(model, [h[0] for h in held], [h[1] for h in held])
    assert got["unit_side"] == 256 and got["units"] == 8
    errors = []
    for image, pts in held:
        found = count_image(model, image, mc_samples=0).points
        assert len(found) > 40                  # a real count, not an empty map
        for y in (0, 256):
            for x in (0, 256):
                def n_in(p):
                    return int(((p[:, 0] >= y) & (p[:, 0] < y + 256) & (p[:, 1] >= x) &
                                (p[:, 1] < x + 256)).sum())
                count = n_in(found)
                errors.append((n_in(pts) - count) / max(count, 1.0))
    assert got["low"] == pytest.approx(min(0.0, min(errors)), abs=1e-4)
    assert got["high"] == pytest.approx(max(0.0, max(errors)), abs=1e-4)
