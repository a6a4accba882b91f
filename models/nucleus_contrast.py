"""The nucleus-contrast channel (`nucleus-contrast-v1`): one (Y, X) float32 channel with the
nuclei bright, about 0..1. For an RGB H&E image it is the haematoxylin of the colour
deconvolution (`skimage.color.rgb2hed`); for anything else the built-in model's input mapping
(`models.builtin_data.to_network_input`: luminance, inverted on a bright background). Then it
is clipped to its 1st..99.8th percentiles.

It is computed in row strips of about STRIP_PIXELS pixels. A big image then costs its output
(4 bytes a pixel, 4 / factor² when shrunk by block means), a subsample of every 2nd pixel of
every 2nd row (float64 for H&E: 2 bytes a pixel) and one strip's temporaries, instead of a
whole-image float64 colour deconvolution (121 bytes a pixel at its peak, by tracemalloc:
bench/bench_count_memory.py). Every decision that needs the whole image is taken on the whole
image first:
- H&E or not (the first two channels differ anywhere) and the scale (0..255 or 0..1);
- whether the background is bright (percentiles of every 4th pixel);
- the normalisation (percentiles of every 2nd pixel, computed on those pixels only).
Strips start on even rows and on multiples of the shrink factor, so those subsamples and the
block means are the ones the whole image gives.

    channel = nucleus_channel(image)                 # (Y, X)
    small = shrunk_nucleus_channel(image, 2)         # (Y // 2, X // 2): 2 x 2 block means
"""
from __future__ import annotations

import math

import numpy as np
from skimage.color import rgb2hed

from models.builtin_data import as_channels, bright_background, grey_of, same_channels

NUCLEUS_CONTRAST = "nucleus-contrast-v1"   # this channel as a model's input mapping
STRIP_PIXELS = 1 << 18                     # about 0.26 Mpx converted at a time


def nucleus_channel(image: np.ndarray, strip_pixels: int = STRIP_PIXELS) -> np.ndarray:
    """(C, Y, X) or (Y, X) image -> (Y, X) float32 with nuclei bright, about 0..1."""
    return shrunk_nucleus_channel(image, 1, strip_pixels)


def shrunk_nucleus_channel(image: np.ndarray, factor: int = 1,
                           strip_pixels: int = STRIP_PIXELS) -> np.ndarray:
    """block_mean(nucleus_channel(image), factor), without holding the full-resolution
    channel: (Y // factor, X // factor) float32."""
    img = np.asarray(image)
    if img.ndim not in (2, 3):
        raise ValueError(f"expected a (C, Y, X) or (Y, X) image, got shape {img.shape}")
    f = max(1, int(factor))
    strips = _strips(img.shape[-2:], math.lcm(2, f), strip_pixels)
    if _is_colour(img, strips):
        scale = 255.0 if float(img[:3].max()) > 1.0 else 1.0

        def pixels(a, b, step=1):
            return _haematoxylin(img[:3, a:b:step, ::step], scale)
        sample = _every_second(pixels, strips, img.shape[-2])
    else:
        chans = as_channels(img)
        same = chans.shape[0] == 1 or all(
            same_channels(chans[:, a:b].astype(np.float32)) for a, b in strips)

        def grey(a, b, step=1):
            return grey_of(chans[:, a:b:step, ::step].astype(np.float32, copy=False), same)
        sample = _every_second(grey, strips, img.shape[-2])
        invert, lo4, hi4 = bright_background(sample[::2, ::2])

        def finish(g):
            return (hi4 + lo4 - g if invert else g).astype(np.float32)

        def pixels(a, b, step=1):
            return finish(grey(a, b, step))
        sample = finish(sample)
    lo, hi = np.percentile(sample, (1.0, 99.8), overwrite_input=True)
    del sample
    out = np.empty((img.shape[-2] // f, img.shape[-1] // f), np.float32)
    for a, b in strips:
        out[a // f:b // f] = block_mean(_normalise(pixels(a, b), lo, hi), f)
    return out


def is_brightfield_colour(image: np.ndarray) -> bool:
    """Whether an image is an 8-bit colour photograph of a stained slide: 8 bits (as colour
    cameras and slide scanners write RGB; a fluorescence stack is most often 16 bits), read
    as H&E by `nucleus_channel` (3 or 4 channels whose first two differ) and with a bright
    background (stained cells on light, not a fluorescence composite on black)."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[0] not in (3, 4) or img.dtype != np.uint8:
        return False
    if not _is_colour(img, _strips(img.shape[-2:], 2, STRIP_PIXELS)):
        return False
    grey = img[:3, ::4, ::4].astype(np.float32).mean(axis=0)
    return bright_background(grey)[0]


def _every_second(pixels, strips, height: int) -> np.ndarray:
    """channel[::2, ::2], gathered strip by strip (every strip starts on an even row)."""
    out, row = None, 0
    for a, b in strips:
        part = pixels(a, b, 2)
        if out is None:
            out = np.empty(((height + 1) // 2, part.shape[1]), part.dtype)
        out[row:row + len(part)] = part
        row += len(part)
    return out


def block_mean(channel: np.ndarray, factor: int) -> np.ndarray:
    """(..., Y, X) -> (..., Y // factor, X // factor): the means of factor x factor blocks (a
    last partial row or column of blocks is dropped)."""
    f = int(factor)
    if f <= 1:
        return channel
    *lead, y, x = channel.shape
    y, x = (y // f) * f, (x // f) * f
    return channel[..., :y, :x].reshape(*lead, y // f, f, x // f, f).mean(axis=(-3, -1))


def _strips(shape, step: int, strip_pixels: int) -> list[tuple[int, int]]:
    """Row ranges of about strip_pixels pixels each, every one starting on a multiple of
    `step`."""
    height, width = int(shape[0]), int(shape[1])
    rows = max(step, (int(strip_pixels) // max(width, 1)) // step * step)
    return [(a, min(height, a + rows)) for a in range(0, height, rows)] or [(0, 0)]


def _is_colour(img: np.ndarray, strips) -> bool:
    """An RGB(A) image whose first two channels differ somewhere: read as H&E."""
    return (img.ndim == 3 and img.shape[0] in (3, 4)
            and not all(np.allclose(img[0, a:b], img[1, a:b]) for a, b in strips))


def _haematoxylin(rgb: np.ndarray, scale: float) -> np.ndarray:
    """(3, y, x) RGB -> (y, x) float64 haematoxylin density (per pixel)."""
    rgb = np.moveaxis(rgb, 0, -1).astype(np.float64) / scale
    return np.ascontiguousarray(rgb2hed(np.clip(rgb, 0, 1))[..., 0])   # not a view of all 3


def _normalise(channel: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((channel - lo) / max(float(hi - lo), 1e-6), 0, 1).astype(np.float32)
