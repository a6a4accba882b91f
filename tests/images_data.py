"""Small synthetic microscopy files made in the tests (discs on noise), and shapes as the
annotation page sends them."""
import io

import numpy as np
import tifffile
from PIL import Image
from skimage.draw import disk


def nuclei(shape=(64, 80), n=6, seed=0, dtype=np.uint16):
    """(image, labels): bright discs on a noisy background, and their instance labels."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint16)
    for k in range(1, n + 1):
        r, c = rng.integers(8, shape[0] - 8), rng.integers(8, shape[1] - 8)
        rr, cc = disk((r, c), rng.integers(4, 7), shape=shape)
        labels[rr, cc] = k
    top = 4000 if dtype == np.uint16 else 200
    image = rng.normal(top * 0.1, top * 0.02, shape) + (labels > 0) * top * 0.7
    return np.clip(image, 0, np.iinfo(dtype).max).astype(dtype), labels


def discs(seed: int, n: int = 6, shape=(96, 96)):
    """(uint16 image, [(x, y), ...]): `n` bright discs of radius 4 on a dark, noisy
    background, at least 14 px apart, and their centres (counting tests)."""
    rng = np.random.default_rng(seed)
    img = rng.normal(200, 20, shape).clip(0)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    centres: list[tuple[int, int]] = []
    while len(centres) < n:
        y, x = (int(v) for v in rng.integers(8, shape[0] - 8, 2))
        if all(abs(y - cy) + abs(x - cx) > 14 for cx, cy in centres):
            centres.append((x, y))
            img[(yy - y) ** 2 + (xx - x) ** 2 <= 16] += 3000
    return img.astype(np.uint16), centres


def tiff(array, **kwargs) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, array, **kwargs)
    return buf.getvalue()


def png(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def rect(x0, y0, x1, y1) -> dict:
    """A plotly rectangle shape, in figure (= full-resolution pixel) coordinates."""
    return {"type": "rect", "x0": x0, "y0": y0, "x1": x1, "y1": y1}


def square(x0, y0, x1, y1) -> dict:
    """The same box as a closed SVG path (a drawn cell)."""
    return {"type": "path", "path": f"M{x0},{y0}L{x1},{y0}L{x1},{y1}L{x0},{y1}Z"}
