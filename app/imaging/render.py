"""Turn stored pixel arrays into display images: channel colours, contrast, downsampling,
label outlines. Pure numpy; the web layer encodes and caches the result.

Contrast limits are in the image's own units (e.g. 0..65535 for 16-bit), never pre-crushed
to 8 bits: the mapping to 0..255 happens last, after the limits are applied.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from app.imaging import quantiles
from app.imaging.shapes import POINT_SCALE, UNSURE_POINT_SCALE

DEFAULT_PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class ChannelView:
    color: str = "#ffffff"     # "#rrggbb"
    low: float | None = None   # contrast limits in image units; None = auto percentile
    high: float | None = None
    visible: bool = True


def hex_to_rgb(color: str) -> np.ndarray:
    color = color.lstrip("#")
    if len(color) != 6:
        raise ValueError(f"not a colour: #{color}")
    return np.array([int(color[i:i + 2], 16) for i in (0, 2, 4)], np.float32) / 255.0


def downsample_factor(shape_yx: tuple[int, int], max_side: int) -> int:
    return max(1, int(np.ceil(max(shape_yx) / max(1, max_side))))


def downsample(plane: np.ndarray, factor: int) -> np.ndarray:
    """Block-mean downsampling of the last two axes by an integer factor (edges cropped to
    whole blocks). Integer images keep their dtype; up to factor 4 it sums strided views,
    which is several times faster than a reshape-mean."""
    if factor <= 1:
        return plane
    h, w = plane.shape[-2] // factor, plane.shape[-1] // factor
    if h < 1 or w < 1:
        return plane[..., ::factor, ::factor]
    cropped = plane[..., :h * factor, :w * factor]
    if factor <= 4:
        acc = np.zeros(cropped.shape[:-2] + (h, w), np.float32)
        for dy in range(factor):
            for dx in range(factor):
                acc += cropped[..., dy::factor, dx::factor]
        acc /= factor * factor
    else:
        shape = cropped.shape[:-2] + (h, factor, w, factor)
        acc = cropped.reshape(shape).mean(axis=(-3, -1), dtype=np.float32)
    if np.issubdtype(plane.dtype, np.integer):
        return np.round(acc).astype(plane.dtype)
    return acc


def auto_limits(channel: np.ndarray, percentiles=DEFAULT_PERCENTILES) -> tuple[float, float]:
    """Percentile contrast limits in image units, on a subsample for speed."""
    flat = channel.ravel()
    if flat.size > 1 << 18:
        flat = flat[:: flat.size // (1 << 18)]
    if flat.dtype.kind == "f":
        flat = flat[np.isfinite(flat)]      # NaN/Inf (older imports) never give null limits
        if flat.size == 0:
            return 0.0, 1.0
    low, high = quantiles.percentiles(flat, percentiles)
    if high <= low:
        high = low + 1
    return float(low), float(high)


def _limits(plane: np.ndarray, view: ChannelView) -> tuple[float, float]:
    low, high = view.low, view.high
    if low is None or high is None:
        auto = auto_limits(plane)
        low = auto[0] if low is None else low
        high = auto[1] if high is None else high
    return float(low), max(float(high), float(low) + 1e-6)


def composite(zcyx: np.ndarray, z: int, views: list[ChannelView], max_side: int) -> np.ndarray:
    """RGB uint8 (H, W, 3) of plane `z`: each visible channel scaled by its limits, tinted by
    its colour, added, clipped.

    8/16-bit images go through per-channel lookup tables (one gather per colour component),
    so contrast is exact in image units and no float copy of the image is made."""
    z = int(np.clip(z, 0, zcyx.shape[0] - 1))
    planes = downsample(zcyx[z], downsample_factor(zcyx.shape[-2:], max_side))
    use_lut = planes.dtype in (np.uint8, np.uint16)
    h, w = planes.shape[-2:]
    if not use_lut:
        acc = np.zeros((h, w, 3), np.float32)
    sums: list[np.ndarray | None] = [None, None, None]   # one contiguous plane per colour
    for c, view in enumerate(views[: planes.shape[0]]):
        if not view.visible:
            continue
        plane = planes[c]
        low, high = _limits(plane, view)
        colour = hex_to_rgb(view.color)
        if not use_lut:
            norm = np.clip((plane.astype(np.float32) - low) / (high - low), 0.0, 1.0)
            acc += norm[..., None] * (colour * 255.0)
            continue
        values = np.arange(np.iinfo(plane.dtype).max + 1, dtype=np.float32)
        norm = np.clip((values - low) / (high - low), 0.0, 1.0)
        for k in range(3):
            if colour[k] > 0:
                part = np.take(np.round(norm * colour[k] * 255.0).astype(np.uint8), plane)
                sums[k] = part if sums[k] is None else np.minimum(
                    sums[k].astype(np.uint16) + part, 255).astype(np.uint8)
    if not use_lut:
        return (np.clip(acc, 0, 255) + 0.5).astype(np.uint8)
    out = np.zeros((h, w, 3), np.uint8)
    for k in range(3):
        if sums[k] is not None:
            out[..., k] = sums[k]
    return out


def outlines(labels: np.ndarray) -> np.ndarray:
    """Boolean mask of instance boundaries (pixels whose 4-neighbours differ)."""
    edge = np.zeros(labels.shape, bool)
    edge[:-1] |= labels[:-1] != labels[1:]
    edge[1:] |= labels[:-1] != labels[1:]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:, 1:] |= labels[:, :-1] != labels[:, 1:]
    return edge & (labels > 0)


def overlay_rgba(labels: np.ndarray, max_side: int, color: str = "#ffff00",
                 fill_alpha: int = 60) -> np.ndarray:
    """RGBA uint8 overlay: cell outlines opaque, interiors lightly filled."""
    factor = downsample_factor(labels.shape, max_side)
    small = labels[::factor, ::factor] if factor > 1 else labels
    rgb = (hex_to_rgb(color) * 255).astype(np.uint8)
    out = np.zeros(small.shape + (4,), np.uint8)
    out[small > 0, :3] = rgb
    out[small > 0, 3] = fill_alpha
    out[outlines(small), 3] = 255
    return out


DASH = 4          # px: the dash length of a dashed outline (annotation_rgba)


def annotation_rgba(labels: np.ndarray, max_side: int, class_colors: list[str],
                    classes: dict[int, int] | None = None, selected: int = 0,
                    region: np.ndarray | None = None, points: list | None = None,
                    fill_alpha: int = 50,
                    label_styles: dict[int, tuple] | None = None,
                    unsure_points: list[bool] | None = None) -> np.ndarray:
    """RGBA uint8 overlay for the annotation workspace: each cell in its class colour
    (outline opaque, interior light), the selected cell highlighted, everything outside the
    annotated `region` dimmed, counting `points` as dots. `label_styles` {label: (colour,
    fill alpha[, dashed])} overrides the class colour of some cells (suggested cells not
    checked yet, coloured by uncertainty); a dashed outline alternates with white every
    DASH px, a cue that does not depend on telling colours apart. `unsure_points` (one flag
    per point): a counting model's points it is unsure of get a wider white-and-orange ring
    instead of the thin black one. One pass with a per-label
    colour table, so the cost does not grow with the number of cells."""
    factor = downsample_factor(labels.shape, max_side)
    small = labels[::factor, ::factor] if factor > 1 else labels
    palette = np.array([(hex_to_rgb(c) * 255).astype(np.uint8) for c in class_colors]
                       or [np.array([255, 255, 0], np.uint8)])
    n = int(small.max(initial=0)) + 1
    table = np.zeros((max(n, selected + 1), 4), np.uint8)
    table[1:, :3] = palette[0]
    for label, cls in (classes or {}).items():
        if 0 < int(label) < len(table):
            table[int(label), :3] = palette[min(int(cls), len(palette) - 1)]
    table[1:, 3] = fill_alpha
    dashed = np.zeros(len(table), bool)
    for label, (colour, alpha, *dash) in (label_styles or {}).items():
        if 0 < int(label) < len(table):
            table[int(label)] = (*(hex_to_rgb(colour) * 255).astype(np.uint8), int(alpha))
            dashed[int(label)] = bool(dash and dash[0])
    if selected:
        table[selected] = (255, 255, 255, 140)
        dashed[selected] = False
    out = table[small]
    edge = outlines(small)
    out[edge, 3] = 255
    if dashed.any():
        rows, cols = np.nonzero(edge & dashed[small])
        gap = ((rows + cols) // DASH) % 2 == 1
        out[rows[gap], cols[gap]] = (255, 255, 255, 255)
    if region is not None:
        inside = region[::factor, ::factor] if factor > 1 else region
        outside = ~inside
        out[outside] = (out[outside] // 2) if fill_alpha else out[outside]
        out[outside & (out[..., 3] < 110), 3] = 110
        # the region's edge, dashed black and white: seen on dark and on bright images
        rows, cols = np.nonzero(outlines(inside.astype(np.int32)) & inside)
        white = ((rows + cols) // DASH) % 2 == 0
        out[rows, cols] = (0, 0, 0, 255)
        out[rows[white], cols[white]] = (255, 255, 255, 255)
    # The browser fits the overlay to a graph some 700-900 px wide: the dots grow with the
    # overlay so a point stays about 10 screen px across on a large image.
    base = max(4.0, max(out.shape[:2]) / POINT_SCALE)
    for k, (x, y, *rest) in enumerate(points or []):
        cls = int(rest[0]) if rest else 0
        unsure = bool(unsure_points and k < len(unsure_points) and unsure_points[k])
        cx, cy = x / factor, y / factor
        r = base * UNSURE_POINT_SCALE if unsure else base
        y0, y1 = max(0, int(cy - r)), min(out.shape[0], int(cy + r) + 1)
        x0, x1 = max(0, int(cx - r)), min(out.shape[1], int(cx + r) + 1)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        d = np.hypot(yy + 0.5 - cy, xx + 0.5 - cx)
        rgb = palette[min(cls, len(palette) - 1)]
        edge = max(1.5, r / (2.0 if unsure else 3.0))
        ring, dot = (d <= r) & (d > r - edge), d <= r - edge - 0.5
        if unsure:           # alternating white and orange: seen on any background
            out[y0:y1, x0:x1][ring] = UNSURE_RING
            half = ring & (((yy + xx) // 2) % 2 == 0)
            out[y0:y1, x0:x1][half] = (255, 255, 255, 255)
        else:
            out[y0:y1, x0:x1][ring] = (0, 0, 0, 255)
            dot = d <= r - edge
        out[y0:y1, x0:x1][dot] = (*rgb, 255)
    return out


UNSURE_RING = (255, 140, 0, 255)      # a counting model's unsure point (annotation_rgba)


HEAT_STOPS = ((0, 0, 0), (120, 28, 160), (240, 100, 40), (255, 240, 60))  # 0 .. top


def heat_top(values: np.ndarray) -> float:
    """The value drawn brightest: the 99th percentile, so a few extreme pixels do not wash
    the rest out (1.0 for an all-zero map)."""
    v = np.asarray(values, np.float32)
    v = v[np.isfinite(v)]
    top = float(np.percentile(v, 99)) if v.size else 0.0
    return top if top > 0 else 1.0


def heat_rgba(values: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """A (Y, X) map of non-negative values as an RGBA heat map: transparent at 0, then
    purple -> orange -> yellow at `vmax` (default `heat_top`), alpha growing with the value.
    The page's colour scale uses the same HEAT_STOPS and alpha."""
    v = np.nan_to_num(np.asarray(values, np.float32))
    top = float(vmax) if vmax else heat_top(v)
    t = np.clip(v / top, 0, 1)
    stops = np.array(HEAT_STOPS, np.float32)
    pos = t * (len(stops) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(stops) - 2)
    frac = (pos - lo)[..., None]
    rgb = stops[lo] * (1 - frac) + stops[lo + 1] * frac
    out = np.zeros(v.shape + (4,), np.uint8)
    out[..., :3] = rgb.astype(np.uint8)
    out[..., 3] = heat_alpha(t)
    return out


def heat_alpha(t):
    """Opacity (0..220) of the heat map at fraction `t` of its top."""
    return (np.sqrt(np.clip(t, 0, 1)) * 220).astype(np.uint8)


def encode(array: np.ndarray, fmt: str = "PNG", quality: int = 90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    image = Image.fromarray(array)
    if fmt == "JPEG":
        image.save(buf, "JPEG", quality=quality, subsampling=0)   # no colour bleeding
    else:
        image.save(buf, "PNG", compress_level=1)
    return buf.getvalue()
