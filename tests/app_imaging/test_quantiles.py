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
