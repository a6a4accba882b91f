"""Percentiles read off a histogram (app.imaging.quantiles) are numpy's, and the display
controls' histogram counts what numpy's sorted binning counts."""
import numpy as np
import pytest

from app.imaging.display_stats import histogram
from app.imaging.quantiles import percentiles

QS = [0, 0.5, 1, 25, 50, 99.5, 99.9, 100]


@pytest.mark.parametrize("dtype,low,high", [
    (np.uint8, 0, 256), (np.uint16, 0, 65536), (np.uint16, 100, 4000), (np.int16, -300, 300),
    (np.int32, -5, 5), (np.int64, 0, 1 << 40), (np.float32, 0, 1)])
@pytest.mark.parametrize("size", [1, 2, 7, 1000, 100_003])
def test_percentiles_are_numpys(dtype, low, high, size):
    rng = np.random.default_rng(size)
    if np.dtype(dtype).kind == "f":
        values = rng.random(size).astype(dtype)
    else:
        values = rng.integers(low, high, size, dtype=np.int64).astype(dtype)
    expected = np.percentile(values, QS)
    got = percentiles(values, QS)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    assert float(percentiles(values, 99.9)) == pytest.approx(float(np.percentile(values, 99.9)),
                                                             rel=1e-12)


def test_percentiles_of_constant_and_skewed_images():
    flat = np.full(5000, 7, np.uint16)
    assert list(percentiles(flat, [0, 50, 100])) == [7, 7, 7]
    skewed = np.zeros(10_000, np.uint16)
    skewed[-3:] = [60000, 65535, 12]                  # a few saturated pixels
    np.testing.assert_allclose(percentiles(skewed, QS), np.percentile(skewed, QS), rtol=1e-12)


@pytest.mark.parametrize("integer,low,high", [(True, 100, 140), (True, 0, 4000),
                                              (False, 0.1, 0.9)])
def test_histogram_counts_what_sorted_binning_counts(integer, low, high):
    rng = np.random.default_rng(3)
    flat = (rng.integers(int(low), int(high) + 1, 50_000) if integer
            else rng.random(50_000) * (high - low) + low)
    flat[:5] = high                                   # the top edge counts in the last bin
    counts, edges = histogram(flat, low, high, integer)
    if integer and high - low + 1 <= 64:
        expected_edges = np.arange(low - 0.5, high + 1.0, 1.0)
    else:
        expected_edges = np.linspace(low, high, 65)
    expected, _ = np.histogram(flat, bins=expected_edges)
    assert edges == [float(e) for e in expected_edges]
    assert counts == [int(c) for c in expected] and sum(counts) == flat.size


def test_a_float32_histogram_keeps_float64_edges_and_sorted_counts():
    """The edges are the float64 ones the slider's ends give (numpy would make them in the
    values' own type), and the counts are what binning by those edges counts."""
    flat = np.random.default_rng(5).gamma(2.0, 300.0, 40_000).astype(np.float32)
    low, high = float(flat.min()), 1429.788806259632
    counts, edges = histogram(flat, low, high, False)
    expected_edges = np.linspace(low, high, 65)
    expected, _ = np.histogram(flat.astype(np.float64), bins=expected_edges)
    assert edges == [float(e) for e in expected_edges] and edges[-1] == high
    assert counts == [int(c) for c in expected]


def test_percentiles_refuse_what_numpy_refuses_and_do_not_overflow():
    values = np.array([0, 1, 2, 3], np.uint16)
    for bad in (-1, 101, [50, 100.5], float("nan")):
        with pytest.raises(ValueError):
            percentiles(values, bad)
    huge = np.array([2 ** 63, 2 ** 63 + 10, 2 ** 64 - 1], np.uint64)
    np.testing.assert_array_equal(percentiles(huge, [0, 50, 100]),
                                  np.percentile(huge, [0, 50, 100]))
