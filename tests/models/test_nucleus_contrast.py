"""The nucleus-contrast channel in row strips: the values the whole image gives, for every
kind of image, with memory bounded by the strip."""
import tracemalloc

import numpy as np
import pytest
from skimage.color import rgb2hed

from models.builtin_data import to_network_input
from models.nucleus_contrast import (block_mean, is_brightfield_colour, nucleus_channel,
                                     shrunk_nucleus_channel)
from tests.models.test_counting import discs


def whole_image_channel(image: np.ndarray) -> np.ndarray:
    """The definition, on the whole image at once (what the strips must reproduce)."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[0] in (3, 4) and not np.allclose(img[0], img[1]):
        rgb = np.moveaxis(img[:3], 0, -1).astype(np.float64)
        channel = rgb2hed(np.clip(rgb / (255.0 if rgb.max() > 1.0 else 1.0), 0, 1))[..., 0]
    else:
        channel = whole_image_network_input(img)[0]
    lo, hi = np.percentile(channel[::2, ::2], (1.0, 99.8))
    return np.clip((channel - lo) / max(float(hi - lo), 1e-6), 0, 1).astype(np.float32)


def whole_image_network_input(image: np.ndarray) -> np.ndarray:
    """The built-in model's input mapping as it was written before its helpers were split
    out for the strips."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img[None]
    if img.shape[0] == 4:
        img = img[:3]
    if img.shape[0] == 1 or np.allclose(img[0], img[1:], atol=1e-3):
        grey = img[0]
    elif img.shape[0] >= 3:
        grey = 0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]
    else:
        grey = img.mean(axis=0)
    lo, mid, hi = np.percentile(grey[::4, ::4], (1, 50, 99))
    if hi > lo and (mid - lo) > (hi - mid):
        grey = hi + lo - grey
    return grey[None].astype(np.float32)


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
        "first two channels equal, third not": np.stack([grey, grey, grey // 3]),
        "grey RGBA": np.concatenate([np.stack([grey] * 3), np.full((1, 101, 87), 9, np.uint16)]),
        "colour in the last rows only": np.concatenate(
            [np.stack([(he[0] * 255).astype(np.uint8)] * 3)[:, :90],
             (he * 255).astype(np.uint8)[:, 90:]], axis=1),
        "one row": grey[40:41],
    }


COLOUR = {"H&E uint8", "H&E float 0..1", "H&E with alpha", "colour in the last rows only"}


def assert_same(got, expected, kind):
    """Bit for bit where the channel is made by elementwise arithmetic. The colour
    deconvolution is a small matrix product (BLAS), which another CPU's kernels may round
    differently in the last bit, so colour images are allowed 1e-6."""
    if kind in COLOUR:
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6, err_msg=kind)
    else:
        np.testing.assert_array_equal(got, expected, err_msg=kind)


@pytest.mark.parametrize("kind", list(kinds_of_image()))
def test_strips_give_the_whole_images_channel_exactly(kind):
    image = kinds_of_image()[kind]
    expected = whole_image_channel(image)
    for strip_pixels in (1, 400, 2000, 10 ** 9):      # strips of 2, 4 and 22 rows; one strip
        got = nucleus_channel(image, strip_pixels)
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert_same(got, expected, kind)
    assert expected.max() == 1.0 and expected.min() == 0.0


@pytest.mark.parametrize("kind", [k for k in kinds_of_image() if k not in COLOUR])
def test_the_split_input_mapping_is_the_one_written_before(kind):
    image = kinds_of_image()[kind]
    np.testing.assert_array_equal(to_network_input(image), whole_image_network_input(image))


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_shrunk_strips_are_the_block_means_of_the_channel(factor):
    for kind, image in kinds_of_image().items():
        if min(np.shape(image)[-2:]) < factor:
            continue
        expected = block_mean(whole_image_channel(image), factor)
        for strip_pixels in (1, 700, 10 ** 9):
            got = shrunk_nucleus_channel(image, factor, strip_pixels)
            assert got.shape == expected.shape, kind
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6, err_msg=kind)


def test_a_big_colour_image_costs_a_few_bytes_a_pixel():
    """A 4 Mpx RGB image: the whole image at once (one strip) peaks at about 120 bytes a
    pixel; the strips at under 12."""
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
    for shape in ((2, 2, 8, 8), (8,), ()):
        with pytest.raises(ValueError, match="expected a"):
            nucleus_channel(np.zeros(shape, np.uint8))


def test_only_colour_images_on_a_bright_background_are_bright_field_colour():
    """What decides a points project's first counting input ("auto"): the 8-bit H&E kinds
    of image are; grey, two-channel and grey-as-RGB images are not, nor is a fluorescence
    composite (colour on black), nor a 16-bit or float stack."""
    kinds = kinds_of_image()
    seen = {kind: is_brightfield_colour(img) for kind, img in kinds.items()}
    assert {k for k, yes in seen.items() if yes} == COLOUR - {"H&E float 0..1"}
    grey, _ = discs(shape=(101, 87), n=6, seed=4)
    fluorescence = (np.stack([grey, grey // 3, grey // 7]) // 256).astype(np.uint8)
    assert not is_brightfield_colour(fluorescence)              # bright cells on black
    he16 = kinds["H&E uint8"].astype(np.uint16) * 257
    assert not is_brightfield_colour(he16)
