"""The nucleus-contrast channel in row strips: the values the whole image gives, for every
kind of image, with memory bounded by the strip."""
import tracemalloc

import numpy as np
import pytest
from skimage.color import rgb2hed

from models.builtin_data import to_network_input
from models.nucleus_contrast import block_mean, nucleus_channel, shrunk_nucleus_channel
from tests.models.test_counting import discs


def whole_image_channel(image: np.ndarray) -> np.ndarray:
    """The definition, on the whole image at once (what the strips must reproduce)."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[0] in (3, 4) and not np.allclose(img[0], img[1]):
        rgb = np.moveaxis(img[:3], 0, -1).astype(np.float64)
        channel = rgb2hed(np.clip(rgb / (255.0 if rgb.max() > 1.0 else 1.0), 0, 1))[..., 0]
    else:
        channel = to_network_input(img)[0]
    lo, hi = np.percentile(channel[::2, ::2], (1.0, 99.8))
    return np.clip((channel - lo) / max(float(hi - lo), 1e-6), 0, 1).astype(np.float32)


def kinds_of_image():
    grey, _ = discs(shape=(101, 87), n=6, seed=4)                    # odd sides
    dark = (65535 - grey.astype(np.float64)) / 65535                 # nuclei dark, 0..1
    he = np.stack([dark * 0.9, dark * 0.6, dark * 0.95])
    return {
        "grey uint16": grey,
        "brightfield (inverted)": (65535 - grey)[None],
        "H&E uint8": (he * 255).astype(np.uint8),
        "H&E float 0..1": he,
        "H&E with alpha": np.concatenate([(he * 255).astype(np.uint8),
                                          np.full((1, 101, 87), 255, np.uint8)]),
        "grey stored as RGB": np.stack([grey] * 3),
        "two channels": np.stack([grey, grey // 2 + 100]).astype(np.float32),
    }


@pytest.mark.parametrize("kind", list(kinds_of_image()))
def test_strips_give_the_whole_images_channel_exactly(kind):
    image = kinds_of_image()[kind]
    expected = whole_image_channel(image)
    for strip_pixels in (1, 300, 2000, 10 ** 9):      # one or two rows a strip, ..., one strip
        got = nucleus_channel(image, strip_pixels)
        assert got.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
    assert expected.max() == 1.0 and expected.min() == 0.0


@pytest.mark.parametrize("factor", [2, 3])
def test_shrunk_strips_are_the_block_means_of_the_channel(factor):
    for kind, image in kinds_of_image().items():
        expected = block_mean(whole_image_channel(image), factor)
        for strip_pixels in (1, 700, 10 ** 9):
            got = shrunk_nucleus_channel(image, factor, strip_pixels)
            assert got.shape == expected.shape, kind
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6, err_msg=kind)


def test_a_big_colour_image_costs_a_few_bytes_a_pixel():
    """A 12 Mpx RGB image: the whole-image deconvolution peaks at about 120 bytes a pixel;
    the strips at under 12 (measured: about 8 for the half-resolution channel)."""
    rng = np.random.default_rng(0)
    image = rng.integers(120, 255, (3, 2000, 2000), dtype=np.uint8)
    image[1] //= 2
    tracemalloc.start()
    try:
        shrunk = shrunk_nucleus_channel(image, 2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert shrunk.shape == (1000, 1000)
    assert peak / image[0].size < 12


def test_an_image_that_is_not_2d_or_channels_first_is_refused():
    with pytest.raises(ValueError, match="expected a"):
        nucleus_channel(np.zeros((2, 2, 8, 8), np.uint8))
